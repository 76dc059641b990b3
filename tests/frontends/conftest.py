"""Front-end fixtures: a shell and an IPython with the extension, each on a fresh Session; a tiny
model written in the test; a work folder where `zoo/` and `golden/` point at the real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shelldrive import run_magic, run_shell, tiny_model


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh current folder holding tiny.onnx and tiny_input.npz (key 'x')."""
    monkeypatch.chdir(tmp_path)
    tiny_model(tmp_path / "tiny.onnx")
    np.savez(tmp_path / "tiny_input.npz", x=np.random.default_rng(1).random((1, 3, 8, 8), np.float32))
    return tmp_path


@pytest.fixture
def zoo_workdir(workdir, shared) -> Path:
    """`workdir` plus `zoo` and `golden` links to the real data, so paths stay short and stable."""
    (workdir / "zoo").symlink_to(shared / "zoo")
    (workdir / "golden").symlink_to(shared / "golden" / "yolov3_tiny")
    return workdir


@pytest.fixture
def shell():
    """A TpuShell on a fresh Session, without persistent history."""
    from tpushell.app import TpuShell
    from tpushell.core import Session
    return TpuShell(Session(), history_file="")


@pytest.fixture
def ip():
    """A fresh IPython shell with `%load_ext tpushell` and its own Session as `tpu`."""
    from IPython.core.history import HistoryAccessor
    from IPython.core.interactiveshell import InteractiveShell
    from tpushell.core import Session
    HistoryAccessor.enabled = False
    shell = InteractiveShell()
    shell.user_ns["tpu"] = Session()
    shell.run_line_magic("load_ext", "tpushell")
    yield shell
    shell.run_line_magic("unload_ext", "tpushell")
    InteractiveShell.clear_instance()


@pytest.fixture(params=["shell", "magics"])
def frontend(request):
    """run(line) -> output lines, through the shell or through the magics (both on fresh sessions)."""
    if request.param == "shell":
        app = request.getfixturevalue("shell")
        return lambda line: run_shell(app, line)
    shell = request.getfixturevalue("ip")
    return lambda line: run_magic(shell, line)


@pytest.fixture(autouse=True)
def _no_user_history(monkeypatch, tmp_path_factory):
    # the shell must never write the user's ~/.tpushell_history from a test
    monkeypatch.setenv("TPUSHELL_HISTORY", "")
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("DISPLAY", raising=False)
