"""F32 forward of every shared model: our numpy interpreter and our engine beside onnxruntime.

    python benchmarks/f32_forward.py [--models yolov3_tiny,...] [--runs 7] [--batches 1]
                                     [--profile] [--single-thread] [--rss] [--zoo ../shared]

Per model and batch size: the median time of each side (runs interleaved, so machine load hits
all alike) and the ratios to onnxruntime on the original .onnx file:
  interp  `interpreter.run`, the numpy interpreter (what calibration, checks and the INT8
          simulator run on);
  engine  `engine.fast_run`, what an unobserved F32 forward uses (`Session.run`, detection):
          onnxruntime on our imported graph; its one-time cost (export + session) is printed
          as `first`.
Targets (issue 14): engine and interpreter-free F32 <= 3.0x onnxruntime on every model,
tiny-YOLOv3 <= 2.0x. --profile prints where the interpreter's time goes, per op type;
--single-thread times every side on one thread in CPU time, which other processes do not blur;
--rss prints the peak RSS of one batch-1 forward of each model in a fresh process.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from models import load_average, pick
from zoo import shared_dir

CLOCK = time.perf_counter


def ort_session(onnx_path: Path, threads: int = 0, output_names=None):
    """onnxruntime on the original file (cut at `output_names`), with a free batch dimension."""
    import onnx
    import onnxruntime as ort
    from onnx.utils import Extractor
    model = onnx.shape_inference.infer_shapes(onnx.load(onnx_path))
    inputs = [i.name for i in model.graph.input if i.name not in {w.name for w in model.graph.initializer}]
    if output_names:
        model = Extractor(model).extract_model(inputs, list(output_names))
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.type.tensor_type.shape.dim:
            vi.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Its idle threads would otherwise spin on for a while after each run and take the CPU from
    # whichever side runs next (the runs are interleaved): both sides then measure slower.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def timed(fn) -> float:
    start = CLOCK()
    fn()
    return (CLOCK() - start) * 1e3


def compare_speed(model, graph, sess, x1: np.ndarray, batches: list[int], runs: int) -> list[float]:
    """Print one row per batch size; returns the batch-1 (interp, engine) ratios to onnxruntime."""
    from tpushell.core.graph.interpreter import run
    from tpushell.core.quant.engine import fast_run
    name = graph.inputs[0].name
    peer_name = sess.get_inputs()[0].name
    ratios = []
    for n in batches:
        x = np.ascontiguousarray(np.repeat(x1, n, axis=0))
        start = CLOCK()
        fast_run(graph, {name: x})
        first = (CLOCK() - start) * 1e3
        sides = [lambda: run(graph, {name: x}), lambda: fast_run(graph, {name: x}),
                 lambda: sess.run(None, {peer_name: x})]
        for side in sides:
            side()                                                  # warm up
        times: list[list[float]] = [[], [], []]
        for _ in range(runs):
            for side, t in zip(sides, times):
                t.append(timed(side))
        interp, engine, peer = (statistics.median(t) for t in times)
        print(f"{model.name:20} {n:>5} {interp:>9.1f} {engine:>9.1f} {peer:>8.1f} {interp / peer:>7.2f}x"
              f" {engine / peer:>7.2f}x {first:>9.0f}", flush=True)
        ratios.append((interp / peer, engine / peer))
    return ratios


PEAK_SCRIPT = """
import sys
from pathlib import Path
from models import BY_NAME
from benchmarks_f32 import vm_hwm
from tpushell.core.graph.interpreter import run
shared, m = Path(sys.argv[1]), BY_NAME[sys.argv[2]]
g = m.graph(shared)
x = m.input(shared)
loaded = vm_hwm()
run(g, {g.inputs[0].name: x})
print(loaded, vm_hwm())
"""


def vm_hwm() -> int:
    """Peak RSS of this process in MB (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024


def peak_rss(shared: Path, model: str) -> tuple[int, int]:
    """(peak RSS MB once the model is loaded, after one batch-1 interpreter forward), fresh process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                                      os.environ.get("PYTHONPATH", "")]))
    script = PEAK_SCRIPT.replace("benchmarks_f32", Path(__file__).stem)
    out = subprocess.run([sys.executable, "-c", script, str(shared), model], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


def profile(graph, x1: np.ndarray, runs: int) -> None:
    """Median interpreter time per op type over `runs` batch-1 forwards, steps as `run` executes
    them (fused steps under their first op)."""
    from tpushell.core.graph.interpreter import schedule
    from tpushell.core.ops import as_tuple
    steps = schedule(graph, list(graph.outputs), frozenset(graph.outputs), fuse=True)
    per_run: list[dict[str, float]] = []
    for _ in range(runs + 1):
        env, per = {graph.inputs[0].name: x1}, {}
        for step in steps:
            ins = [env[t] if t in env else graph.weights[t] if t else None for t in step.node.inputs]
            start = time.perf_counter()
            out = as_tuple(step.fn(*ins, **step.attrs))
            kind = _kind(step, ins)
            per[kind] = per.get(kind, 0.0) + (time.perf_counter() - start) * 1e3
            env.update((t, v) for t, v in zip(step.node.outputs, out) if t)
        per_run.append(per)
    medians = {k: statistics.median(p[k] for p in per_run[1:]) for k in per_run[0]}
    total = sum(medians.values())
    counts: dict[str, int] = {}
    for step in steps:
        kind = _kind(step, [None, graph.weights.get(step.node.inputs[1])] if step.node.op_type == "Conv" else [])
        counts[kind] = counts.get(kind, 0) + 1
    print(f"  interpreter per op type, batch 1 (median of {runs}; sum {total:.1f} ms)")
    for kind, ms in sorted(medians.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:24} {counts.get(kind, 0):4d} ops {ms:8.2f} ms {100 * ms / total:5.1f}%")


def _kind(step, ins) -> str:
    node = step.node
    if node.op_type != "Conv" or len(ins) < 2 or ins[1] is None:
        return node.op_type
    w = ins[1]
    group = step.attrs.get("group", 1)
    kind = "depthwise" if group > 1 and w.shape[1] == 1 else ("grouped" if group > 1 else "dense")
    return f"Conv {kind} {'x'.join(map(str, w.shape[2:]))}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zoo", help="path of the shared folder (holding zoo/ and golden/)")
    p.add_argument("--models", help="comma-separated names (default: every shared model)")
    p.add_argument("--runs", type=int, default=7, help="timed runs per side and batch (>= 5)")
    p.add_argument("--batches", default="1", help="comma-separated batch sizes")
    p.add_argument("--profile", action="store_true", help="print the per-op-type profile too")
    p.add_argument("--rss", action="store_true", help="peak RSS of a fresh process per model")
    p.add_argument("--single-thread", action="store_true",
                   help="every side on one thread, timed in CPU time: the comparison that machine "
                        "load does not blur")
    args = p.parse_args()
    global CLOCK
    threads = 0                                     # onnxruntime's default
    if args.single_thread:
        from threadpoolctl import threadpool_limits
        os.environ["TPUSHELL_THREADS"] = "1"        # read when tpushell's ops are imported
        threadpool_limits(1, user_api="blas")
        threads, CLOCK = 1, time.process_time
    shared = shared_dir(args.zoo)
    batches = [int(b) for b in args.batches.split(",")]
    mode = "1 thread each, CPU time" if args.single_thread else f"{os.cpu_count()} cpus, wall time"
    print(f"F32 forward, {mode}, median of {args.runs} interleaved runs; {load_average()}")
    print(f"{'model':20} {'batch':>5} {'interp ms':>9} {'engine ms':>9} {'ort ms':>8} {'interp':>8}"
          f" {'engine':>8} {'first ms':>9}")
    for model in pick(args.models):
        graph, x1 = model.graph(shared), model.input(shared)
        sess = ort_session(model.onnx_path(shared), threads, model.output_names)
        compare_speed(model, graph, sess, x1, batches, args.runs)
        if args.profile:
            profile(graph, x1, args.runs)
        if args.rss:
            loaded, peak = peak_rss(shared, model.name)
            print(f"  peak RSS of a fresh process: {loaded} MB with the model loaded, {peak} MB after "
                  "one batch-1 interpreter forward")
    print(f"done; {load_average()}")


if __name__ == "__main__":
    main()
