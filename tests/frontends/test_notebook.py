"""The workshop notebook runs in a real Jupyter kernel (ipykernel + nbclient) on the real model and
data, and shows what it promises: tables, a figure, the detections.

The kernel is this interpreter, registered in a temporary kernel folder, so a fresh clone needs no
manual step (`./run.sh test`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "yolov3_tiny_mix_precision.ipynb"
KERNEL = "tpushell-test"


@pytest.fixture
def kernel(tmp_path, monkeypatch, shared) -> str:
    """A kernel spec running this Python, visible only to this test; the data path passed on."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tpushell test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TPUSHELL_ZOO", str(shared))
    return KERNEL


def outputs(nb) -> list[tuple[str, dict]]:
    """(source of the cell, output) for every output of every code cell."""
    return [(cell.source, out) for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.zoo
def test_notebook_runs_and_shows_tables_figures_and_detections(kernel, tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    nbclient.NotebookClient(nb, kernel_name=kernel, timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()   # files go there
    shown = outputs(nb)
    errors = [out for _, out in shown if out.output_type == "error"]
    assert not errors, errors
    html = [out.data["text/html"] for _, out in shown if "text/html" in out.get("data", {})]
    assert any('<table class="tpushell">' in h and "conv0_Conv" in h for h in html)
    assert any(out.get("data", {}).get("image/png") for _, out in shown)
    detect = next(out for src, out in shown if src.startswith("%detect"))
    text = detect.data["text/plain"]
    assert "F32 on 000000366711.jpg: 2 object(s)" in text and "person" in text and "orange" in text
    compare = next(out for src, out in shown if src.startswith("%detect") and "--compare" in src)
    assert "INT8:" in compare.data["text/plain"] and "mixed:" in compare.data["text/plain"]
    assert compare.data.get("image/png")
    for name in ("yolov3_cali_table", "yolov3_mix.bmodel"):
        assert (tmp_path / name).stat().st_size > 0, name
