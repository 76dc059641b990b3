"""Known-head patterns: a starting point for the searches, like the reference's
shape_pattern_qtable (for a YOLO head, the decode tail in float).

    output_tail(graph)      # ops after the last activation on every way to the outputs

A detector's or classifier's head ends in ops that mix values of very different ranges (pixel
boxes beside class scores, DFL softmaxes, logits): one INT8 scale serves them badly, and the
reference's import floats them by pattern. Our rule needs no list of patterns: the tail is every
op that no body activation (SiLU, ReLU, LeakyReLU, HardSwish, ...) follows, down to and including
the last convolutions or matmuls feeding it. The searches start from it and prune what the
target does not need.
"""
from __future__ import annotations

from ..graph.ir import Graph

# Activations of a network's body: an op one of these follows is not part of the head.
BODY_ACTIVATIONS = ("SiLU", "Relu", "LeakyRelu", "HardSwish", "PRelu", "GELU", "Clip", "Elu",
                    "Mish", "Swish", "HardSigmoid")


def output_tail(graph: Graph) -> list[str]:
    """Ops of `graph` (in model order) that reach an output without passing a body activation,
    and that no body activation follows."""
    followed: set[str] = set()           # ops some body activation is downstream of
    for node in reversed(graph.nodes):
        after = [c for t in node.outputs for c in graph.consumers(t)]
        if any(c.op_type in BODY_ACTIVATIONS or c.name in followed for c in after):
            followed.add(node.name)
    return [n.name for n in graph.nodes
            if n.name not in followed and n.op_type not in BODY_ACTIVATIONS]
