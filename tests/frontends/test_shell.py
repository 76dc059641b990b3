"""The cmd2 shell: completion, one-line errors, settings, scripts, figures, state kept on errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tpushell.app import main, script_lines
from tpushell.core.results import Message

from shelldrive import run_shell


def complete(app, line: str) -> tuple[str, ...]:
    """Completions for the last word of `line`, as the shell offers them on Tab."""
    begidx = line.rfind(" ") + 1
    return app.complete(line[begidx:], line, begidx, len(line)).to_strings()


def test_completes_layers_settings_choices_and_paths(shell, workdir):
    assert complete(shell, "layers c") == ()                     # no model yet: nothing to offer
    run_shell(shell, "load tiny.onnx")
    assert complete(shell, "layers r") == ("r1_LeakyRelu",)
    assert set(complete(shell, "layers ")) >= {"c1_Conv", "p1_MaxPool", "y_Conv", "Conv", "MaxPool"}
    assert complete(shell, "set_precision F") == ()                # a layer comes first
    assert complete(shell, "set_precision r1_LeakyRelu F") == ("F16", "F32")
    assert complete(shell, "set ch") == ("chip",)
    assert set(complete(shell, "set chip bm168")) == {"bm1684x", "bm1684", "bm1688"}
    assert complete(shell, "set cosine_scale r") == ("reference",)
    assert set(complete(shell, "load ti")) == {"tiny.onnx", "tiny_input.npz"}
    assert complete(shell, "load tiny.onnx --pixel_format r") == ("rgb", "rgba")


def test_unknown_command_and_bad_option_are_one_line_errors(shell, workdir):
    out = run_shell(shell, "layres")
    assert len(out) == 1 and out[0].startswith("error: unknown command 'layres' (did you mean layers")
    assert out[0].endswith("'help' lists the commands")
    assert run_shell(shell, "load tiny.onnx --pad_value x") == [
        "error: load: argument --pad_value: invalid int value: 'x' (see 'help load')"]
    assert shell.failed


def test_errors_leave_the_session_unchanged(shell, workdir):
    run_shell(shell, "load tiny.onnx")
    run_shell(shell, "set chip bm1688")
    graph, history = shell.session.graph, list(shell.session.history)
    for line in ["load missing.onnx", "load tiny_input.npz", "set chip nope", "set samples 0",
                 "layers nothing", "open missing.tpw", "open tiny.onnx", "infer missing.npz",
                 "load tiny.onnx --input_shapes [[1,3,9]]", "load tiny.onnx --output_names nope",
                 "deploy tiny_int8.bmodel", "qtable load tiny.onnx"]:
        out = run_shell(shell, line)
        assert len(out) == 1 and out[0].startswith("error: "), (line, out)
    assert shell.session.graph is graph
    assert shell.session.settings.chip == "bm1688"
    assert shell.session.history == history
    assert not (workdir / "tiny_int8.bmodel").exists()


def test_errors_name_what_the_user_typed_and_the_shell_command_to_use(shell, workdir):
    assert run_shell(shell, "deploy x.bmodel")[0].startswith("error: no model loaded")
    run_shell(shell, "load tiny.onnx")
    assert run_shell(shell, "set_precision F16 y_Conv") == [
        "error: set_precision takes the layers first, then the precision: `set_precision y_Conv F16`"]
    assert "`data FOLDER`" in run_shell(shell, "cos")[0]
    assert "`calibrate --table FILE`" in run_shell(shell, "plot calibration")[0]
    (workdir / "data").mkdir()
    np.save(workdir / "data" / "s0.npy", np.ones((1, 3, 8, 8), np.float32))
    out = run_shell(shell, "calibrate data/s0.npy")
    assert out[0].startswith("error: dataset data/s0.npy is a file, not a folder"), out
    run_shell(shell, "calibrate data")
    run_shell(shell, "set cosine_scale reference")
    assert run_shell(shell, "cos --min_layer_cos 0.3")[0] == (
        "error: --min_layer_cos 0.3 is outside (0.5, 1]: cosine_scale is reference (0.5+0.5*cos); "
        "give e.g. 0.9995, or `set cosine_scale true`")
    run_shell(shell, "set samples 5")
    assert any("5 samples wanted (setting 'samples') but data has 1; using all" in line
               for line in run_shell(shell, "cos"))


def test_help_lists_every_command_by_category(shell):
    out = "\n".join(run_shell(shell, "help"))
    for name in ("load", "layers", "infer", "set", "save", "open", "journal"):
        assert name in out
    assert "List the model's layers" in "\n".join(run_shell(shell, "help layers"))


def test_shell_settings_still_work(shell):
    run_shell(shell, "set debug true")
    assert shell.debug is True
    assert "plot_dir" in run_shell(shell, "set")[-1]


def test_settings_are_cmd2_settables_bound_to_the_session(shell, workdir):
    shell.settables["chip"].value = "cv183x"     # what cmd2 itself does on `set`
    assert shell.session.settings.chip == "cv183x"
    with pytest.raises(ValueError, match="bm9999"):
        shell.settables["chip"].value = "bm9999"
    run_shell(shell, "load tiny.onnx")
    run_shell(shell, "save ws.tpw")
    run_shell(shell, "set chip bm1688")
    run_shell(shell, "open ws.tpw")               # replaces the session's settings object
    assert shell.settables["chip"].value == "cv183x"


def test_figures_are_saved_to_a_new_folder_per_session_and_never_overwrite(shell, tmp_path):
    import os
    import re
    from matplotlib.figure import Figure
    from tpushell.app import TpuShell
    from tpushell.core import Session
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    (tmp_path / "tpushell_plot_1.png").write_bytes(b"the user's own figure")
    shell.plot_dir = str(tmp_path)
    first = run_shell_show(shell, Message("a plot", figure=fig))
    second = run_shell_show(shell, Message("a plot", figure=fig))
    paths = [re.fullmatch(r"figure saved to (.+)", out[1]).group(1) for out in (first, second)]
    folder = os.path.dirname(paths[0])
    assert re.fullmatch(r"tpushell_plots_\d{8}_\d{6}", os.path.basename(folder))
    assert paths == [os.path.join(folder, "plot_1.png"), os.path.join(folder, "plot_2.png")]
    assert all(os.path.getsize(p) > 1000 for p in paths)
    assert (tmp_path / "tpushell_plot_1.png").read_bytes() == b"the user's own figure"
    other = TpuShell(Session(), history_file="", plot_dir=str(tmp_path))   # the next session
    out = run_shell_show(other, Message("a plot", figure=fig))
    assert os.path.dirname(out[1].split(" to ", 1)[1]) != folder


def run_shell_show(shell, result) -> list[str]:
    import contextlib
    import io
    buf = io.StringIO()
    shell.stdout = buf
    with contextlib.redirect_stdout(buf):
        shell.show(result)
    return buf.getvalue().splitlines()


def test_ipy_gets_the_same_session(shell):
    assert shell.py_locals["tpu"] is shell.session


def test_script_lines_skip_comments_and_join_continuations(tmp_path):
    script = tmp_path / "s.tps"
    script.write_text("# a comment\n\nload m.onnx \\\n   --pad_value 128\nlayers\n")
    assert list(script_lines(str(script))) == [(f"{script}:3", "load m.onnx --pad_value 128"),
                                               (f"{script}:5", "layers")]


def test_script_stops_at_the_first_error_with_exit_code_1(workdir, capsys):
    script = workdir / "s.tps"
    script.write_text("load tiny.onnx\nlayers nothing\nsave never.tpw\n")
    assert main(["--script", str(script)]) == 1
    out, err = capsys.readouterr()
    assert "(tpu) layers nothing" in out and "(tpu) save" not in out
    assert f"stopped at {script}:2: layers nothing" in err
    assert not (workdir / "never.tpw").exists()


def test_commands_from_c_run_after_the_script(workdir, capsys):
    script = workdir / "s.tps"
    script.write_text("load tiny.onnx\n")
    assert main(["--script", str(script), "-c", "set chip bm1688", "-c", "save ws.tpw"]) == 0
    assert (workdir / "ws.tpw").exists()
    assert main(["-c", "layers"]) == 1
    assert "error: no model loaded; run `load MODEL` first" in capsys.readouterr().err


def test_console_script_runs_as_a_program(workdir):
    done = subprocess.run([sys.executable, "-m", "tpushell", "-c", "load tiny.onnx", "-c", "layers Conv"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "c1_Conv" in done.stdout and "y_Conv" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "tpushell", "--script", "missing.tps"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "script not found: missing.tps" in bad.stderr


def test_subcommands_complete_and_bare_qtable_shows_it(shell, workdir):
    assert set(complete(shell, "qtable ")) == {"show", "load", "save", "search", "diff"}
    assert complete(shell, "qtable load tiny_i") == ("tiny_input.npz",)
    assert run_shell(shell, "qtable") == ["error: no model loaded; run `load MODEL` first"]
    run_shell(shell, "load tiny.onnx")
    run_shell(shell, "set_precision y_Conv F16")
    assert run_shell(shell, "qtable") == run_shell(shell, "qtable show")
    assert run_shell(shell, "qtable")[0] == "qtable: 1 layer(s) (F16 1)"
