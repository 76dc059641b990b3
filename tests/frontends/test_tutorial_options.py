"""The shell commands and magics take the tutorial tools' option names with the tools' meaning
(model_transform, run_calibration, run_qtable, model_deploy, detect_yolov3); a table or chip named
on the command line is loaded / set for the session and the command says so; a failed or
interrupted command leaves the session as it was; the smaller front-end fixes of issue 16."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from tpushell.core import Session
from tpushell.core.commands import INTERRUPTED, attempt, build_parser

from shelldrive import run_shell


@pytest.fixture
def data(workdir):
    """A folder of three 1x3x8x8 samples for the tiny model."""
    rng = np.random.default_rng(3)
    (workdir / "data").mkdir()
    for i in range(3):
        np.save(workdir / "data" / f"s{i}.npy", rng.random((1, 3, 8, 8), np.float32))
    return workdir / "data"


def chip(frontend) -> str:
    """The session's chip as `set chip` shows it."""
    return next(line.split()[1] for line in frontend("set chip") if line.startswith("chip "))


def test_positional_forms_and_the_tools_option_names_are_the_same(frontend, workdir, data):
    assert frontend("load --model_def tiny.onnx --model_name t")[0].startswith("t: 4 ops")
    assert frontend("load tiny.onnx --model_def tiny.onnx")[0].startswith("tiny: 4 ops")
    out = frontend("load tiny.onnx --model_def other.onnx")
    assert out == ["error: load: MODEL 'tiny.onnx' and --model_def 'other.onnx' differ; give one"]
    assert frontend("load") == ["error: load needs MODEL: `load MODEL` or `load --model_def MODEL`"]
    out = frontend("calibrate --dataset data --input_num 3 --calibration_table cali.txt")
    assert out[0] == "calibrated 5 tensors (kl)" and out[-1] == "saved cali.txt"
    assert (workdir / "cali.txt").read_text().count("\n") > 5


def test_tables_and_chip_named_on_the_command_line_are_loaded_and_said(frontend, workdir, data):
    frontend("load tiny.onnx")
    frontend("calibrate data -o cali.txt")
    frontend("load tiny.onnx")                          # a fresh model: the session forgets nothing
    out = frontend("qtable search --calibration_table cali.txt --chip bm1688 --dataset data "
                   "--input_num 3 --expected_cos 0.99999 --min_layer_cos 0.99999 -o q.txt")
    assert out[:2] == ["chip = bm1688 (from --chip)", "loaded calibration table cali.txt (5 tensors)"]
    assert "sample data: data" in out and "saved the qtable to q.txt" in out
    assert any(line.startswith("reference search on 3 sample(s)") for line in out)
    assert (workdir / "q.txt").exists()
    assert chip(frontend) == "bm1688"
    out = frontend("deploy --quantize INT8 --quantize_table q.txt --calibration_table cali.txt "
                   "--chip bm1684x --model tiny_mix.bmodel")
    assert out[0] == "chip = bm1684x (from --chip)"
    assert out[2].startswith("loaded qtable q.txt: ")
    assert (workdir / "tiny_mix.bmodel").stat().st_size > 0
    assert not (workdir / "q.txtl").exists() and (workdir / "q.txt").read_text().startswith("#")


def test_help_shows_both_spellings(frontend):
    for name, flags in (("load", ("MODEL", "--model_def")), ("calibrate", ("DATASET", "--dataset")),
                        ("deploy", ("--model", "--quantize_table", "--calibration_table", "--chip")),
                        ("detect", ("IMAGE", "--input", "--output"))):
        text = build_parser(name).format_help()
        assert all(f in text for f in flags), name
    search = build_parser("qtable")
    assert "--quantize_table" in search._subparsers._group_actions[0].choices["search"].format_help()


def test_a_failed_command_changes_nothing_even_what_it_set_first(frontend, workdir, data):
    frontend("load tiny.onnx")
    out = frontend("deploy x.bmodel --chip bm1688 --calibration_table missing.txt")
    assert out[0].startswith("error: ") and "missing.txt" in out[0]
    assert chip(frontend) == "bm1684x"
    assert not (workdir / "x.bmodel").exists()


