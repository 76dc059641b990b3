"""The cost model behind the search curve: MACs and bytes moved per op and precision."""
from __future__ import annotations

import pytest
from searchkit import fragile_graph
from tpushell.core.search.cost import op_costs, plan_cost


def test_conv_macs_and_bytes(tmp_path):
    graph = fragile_graph(tmp_path)
    costs = op_costs(graph)
    a = costs["a_Conv"]                                  # 4 -> 8 channels, 3x3, 8x8 output
    assert a.macs == 8 * 8 * 8 * 4 * 9
    assert (a.in_elems, a.out_elems, a.weight_elems) == (4 * 64, 8 * 64, 8 * 4 * 9 + 8)
    assert a.bytes("INT8") * 2 == a.bytes("F16") and a.bytes("F32") == 4 * a.bytes("INT8")
    assert costs["a_l_LeakyRelu"].macs == 0


def test_plan_cost_moves_macs_to_the_float_type(tmp_path):
    graph = fragile_graph(tmp_path)
    base = plan_cost(graph, {})
    mixed = plan_cost(graph, {"f_Conv": "F16"})
    f = op_costs(graph)["f_Conv"]
    assert base.float_macs == 0 and mixed.float_macs == f.macs
    assert mixed.total_macs == base.total_macs
    assert mixed.bytes - base.bytes == f.bytes("F16") - f.bytes("INT8")
    assert "F16" in str(mixed) and "MB moved per sample" in str(mixed)


@pytest.mark.zoo
def test_yolov3_tiny_macs(yolo_graph):
    costs = op_costs(yolo_graph)
    assert costs["conv0_Conv"].macs == 16 * 416 * 416 * 3 * 9
    assert costs["conv6_Conv"].macs == 1024 * 13 * 13 * 512 * 9
    assert 2.7e9 < plan_cost(yolo_graph, {}).total_macs < 2.9e9
