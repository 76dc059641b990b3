"""Fidelity to the chip (issue 4, acceptance 2 and 3): with the reference's calibration table
and the tutorial image, our INT8 and mixed simulations reproduce every tensor the reference's
bm1684x simulator dumped."""
from __future__ import annotations

import numpy as np
import pytest
from tpushell.core.calibration.tables import read_calibration_table, read_qtable
from tpushell.core.graph.interpreter import run
from tpushell.core.metrics import cosine
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.quant.simulate import simulate

pytestmark = pytest.mark.zoo

# The reference's own output cosines of INT8 vs F32 on this image (golden README).
REFERENCE_INT8_COS = {"transpose_output1_Transpose": 0.998920, "transpose_output_Transpose": 0.998731}


@pytest.fixture(scope="module")
def lowerer(yolo_graph, golden):
    return Lowerer(yolo_graph, read_calibration_table(golden / "tpumlir_cali_table"), "bm1684x")


def fidelity(ours: dict, gold) -> dict[str, tuple[float, float]]:
    """Per golden tensor: (fraction of identical values, cosine)."""
    return {k: (float(np.mean(ours[k] == gold[k])), cosine(ours[k], gold[k])) for k in gold.files}


@pytest.mark.parametrize("which", ["int8", "mix"])
def test_every_tensor_matches_the_reference(lowerer, golden, golden_input, which):
    qtable = read_qtable(golden / "tpumlir_qtable") if which == "mix" else None
    plan = lowerer.plan("INT8", qtable)
    ours = simulate(plan, {"input_1": golden_input}, keep_all=True)
    with np.load(golden / f"000000366711_{which}_bm1684x.npz") as gold:
        assert set(gold.files) == set(ours), "tensor names (casts included) differ"
        scores = fidelity(ours, gold)
    low = {k: v for k, v in scores.items() if v[0] < 0.99}
    assert not low, f"tensors below 99% identical: {low}"
    for out in plan.outputs:
        assert scores[out][1] >= 0.9999
    if which == "int8":  # measured: every tensor bit-identical
        assert all(v[0] == 1.0 for v in scores.values())


def test_output_cosine_against_f32_matches_the_reference(lowerer, yolo_graph, golden_input):
    feeds = {"input_1": golden_input}
    ours = simulate(lowerer.plan("INT8"), feeds)
    f32 = run(yolo_graph, feeds)
    for name, ref_cos in REFERENCE_INT8_COS.items():
        assert abs(cosine(ours[name], f32[name]) - ref_cos) < 0.001, name