def test_interrupted_calibration_leaves_the_session_as_it_was(workdir, data):
    def interrupt(task, done, total):
        if task == "calibration tuning" and done == 1:
            raise KeyboardInterrupt
    s = Session(progress=interrupt)
    s.load("tiny.onnx")
    parse = build_parser("calibrate").parse_args
    outcome = attempt(s, "calibrate", parse(["data", "-o", "cali.txt"]), "data -o cali.txt")
    assert outcome.interrupted and outcome.error is None and outcome.result is None
    assert s.calibration is None and s.dataset is None and s.history == []
    assert not (workdir / "cali.txt").exists()
    assert INTERRUPTED == "interrupted: nothing changed"


def test_precision_spellings_no_op_edits_model_order_and_workspace_name(frontend, workdir, data):
    frontend("load tiny.onnx")
    assert frontend("set_precision y_Conv FP16")[0].startswith(
        "error: precision: unknown quantize mode 'FP16' (did you mean F16?)")
    out = frontend("deploy x.bmodel --quantize fp16")
    assert "'fp16' is no precision (did you mean F16?)" in out[0]
    assert frontend("set_precision c1_Conv INT8") == [
        "set c1_Conv INT8: no layer changed (nothing to undo)"]
    assert frontend("undo") == ["error: nothing to undo: no precision edit yet"]
    frontend("set_precision y_Conv F16")
    frontend("set_precision c1_Conv F16")
    rows = frontend("qtable")[2:]
    assert [r.split()[1] for r in rows] == ["c1_Conv", "y_Conv"]      # model order
    assert frontend("save work") == ["saved workspace to work.tpw"]
    assert (workdir / "work.tpw").exists() and not (workdir / "work").exists()


def test_cos_with_data_but_no_calibration_says_what_to_do(frontend, workdir, data):
    frontend("load tiny.onnx")
    frontend("data data")
    assert frontend("cos") == ["error: no calibration yet; run `calibrate DATASET`, or load a table "
                               "with `calibrate --table FILE` (Session.load_calibration in Python)"]


def test_search_report_and_plot_use_the_cosine_scale_and_say_so(shell, workdir, data):
    run_shell(shell, "load tiny.onnx")
    run_shell(shell, "calibrate data")
    run_shell(shell, "set cosine_scale reference")
    out = run_shell(shell, "qtable search --expected_cos 0.999999 --min_layer_cos 0.999999")
    assert "cosines to F32 as 0.5+0.5*cos (reference scale); an output cosine is the mean over " \
           "the outputs and samples" in out
    trials = [line for line in out if " -> " in line]
    assert trials
    for line in trials:          # a reference-scale cosine: 0.5+0.5*cos is at least 0.5
        assert float(line.split(" -> ")[1].split()[0]) >= 0.5
    assert shell.session.thresholds_used["expected_cos"] == pytest.approx(2 * 0.999999 - 1)


def test_bare_qtable_and_positional_detect_parse_alike():
    p = build_parser("qtable")
    assert p.parse_args([]).action is None
    a, b = build_parser("detect").parse_args(["x.jpg"]), build_parser("detect").parse_args(["--input", "x.jpg"])
    assert isinstance(a, argparse.Namespace) and (a.image, b.image_flag) == ("x.jpg", "x.jpg")


def test_ctrl_c_in_a_magic_prints_one_line_and_keeps_the_session(ip, workdir, data):
    from shelldrive import run_magic

    def interrupt(task, done, total):
        if done == 1:
            raise KeyboardInterrupt
    run_magic(ip, "load tiny.onnx")
    ip.user_ns["tpu"].progress = interrupt
    assert run_magic(ip, "calibrate --dataset data") == [INTERRUPTED]
    assert ip.user_ns["tpu"].calibration is None and ip.user_ns["tpu"].history == ["load tiny.onnx"]
