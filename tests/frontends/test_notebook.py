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
    assert any(PNG in h for h in html)
    detect = next(out for src, out in shown if src.startswith("%detect"))
    text = detect.data["text/plain"]
    assert "F32 on 000000366711.jpg: 2 object(s)" in text and "person" in text and "orange" in text
    compare = next(out for src, out in shown if src.startswith("%detect") and "--compare" in src)
    assert "INT8:" in compare.data["text/plain"] and "mixed:" in compare.data["text/plain"]
    assert JPEG in compare.data["text/html"]
    for name in ("yolov3_tiny.mlir", "yolov3_cali_table", "yolov3_qtable", "yolov3_mix.bmodel",
                 "yolov3_mix.jpg"):
        assert (tmp_path / name).stat().st_size > 0, name
    # the chapter's flags said what they loaded / set
    search = "".join(out.get("text", "") + out.get("data", {}).get("text/plain", "")
                     for src, out in shown if src.startswith("search = %qtable search")
                     and WIDGET not in out.get("data", {}))      # its progress bar aside
    assert "loaded calibration table yolov3_cali_table (35 tensors)" in search
    # every figure is stored once (inside the HTML, no image/png beside it), so the file stays small
    for _, out in shown:
        data = out.get("data", {})
        assert "image/png" not in data
        assert sum(str(v).count(PNG) + str(v).count(JPEG) for v in data.values()) <= 1
    size = len(nbformat.writes(nb).encode())
    assert size < 2_000_000, f"the executed notebook is {size / 1e6:.1f} MB"
    # progress: one bar (a tqdm widget) per phase, no stream of updates
    calibrate = [out for src, out in shown if src.startswith("%calibrate")]
    bars = [out for out in calibrate if WIDGET in out.get("data", {})]
    assert len(bars) == 2, calibrate                    # statistics, tuning (one-pass histograms)
    assert not [out for out in calibrate if out.output_type == "stream"], calibrate
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    labels = [(m["state"].get("value") or "").replace("\u2007", " ")   # tqdm pads with figure spaces
              for m in states.values() if m["model_name"] == "HTMLModel"]
    assert any("calibration statistics" in v for v in labels)
    assert any("100/100" in v for v in labels)


PNG = "data:image/png;base64,"
JPEG = "data:image/jpeg;base64,"      # figures holding a photograph (detections)
WIDGET = "application/vnd.jupyter.widget-view+json"
