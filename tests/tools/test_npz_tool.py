"""npz_tool.py compare / dump: the reference's summary, exit status, options, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from tpushell.tools import npz_tool


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    ref = {"a": rng.standard_normal((2, 8)).astype(np.float32),
           "b": rng.standard_normal(50).astype(np.float32),
           "q": np.arange(-4, 4, dtype=np.int8)}
    target = {"a": ref["a"].copy(), "b": ref["b"] + 0.3 * rng.standard_normal(50).astype(np.float32),
              "q": ref["q"].copy(), "only_here": np.zeros(2)}
    np.savez(tmp_path / "ref.npz", **ref)
    np.savez(tmp_path / "target.npz", **target)
    return str(tmp_path / "target.npz"), str(tmp_path / "ref.npz")


def test_compare_fails_with_the_reference_summary(files, capsys):
    target, ref = files
    assert npz_tool.main(["compare", target, ref]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[b                               ]  NOT_SIMILAR [FAILED]"
    assert out[1:6] == ["3 compared", "2 passed", "  2 equal, 0 close, 0 similar", "1 failed",
                        "  0 not equal, 1 not similar"]
    assert out[-3:] == [f"Target    {target}", f"Reference {ref}", "npz compare FAILED."]


def test_compare_passes_with_tolerance_or_except(files, capsys):
    target, ref = files
    assert npz_tool.main(["compare", target, ref, "--tolerance", "0.9,0.5", "-v"]) == 0
    out = capsys.readouterr().out
    assert "[b                               ]      SIMILAR [PASSED]" in out
    assert "cosine_similarity      = " in out and "int8: 0.00% at 127, 0.00% at -128, 12.50% zero" in out
    assert out.rstrip().endswith("npz compare PASSED.")
    assert npz_tool.main(["compare", target, ref, "--except", "b"]) == 0
    assert npz_tool.main(["compare", target, ref, "--tensor", "a,q"]) == 0
    assert "2 compared" in capsys.readouterr().out


def test_bad_input(files, tmp_path, capsys):
    target, ref = files
    assert npz_tool.main(["compare", target, str(tmp_path / "nope.npz")]) == 1
    assert "file not found" in capsys.readouterr().err
    assert npz_tool.main(["compare", target, ref, "--tolerance", "0.9"]) == 1
    assert "needs two numbers 'cos,euclid'" in capsys.readouterr().err
    assert npz_tool.main(["compare", target, ref, "--tensor", "zz"]) == 1
    assert "--tensor: zz not in both files" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    assert npz_tool.main(["compare", target, str(tmp_path / "other.npz")]) == 1
    assert "no tensor in common" in capsys.readouterr().err


def test_dump(files, capsys):
    assert npz_tool.main(["dump", files[1]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["a", "b", "q"]
    assert "[2, 8]" in lines[0] and "int8" in lines[2] and "min -4" in lines[2]
