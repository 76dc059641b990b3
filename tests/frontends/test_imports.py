"""Dependency direction (DESIGN.md): core imports neither cmd2, IPython nor matplotlib; the shell
does not import IPython; the magics do not import cmd2."""
from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {m.split(".")[0] for m in done.stdout.split()}


@pytest.mark.parametrize("statement, banned", [
    ("import tpushell, tpushell.core, tpushell.core.commands, tpushell.core.workspace, tpushell.core.results",
     {"cmd2", "IPython", "matplotlib", "prompt_toolkit"}),
    ("import tpushell.app", {"IPython"}),
    ("import tpushell.magics.tpumagics", {"cmd2"}),
])
def test_import_does_not_pull_in(statement, banned):
    assert not loaded_after(statement) & banned
