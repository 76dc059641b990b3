"""F32 forward of yolov3-tiny 416x416 (the tutorial graph): our interpreter beside onnxruntime.

    python benchmarks/f32_forward.py [--runs 7] [--batches 1,10] [--profile] [--single-thread]
                                     [--zoo ../shared]

Prints, per batch size, the median time of each side (runs interleaved, so machine load hits
both alike) and the best run of each side (the closest to an idle machine), with their ratios;
the peak RSS of one batch-1 forward in a fresh process (target <= 300 MB); with --profile, where
our time goes, step by step. --single-thread times both sides on one thread in CPU time, which
other processes on the machine do not blur. Issue 2's target: <= 2.0x onnxruntime at batch 1.
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
from zoo import shared_dir

OUTPUTS = ["transpose_output1", "transpose_output"]
SHAPE = [1, 3, 416, 416]


def our_graph(onnx_path: Path):
    from tpushell.core.graph.onnx_import import import_onnx
    return import_onnx(onnx_path, name="yolov3_tiny", input_shapes=[SHAPE], output_names=OUTPUTS)


def ort_session(onnx_path: Path, threads: int = 0):
    """onnxruntime on the same cut graph, with a free batch dimension (threads 0: its default)."""
    import onnx
    import onnxruntime as ort
    from onnx.utils import Extractor
    model = Extractor(onnx.shape_inference.infer_shapes(onnx.load(onnx_path))).extract_model(
        ["input_1"], OUTPUTS)
    for vi in list(model.graph.input) + list(model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Its idle threads would otherwise spin on for a while after each run and take the CPU from
    # whichever side runs next (the runs are interleaved): both sides then measure slower.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def golden_input(shared: Path) -> np.ndarray:
    return np.load(shared / "golden" / "yolov3_tiny" / "000000366711_input.npz")["input_1"]


CLOCK = time.perf_counter


def timed(fn) -> float:
    start = CLOCK()
    fn()
    return (CLOCK() - start) * 1e3


def compare_speed(graph, sess, x1: np.ndarray, batches: list[int], runs: int) -> None:
    from tpushell.core.graph.interpreter import run
    print(f"{'batch':>5} {'ours ms':>9} {'ort ms':>9} {'ratio':>6} {'ours/img':>9} {'ort/img':>8}"
          f" {'best ours':>10} {'best ort':>9} {'ratio':>6}")
    for n in batches:
        x = np.ascontiguousarray(np.repeat(x1, n, axis=0))
        ours = lambda: run(graph, {"input_1": x})                       # noqa: E731
        peer = lambda: sess.run(None, {"input_1": x})                   # noqa: E731
        ours(), peer()                                                  # warm up both
        t_ours, t_peer = [], []
        for _ in range(runs):
            t_ours.append(timed(ours))
            t_peer.append(timed(peer))
        a, b = statistics.median(t_ours), statistics.median(t_peer)
        lo_a, lo_b = min(t_ours), min(t_peer)   # the least disturbed run of each side
        print(f"{n:>5} {a:>9.1f} {b:>9.1f} {a / b:>5.2f}x {a / n:>9.1f} {b / n:>8.1f}"
              f" {lo_a:>10.1f} {lo_b:>9.1f} {lo_a / lo_b:>5.2f}x")


PEAK_SCRIPT = """
import sys
from pathlib import Path
from benchmarks_f32 import our_graph, golden_input, vm_hwm
from tpushell.core.graph.interpreter import run
shared = Path(sys.argv[1])
g = our_graph(shared / "zoo" / "yolov3-tiny" / "tiny-yolov3-11.onnx")
x = golden_input(shared)
loaded = vm_hwm()
run(g, {"input_1": x})
print(loaded, vm_hwm())
"""


def vm_hwm() -> int:
    """Peak RSS of this process in MB (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024


def peak_rss(shared: Path) -> tuple[int, int]:
    """(peak RSS MB once the model is loaded, peak RSS MB after one batch-1 forward), fresh process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                                      os.environ.get("PYTHONPATH", "")]))
    script = PEAK_SCRIPT.replace("benchmarks_f32", Path(__file__).stem)
    out = subprocess.run([sys.executable, "-c", script, str(shared)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


def profile(graph, x1: np.ndarray, batch: int, runs: int) -> None:
    """Median time per step over `runs` forwards, steps as `run` executes them (a Conv with the
    LeakyRelu and MaxPool it absorbs is one step)."""
    from tpushell.core.graph.interpreter import schedule
    x = np.ascontiguousarray(np.repeat(x1, batch, axis=0))
    steps = schedule(graph, list(graph.outputs), frozenset(graph.outputs), fuse=True)
    per_step: list[list[float]] = [[] for _ in steps]
    for _ in range(runs + 1):
        env = {"input_1": x}
        for step, times in zip(steps, per_step):
            ins = [env[t] if t in env else graph.weights[t] if t else None for t in step.node.inputs]
            start = time.perf_counter()
            env[step.node.outputs[0]] = step.fn(*ins, **step.attrs)
            times.append((time.perf_counter() - start) * 1e3)
    medians = [statistics.median(t[1:]) for t in per_step]
    total = sum(medians)
    print(f"\nper-step profile, batch {batch} (median of {runs}; sum {total:.1f} ms)")
    for step, ms in zip(steps, medians):
        node = step.node
        kind = "+".join([node.op_type] + [op for op, key in (("LeakyRelu", "_leaky"), ("MaxPool", "_pool"))
                                          if key in node.attrs])
        shape = "x".join(str(d) for d in (batch,) + tuple(graph.shapes.get(node.outputs[0], (0,))[1:]))
        print(f"  {node.name:28} {kind:22} {shape:>14} {ms:8.2f} ms {100 * ms / total:5.1f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zoo", help="path of the shared folder (holding zoo/ and golden/)")
    p.add_argument("--runs", type=int, default=7, help="timed runs per side and batch (>= 5)")
    p.add_argument("--batches", default="1,10", help="comma-separated batch sizes")
    p.add_argument("--profile", action="store_true", help="print the per-step profile too")
    p.add_argument("--single-thread", action="store_true",
                   help="both sides on one thread, timed in CPU time: the comparison that machine "
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
    onnx_path = shared / "zoo" / "yolov3-tiny" / "tiny-yolov3-11.onnx"
    loaded, peak = peak_rss(shared)
    print(f"peak RSS of a fresh process: {loaded} MB with the model loaded, {peak} MB after one "
          f"batch-1 forward (target <= 300 MB)\n")
    graph, sess, x1 = our_graph(onnx_path), ort_session(onnx_path, threads), golden_input(shared)
    batches = [int(b) for b in args.batches.split(",")]
    mode = "1 thread each, CPU time" if args.single_thread else f"{os.cpu_count()} cpus, wall time"
    print(f"yolov3-tiny F32 forward, {SHAPE[2]}x{SHAPE[3]}, {mode}, median of {args.runs} "
          "interleaved runs")
    compare_speed(graph, sess, x1, batches, args.runs)
    if args.profile:
        for n in batches:
            profile(graph, x1, n, args.runs)


if __name__ == "__main__":
    main()
