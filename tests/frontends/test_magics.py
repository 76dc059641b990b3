"""The IPython magics: our %load wins over IPython's, shell-like quoting, UsageErrors, results."""
from __future__ import annotations

import numpy as np
import pytest
from IPython.core.error import UsageError

from tpushell.core import Session
from tpushell.core.results import Table
from tpushell.magics.tpumagics import TpuMagics

from shelldrive import run_magic


def test_load_and_save_stay_ours_after_ipython_code_magics_load(ip):
    assert isinstance(ip.find_line_magic("load").__self__, TpuMagics)
    for other in ("edit", "pastebin", "loadpy"):   # CodeMagics, loaded lazily by IPython
        assert ip.find_line_magic(other) is not None
    assert isinstance(ip.find_line_magic("load").__self__, TpuMagics)
    assert isinstance(ip.find_line_magic("save").__self__, TpuMagics)


def test_unload_gives_back_ipython_load_and_save(ip):
    ip.run_line_magic("unload_ext", "tpushell")
    assert type(ip.find_line_magic("load").__self__).__name__ == "CodeMagics"
    assert type(ip.find_line_magic("save").__self__).__name__ == "CodeMagics"
    assert ip.find_line_magic("layers") is None
    ip.run_line_magic("load_ext", "tpushell")
    assert isinstance(ip.find_line_magic("load").__self__, TpuMagics)


def test_quotes_are_split_like_the_shell(ip, workdir):
    (workdir / "my models").mkdir()
    (workdir / "tiny.onnx").rename(workdir / "my models" / "tiny model.onnx")
    ip.run_line_magic("load", '"my models/tiny model.onnx" --model_name tiny')
    assert ip.user_ns["tpu"].model.name == "tiny"
    with pytest.raises(UsageError, match="cannot split the arguments"):
        ip.run_line_magic("load", '"unclosed.onnx')


def test_python_variables_expand_in_magic_lines(ip, workdir):
    ip.user_ns["model_file"] = "tiny.onnx"
    ip.run_cell("%load $model_file")
    assert ip.user_ns["tpu"].model.op_names == ["c1_Conv", "r1_LeakyRelu", "p1_MaxPool", "y_Conv"]


def test_result_is_captured_and_displays_as_html(ip, workdir):
    ip.run_line_magic("load", "tiny.onnx")
    ip.run_cell("t = %layers Conv")
    t = ip.user_ns["t"]
    assert isinstance(t, Table)
    assert [r["name"] for r in t.records()] == ["c1_Conv", "y_Conv"]
    html = t._repr_html_()
    assert html.startswith('<table class="tpushell">') and "<td" in html and "c1_Conv" in html
    formatted, _ = ip.display_formatter.format(t)
    assert formatted["text/plain"] == str(t)


def test_domain_errors_are_usage_errors_and_change_nothing(ip, workdir):
    ip.run_line_magic("load", "tiny.onnx")
    session = ip.user_ns["tpu"]
    graph, history = session.graph, list(session.history)
    for name, line, message in [("load", "missing.onnx", "model file not found: missing.onnx"),
                                ("layers", "nothing", "no op or op type 'nothing'"),
                                ("set", "chip nope", "setting 'chip' cannot be 'nope'"),
                                ("open", "missing.tpw", "workspace not found: missing.tpw"),
                                ("load", "tiny.onnx --pad_value x", "argument --pad_value: invalid int"),
                                ("deploy", "tiny_int8.bmodel", "need a calibration table: calibrate first")]:
        with pytest.raises(UsageError, match=message):
            ip.run_line_magic(name, line)
    assert session.graph is graph and session.history == history
    assert session.settings.chip == "bm1684x"


def test_help_with_question_mark_and_dash_h(ip, capsys):
    assert "List the model's layers" in ip.find_line_magic("layers").__doc__
    assert ip.run_line_magic("layers", "-h") is None
    assert "usage: %layers [-h] [pattern]" in capsys.readouterr().out


def test_session_is_tpu_in_the_namespace(ip, workdir):
    mine = Session()
    ip.user_ns["tpu"] = mine                      # rebinding `tpu` moves the magics along
    ip.run_line_magic("load", "tiny.onnx")
    assert mine.graph is not None
    ip.user_ns["tpu"] = 42
    with pytest.raises(UsageError, match="`tpu` is not a tpushell Session"):
        ip.run_line_magic("layers", "")


def test_extension_reuses_an_existing_session_and_refuses_to_clobber(workdir):
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell()
    try:
        mine = Session()
        shell.user_ns["tpu"] = mine
        shell.run_line_magic("load_ext", "tpushell")
        assert shell.user_ns["tpu"] is mine
        shell.run_line_magic("unload_ext", "tpushell")
        shell.user_ns["tpu"] = "not a session"
        with pytest.raises(UsageError, match="not a tpushell Session"):
            shell.run_line_magic("load_ext", "tpushell")
    finally:
        InteractiveShell.clear_instance()


def test_infer_saves_every_tensor_with_all(ip, workdir):
    out = run_magic(ip, "load tiny.onnx")
    assert out[0].startswith("tiny: 4 ops")
    out = run_magic(ip, "infer tiny_input.npz -o y.npz --all")
    assert out[-1] == "saved 4 tensors to y.npz"
    saved = np.load(workdir / "y.npz")
    assert sorted(saved.files) == ["c1_Conv", "p1_MaxPool", "r1_LeakyRelu", "y_Conv"]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")   # IPython's complete(), still the
def test_tab_completes_like_the_shell(ip, workdir):                  # simplest way to ask like Tab
    def offered(line: str) -> list[str]:
        return ip.complete("", line)[1]
    ip.run_line_magic("load", "tiny.onnx")
    assert offered("%layers r") == ["r1_LeakyRelu"]
    assert offered("%set chip bm168") == ["bm1684x", "bm1684", "bm1688"]
    assert "F16" not in offered("%set_precision F")                 # a layer comes first
    assert offered("%set_precision r1_LeakyRelu F") == ["F16", "F32"]
    assert offered("%load tiny.onnx --pixel_format r") == ["rgb", "rgba"]
    assert offered("%load tiny.onnx --pix") == ["--pixel_format"]
    assert offered("%qtable load tiny_i") == ["tiny_input.npz"]
    assert offered("%plot d") == ["detections"]
