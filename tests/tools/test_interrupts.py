"""Ctrl-C at 20 points spread over model_deploy and run_qtable, with old outputs present (issue
17, acceptance 3): a real SIGINT is sent at the N-th call of a tpushell function (N spread evenly
over a run, plus one inside the final renames, where Ctrl-C is held back). Afterwards the old files are all byte-identical or
all replaced, and the message says which."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from hostilekit import make_project, run_main
from tpushell.tools import model_deploy, run_qtable

PACKAGE = str(Path(model_deploy.__file__).resolve().parents[1])   # .../tpushell
CORE = str(Path(PACKAGE).parent / "core")


def _ours(frame) -> bool:
    name = frame.f_code.co_filename
    return name.startswith(PACKAGE) or name.startswith(CORE)


class CallCounter:
    """sys.setprofile hook: counts calls of tpushell functions; at call `fire_at` sends SIGINT to
    this process (the handler runs at the next bytecode, as a real Ctrl-C would)."""

    def __init__(self, fire_at: int | str | None = None) -> None:
        self.calls, self.fire_at, self.commit_at = 0, fire_at, None   # fire_at: N, or a name

    def __call__(self, frame, event, arg) -> None:
        if event != "call" or not _ours(frame):
            return
        self.calls += 1
        if frame.f_code.co_qualname == "WriteLog.record" and self.commit_at is None:
            self.commit_at = self.calls
        if self.fire_at in (self.calls, frame.f_code.co_qualname):
            self.fire_at = None
            os.kill(os.getpid(), signal.SIGINT)


def _run(main, argv, capsys, counter):
    sys.setprofile(counter)
    try:
        return run_main(main, argv, capsys)
    finally:
        sys.setprofile(None)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("interrupts"))


def _deploy_case(root):
    outputs = ["new.bmodel", "tiny_top_outputs.npz", "tiny_bm1684x_int8_sym_tpu_outputs.npz",
               "tiny_bm1684x_int8_sym_model_outputs.npz"]
    argv = ["--mlir", root / "tiny.mlir", "--quantize", "INT8", "--calibration_table",
            root / "cali_table", "--chip", "bm1684x", "--model", root / "new.bmodel",
            "--test_input", root / "input.npz"]
    return model_deploy.main, argv, outputs


def _qtable_case(root):
    argv = [root / "tiny.mlir", "--dataset", root / "data", "--calibration_table",
            root / "cali_table", "--chip", "bm1684x", "--input_num", "4", "--expected_cos",
            "0.99999", "--min_layer_cos", "0.9999", "--loss_table", root / "loss.txt",
            "-o", root / "out_qtable"]
    return run_qtable.main, argv, ["loss.txt", "out_qtable"]


@pytest.mark.parametrize("case", [_deploy_case, _qtable_case], ids=["model_deploy", "run_qtable"])
def test_ctrl_c_at_ten_points_leaves_old_files_or_replaces_all(project, capsys, case):
    main, argv, outputs = case(project)
    dry = CallCounter()
    rc, _, err = _run(main, argv, capsys, dry)
    assert rc == 0, err
    # nine points spread over the run (call counts vary by one or two between runs), and the first
    # WriteLog.record: after the first rename, while Ctrl-C is held back
    points = sorted({dry.calls * k // 10 for k in range(1, 10)}) + ["WriteLog.record"]
    assert len(points) == 10 and dry.commit_at is not None
    seen = {"nothing": 0, "all": 0}
    for n in points:
        old = {name: f"old {name} before point {n}\n".encode() for name in outputs}
        for name, data in old.items():
            (project / name).write_bytes(data)
        rc, _, err = _run(main, argv, capsys, CallCounter(fire_at=n))
        after = {name: (project / name).read_bytes() for name in outputs}
        unchanged = [name for name in outputs if after[name] == old[name]]
        assert rc in (130, 0), (n, rc, err)
        assert not [f for f in os.listdir(project) if f.endswith(".tmp")], n   # no temp left
        if len(unchanged) == len(outputs):
            assert rc == 130 and "interrupted: nothing was written" in err, (n, err)
            seen["nothing"] += 1
        else:
            assert unchanged == [], f"point {n}: only some replaced, {unchanged} kept"
            if rc == 130:
                assert f"interrupted: {len(outputs)} file(s) were written before the interrupt" \
                    in err and all(str(project / name) in err for name in outputs), (n, err)
            seen["all"] += 1
    print(f"\n{main.__module__}: {dry.calls} calls, Ctrl-C at {points}: {seen}")
    assert seen["nothing"] >= 5   # most points fall in the long work before the writes
    assert seen["all"] >= 1       # the point inside the renames: held back until all are done
