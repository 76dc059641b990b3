"""The one loop over nodes: run a Graph on a batch, keep what was asked for, free the rest.

    y = run(graph, {"input_1": x})                          # graph outputs
    every = run(graph, feeds, keep_all=True)                 # every tensor
    run(graph, feeds, observers=[lambda node, ins, outs: ...])   # calibration, tracing

The batch size is free: a model declared for N=1 runs N samples at once (the importer makes
Reshape batch-agnostic). Tensors are freed after their last use unless requested, so memory stays
at a few activations whatever the depth of the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ModelError, did_you_mean
from ..ops import DEFAULT_OPSET, as_tuple, lookup
from ..ops.memory import keep_freed_memory
from .ir import Graph, Node

keep_freed_memory()   # activations reuse freed pages instead of faulting in fresh ones

Observer = Callable[[Node, Sequence[np.ndarray], Sequence[np.ndarray]], None]


@dataclass
class Step:
    node: Node
    fn: Callable[..., Any]
    attrs: dict[str, Any]
    free: tuple[str, ...]     # tensors whose last use is this step


def schedule(graph: Graph, wanted: Sequence[str], keep: frozenset[str],
             fuse: bool = False) -> list[Step]:
    """The steps that compute `wanted`, with the tensors each step may free afterwards.

    With `fuse` (nobody observes the ops), a Conv runs as one step with the LeakyRelu and MaxPool
    after it when their intermediate tensors are not kept.
    """
    key = ("schedule", tuple(wanted), keep, fuse)
    cache = graph.cache()
    if key in cache:
        return cache[key]
    nodes = graph.upstream(wanted)
    if fuse:
        nodes = _fuse_conv_chains(graph, nodes, keep)
    opset = int(graph.meta.get("opset", DEFAULT_OPSET))
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for t in node.inputs:
            if t and t not in graph.weights:
                last_use[t] = i
        for t in node.outputs:
            last_use.setdefault(t, i)
    frees: list[list[str]] = [[] for _ in nodes]
    for t, i in last_use.items():
        if t not in keep:
            frees[i].append(t)
    steps = [Step(n, lookup(n.op_type, opset), n.attrs, tuple(f)) for n, f in zip(nodes, frees)]
    cache[key] = steps
    return steps


def _fuse_conv_chains(graph: Graph, nodes: list[Node], keep: frozenset[str]) -> list[Node]:
    """Conv [+ LeakyRelu] [+ MaxPool] as one Conv node, when nothing else reads the tensors in
    between: the activation and the pooling run on each block of the convolution while it is in
    cache, and the full-size tensors are never written (about 7% of yolov3-tiny). The values are
    the same (tests/core/test_fusion.py); only the sign of a zero may differ."""
    fused: list[Node] = []
    absorbed: set[str] = set()
    for node in nodes:
        if node.name in absorbed:
            continue
        if node.op_type == "Conv":
            attrs, outputs = dict(node.attrs), node.outputs
            leaky = _sole_reader(graph, outputs, keep, "LeakyRelu")
            # A zero slope is left alone: pooling first would hide the NaN of 0 * -inf.
            if leaky is not None and not attrs.get("_relu") and 0 < leaky.attrs.get("alpha", 0.01) <= 1:
                absorbed.add(leaky.name)
                attrs["_leaky"], outputs = leaky.attrs.get("alpha", 0.01), leaky.outputs
            pool = _sole_reader(graph, outputs, keep, "MaxPool")
            tiles = _tiling_pool(graph, pool, outputs[0]) if pool is not None else None
            if tiles is not None:
                absorbed.add(pool.name)
                attrs["_pool"], outputs = tiles, pool.outputs
            if outputs is not node.outputs:
                node = Node(node.name, "Conv", node.inputs, list(outputs), attrs)
        fused.append(node)
    return fused


def _sole_reader(graph: Graph, outputs: list[str], keep: frozenset[str], op_type: str) -> Node | None:
    """The only reader of a single-output node's tensor if it is `op_type` and nobody else needs
    the tensor."""
    if len(outputs) != 1 or outputs[0] in keep or outputs[0] in graph.outputs:
        return None
    readers = graph.consumers(outputs[0])
    if len(readers) == 1 and readers[0].op_type == op_type:
        return readers[0]
    return None


def _tiling_pool(graph: Graph, pool: Node, source: str) -> tuple[int, int] | None:
    """(kh, kw) of a 2-D MaxPool whose windows tile its input exactly, else None."""
    a = pool.attrs
    kernel = list(a.get("kernel_shape", []))
    shape = graph.shapes.get(source)
    if (len(kernel) != 2 or list(a.get("strides") or [1, 1]) != kernel
            or any(a.get("pads") or []) or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID")
            or any(d != 1 for d in a.get("dilations") or [])
            or len([o for o in pool.outputs if o]) != 1 or a.get("_num_outputs", 1) > 1
            or shape is None or len(shape) != 4 or shape[2] % kernel[0] or shape[3] % kernel[1]):
        return None
    return kernel[0], kernel[1]


def check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> None:
    for info in graph.inputs:
        if info.name not in feeds:
            raise ModelError(f"missing input '{info.name}' for model '{graph.name}'; "
                             f"inputs are {graph.input_names}")
        x = feeds[info.name]
        if tuple(x.shape[1:]) != tuple(info.shape[1:]):
            raise ModelError(f"input '{info.name}' has shape {list(x.shape)}, model '{graph.name}' "
                             f"expects {list(info.shape)} (any batch size)")


def run(graph: Graph, feeds: Mapping[str, np.ndarray], outputs: Iterable[str] | None = None, *,
        keep_all: bool = False, observers: Sequence[Observer] = (),
        overrides: Mapping[str, Callable[..., Any]] | None = None) -> dict[str, np.ndarray]:
    """Run `graph` on `feeds`; return the requested tensors (graph outputs by default).

    `overrides` maps an op name to a replacement function called like the op itself
    (`fn(*inputs, **attrs)`), e.g. to simulate one layer differently.
    """
    check_feeds(graph, feeds)
    wanted = list(graph.outputs if outputs is None else outputs)
    known = set(graph.tensor_names())
    for t in wanted:
        if t not in known:
            raise ModelError(f"no tensor named '{t}' in model '{graph.name}'"
                             f"{did_you_mean(t, known)}")
    if keep_all:
        wanted = [t for t in graph.tensor_names() if t not in graph.input_names] + \
            [t for t in wanted if t in graph.input_names]
    keep = frozenset(wanted)
    env: dict[str, np.ndarray] = {name: np.asarray(v) for name, v in feeds.items()}
    weights = graph.weights
    for step in schedule(graph, wanted, keep, fuse=not observers and not overrides):
        node = step.node
        ins = [env[t] if t in env else weights[t] if t else None for t in node.inputs]
        fn = overrides.get(node.name, step.fn) if overrides else step.fn
        try:
            result = as_tuple(fn(*ins, **step.attrs))
        except (TypeError, ValueError, IndexError) as e:
            raise ModelError(f"op '{node.name}' ({node.op_type}) failed: {e}") from e
        for t, v in zip(node.outputs, result):
            if t:
                env[t] = v
        for obs in observers:
            obs(node, ins, result)
        for t in step.free:
            env.pop(t, None)
    if keep_all:
        return {t: env[t] for t in graph.tensor_names() if t in env}
    return {t: env[t] for t in wanted}
