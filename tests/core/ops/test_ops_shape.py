"""Data-movement ops against onnxruntime: reshape-likes, concat/split/slice/gather, pad, and
Resize/Upsample in every opset form, coordinate mode and nearest mode."""
from __future__ import annotations

import numpy as np
import pytest
from opcheck import Const, In, case, check_op

X = In((2, 3, 4, 5))


def i64(*v):
    return Const(np.array(v, np.int64))


def f32(*v):
    return Const(np.array(v, np.float32))


RESHAPES = [
    case("zero-and-minus-one", "Reshape", [X, i64(0, -1, 5)]),
    case("flat", "Reshape", [X, i64(-1)]),
    case("zero-keeps-dim", "Reshape", [X, i64(0, 3, 0, 5)]),
    case("allowzero-empty", "Reshape", [In((0, 3, 4)), i64(3, 0)], {"allowzero": 1}, opset=14),
    case("allowzero-off", "Reshape", [X, i64(0, 12, -1)], {"allowzero": 0}, opset=14),
    case("axis-1", "Flatten", [X]),
    case("axis-0", "Flatten", [X], {"axis": 0}),
    case("axis-3", "Flatten", [X], {"axis": 3}),
    case("axis-neg", "Flatten", [X], {"axis": -2}),
    case("default", "Transpose", [X]),
    case("nhwc", "Transpose", [X], {"perm": [0, 2, 3, 1]}),
    case("2d", "Transpose", [In((3, 7))], {"perm": [1, 0]}),
    case("attr", "Squeeze", [In((1, 3, 1, 5))], {"axes": [0, -2]}, opset=11),
    case("attr-all", "Squeeze", [In((1, 3, 1, 5))], opset=11),
    case("input", "Squeeze", [In((1, 3, 1, 5)), i64(2)], opset=13),
    case("input-none", "Squeeze", [In((1, 3, 1, 5))], opset=13),
    case("attr", "Unsqueeze", [In((3, 5))], {"axes": [0, 3]}, opset=11),
    case("attr-neg", "Unsqueeze", [In((3, 5))], {"axes": [-1]}, opset=11),
    case("input", "Unsqueeze", [In((3, 5)), i64(1, -1)], opset=13),
    case("input-unsorted", "Unsqueeze", [In((3, 5)), i64(3, 0)], opset=21),
    case("expand", "Expand", [In((3, 1)), i64(2, 3, 4)]),
    case("expand-smaller-shape", "Expand", [In((2, 3, 1)), i64(1, 5)]),
    case("tile", "Tile", [In((2, 3)), i64(2, 1)]),
]

CONCAT_SPLIT = [
    case("axis1", "Concat", [X, In((2, 2, 4, 5)), In((2, 1, 4, 5))], {"axis": 1}),
    case("axis-neg", "Concat", [X, In((2, 3, 4, 2))], {"axis": -1}),
    case("single", "Concat", [X], {"axis": 0}),
    case("int64", "Concat", [In((2,), "int64", 0, 9), Const(np.array([7], np.int64))], {"axis": 0}),
    case("opset11-attr", "Split", [In((2, 6, 4))], {"axis": 1, "split": [1, 2, 3]}, opset=11, n_outputs=3),
    case("opset11-equal", "Split", [In((2, 6, 4))], {"axis": 1}, opset=11, n_outputs=3),
    case("opset13-input", "Split", [In((2, 6, 4)), i64(4, 2)], {"axis": 1}, opset=13, n_outputs=2),
    case("opset13-equal-neg-axis", "Split", [In((2, 6, 4))], {"axis": -1}, opset=13, n_outputs=2),
    case("opset18-num-outputs", "Split", [In((2, 7, 4))], {"axis": 1, "num_outputs": 3}, opset=18, n_outputs=3),
    case("opset18-num-outputs-even", "Split", [In((6, 2))], {"num_outputs": 2}, opset=18, n_outputs=2),
    case("opset18-input", "Split", [In((2, 7, 4)), i64(3, 4)], {"axis": 1}, opset=18, n_outputs=2),
]

SLICE_GATHER = [
    case("basic", "Slice", [X, i64(0, 1), i64(2, 3), i64(1, 2)]),
    case("no-axes", "Slice", [In((6, 5)), i64(1, 0), i64(5, 4)]),
    case("negative", "Slice", [X, i64(-3), i64(-1), i64(-1)]),
    case("step", "Slice", [X, i64(0, 4), i64(5, 0), i64(3, 2), i64(2, -1)]),
    case("negative-step-to-start", "Slice", [X, i64(-1), i64(-9223372036854775807), i64(3), i64(-1)]),
    case("int-max-end", "Slice", [X, i64(1), i64(9223372036854775807), i64(1)]),
    case("clamped", "Slice", [X, i64(-100, 2), i64(100, 1000), i64(2, 3), i64(1, 1)]),
    case("opset1-attrs", "Slice", [X], {"starts": [1, 0], "ends": [3, -1], "axes": [2, 3]}, opset=9),
    case("axis0", "Gather", [X, i64(1, 0, 1)]),
    case("axis2-negative-indices", "Gather", [X, Const(np.array([[-1, 0], [2, -4]], np.int64))], {"axis": 2}),
    case("scalar-index", "Gather", [X, Const(np.int64(-2))], {"axis": 1}),
    case("int32-indices", "Gather", [X, Const(np.array([3, 1], np.int32))], {"axis": -1}),
    case("runtime-indices", "Gather", [In((5, 4)), In((3,), "int64", -5, 5)]),
    case("full-index", "GatherND", [In((3, 4)), Const(np.array([[0, 1], [2, -1]], np.int64))]),
    case("partial-index", "GatherND", [In((3, 4, 5)), Const(np.array([[[1], [0]], [[2], [-3]]], np.int64))]),
    case("batch-dims", "GatherND", [In((2, 3, 4)), Const(np.array([[1, 2], [0, 3]], np.int64))], {"batch_dims": 1}),
    case("batch-dims-2", "GatherND", [In((2, 3, 4, 5)), Const(np.zeros((2, 3, 1, 1), np.int64) + 2)],
         {"batch_dims": 2}),
]

PAD = [
    case("opset2-attrs", "Pad", [In((2, 3, 4))], {"pads": [0, 1, 2, 0, 2, 1], "value": 1.5}, opset=10),
    case("constant", "Pad", [X, i64(0, 0, 1, 2, 0, 0, 2, 1)], opset=11),
    case("constant-value", "Pad", [X, i64(0, 0, 1, 2, 0, 0, 2, 1), f32(-3.0)], opset=13),
    case("constant-negative-crop", "Pad", [X, i64(0, 0, -1, 2, 0, 0, 1, -2)], opset=13),
    case("reflect", "Pad", [X, i64(0, 0, 2, 3, 0, 0, 1, 2)], {"mode": "reflect"}, opset=13),
    case("edge", "Pad", [X, i64(0, 1, 2, 3, 0, 2, 1, 0)], {"mode": "edge"}, opset=13),
    case("axes", "Pad", [X, i64(1, 2, 3, 0), f32(0.5), i64(1, 3)], opset=18),
    case("axes-negative", "Pad", [X, i64(2, 1, 1, 2), None, i64(-2, -1)], {"mode": "reflect"}, opset=18),
    case("wrap", "Pad", [X, i64(0, 0, 2, 3, 0, 0, 1, 2)], {"mode": "wrap"}, opset=19),
    case("int64-constant", "Pad", [In((3, 4), "int64", 0, 9), i64(1, 1, 0, 2), Const(np.array(7, np.int64))], opset=13),
]

COORD_MODES = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
SCALES_UP = f32(1, 1, 2, 3)
SCALES_DOWN = f32(1, 1, 0.5, 0.75)
SCALES_ODD = f32(1, 1, 1.7, 0.6)
IMG = In((2, 3, 6, 8))


def _resize_cases():
    rows = [
        case("opset10-nearest", "Resize", [IMG, SCALES_UP], opset=10),
        case("opset10-nearest-down", "Resize", [IMG, SCALES_DOWN], opset=10),
        case("opset10-linear", "Resize", [IMG, SCALES_UP], {"mode": "linear"}, opset=10),
        case("opset11-default", "Resize", [IMG, f32(), SCALES_UP], opset=11),
        case("opset13-empty-roi", "Resize", [IMG, None, SCALES_UP], opset=13),
        case("yolo-upsample", "Resize", [In((1, 4, 13, 13)), None, f32(1, 1, 2, 2)], {"mode": "nearest"}, opset=13),
    ]
    for cm in COORD_MODES:
        for nm in NEAREST_MODES:
            for name, sc in (("up", SCALES_UP), ("down", SCALES_DOWN), ("odd", SCALES_ODD)):
                rows.append(case(f"nearest-{cm}-{nm}-{name}", "Resize", [IMG, None, sc],
                                 {"mode": "nearest", "coordinate_transformation_mode": cm,
                                  "nearest_mode": nm}, opset=13))
        for name, sc in (("up", SCALES_UP), ("down", SCALES_DOWN), ("odd", SCALES_ODD)):
            if cm == "tf_half_pixel_for_nn":
                continue  # a nearest-only mode
            rows.append(case(f"linear-{cm}-{name}", "Resize", [IMG, None, sc],
                             {"mode": "linear", "coordinate_transformation_mode": cm}, opset=13))
    rows += [
        case("sizes-nearest", "Resize", [IMG, None, None, i64(2, 3, 9, 5)], opset=13),
        case("sizes-linear", "Resize", [IMG, None, None, i64(2, 3, 11, 4)],
             {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, opset=13),
        case("sizes-linear-align", "Resize", [IMG, None, None, i64(2, 3, 1, 5)],
             {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, opset=13),
        case("linear-3d-input", "Resize", [In((2, 3, 7)), None, f32(1, 1, 2.5)], {"mode": "linear"}, opset=13),
        case("opset18-axes-scales", "Resize", [IMG, None, f32(2, 3)], {"axes": [2, 3]}, opset=18),
        case("opset18-axes-sizes-linear", "Resize", [IMG, None, None, i64(10, 3)],
             {"axes": [3, 2], "mode": "linear"}, opset=18),
        case("opset18-not-larger", "Resize", [IMG, None, None, i64(12, 12)],
             {"axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, opset=18),
        case("opset18-not-smaller", "Resize", [IMG, None, None, i64(12, 12)],
             {"axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller", "mode": "linear"}, opset=18),
        case("cubic", "Resize", [IMG, None, SCALES_ODD], {"mode": "cubic"}, opset=13),
        case("cubic-down", "Resize", [IMG, None, SCALES_DOWN], {"mode": "cubic"}, opset=13),
        case("cubic-exclude-outside", "Resize", [IMG, None, SCALES_UP],
             {"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5}, opset=13),
        case("cubic-align-corners", "Resize", [IMG, None, SCALES_ODD],
             {"mode": "cubic", "coordinate_transformation_mode": "align_corners"}, opset=13),
        case("tf-crop-and-resize-linear", "Resize",
             [IMG, f32(0, 0, 0.2, -0.1, 1, 1, 0.9, 1.3), None, i64(2, 3, 5, 7)],
             {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
              "extrapolation_value": 9.0}, opset=13),
        case("tf-crop-and-resize-nearest", "Resize",
             [IMG, f32(0, 0, -0.2, 0.1, 1, 1, 1.1, 0.8), None, i64(2, 3, 7, 5)],
             {"coordinate_transformation_mode": "tf_crop_and_resize"}, opset=13),
        case("tf-crop-and-resize-axes", "Resize", [IMG, f32(0.1, 0.8), None, i64(5)],
             {"mode": "linear", "axes": [3], "coordinate_transformation_mode": "tf_crop_and_resize"},
             opset=18),
        case("antialias-linear", "Resize", [IMG, None, f32(1, 1, 0.3, 0.6)],
             {"antialias": 1, "mode": "linear"}, opset=18),
        case("antialias-linear-up", "Resize", [IMG, None, f32(1, 1, 0.5, 1.5)],
             {"antialias": 1, "mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
             opset=18),
        case("antialias-cubic", "Resize", [IMG, None, SCALES_ODD], {"antialias": 1, "mode": "cubic"}, opset=18),
        case("antialias-cubic-exclude", "Resize", [IMG, None, None, i64(2, 3, 2, 3)],
             {"antialias": 1, "mode": "cubic", "exclude_outside": 1}, opset=18),
        case("opset19-half-pixel-symmetric", "Resize", [IMG, None, SCALES_ODD],
             {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, opset=19),
        case("opset19-nearest", "Resize", [IMG, None, SCALES_UP], {"mode": "nearest"}, opset=19),
        case("opset9-upsample", "Upsample", [IMG, SCALES_UP], opset=9),
        case("opset9-upsample-linear", "Upsample", [IMG, SCALES_UP], {"mode": "linear"}, opset=9),
        case("opset7-upsample-attr", "Upsample", [IMG], {"scales": [1.0, 1.0, 2.0, 2.0]}, opset=7),
    ]
    return rows


@pytest.mark.parametrize("op_type,inputs,attrs,kw",
                         RESHAPES + CONCAT_SPLIT + SLICE_GATHER + PAD + _resize_cases())
def test_op_matches_onnxruntime(op_type, inputs, attrs, kw):
    check_op(op_type, inputs, attrs, **kw)


# ---- ops that compute from shapes or constants: folded at import, checked through a consumer -------
def _folded_model(nodes, opset, inits=()):
    """y = z + Cast(c, float) where the nodes compute c from x's shape or from constants; z is (1,)."""
    from onnx import TensorProto, helper
    from opcheck import make_model
    nodes = list(nodes) + [helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
                           helper.make_node("Add", ["z", "cf"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5]),
              helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])]
    return make_model(helper.make_graph(nodes, "m", inputs, [helper.make_empty_tensor_value_info("y")],
                                        list(inits)), opset)


def _check_folded(model):
    from opcheck import assert_matches, ours, reference
    from tpushell.core.graph.onnx_import import import_onnx
    assert len(import_onnx(model).nodes) == 1      # the Add of the folded value (an AddConst)
    feeds = {"x": np.zeros((2, 3, 4, 5), np.float32), "z": np.array([0.25], np.float32)}
    assert_matches(ours(model, feeds)["y"], reference(model, feeds)[0], "y")


RANGES = [(0.5, 3.7, 0.4, np.float32), (0.0, 0.3, 0.1, np.float32), (0.0, 1.0, 0.1, np.float32),
          (-1.5, 2.0, 0.7, np.float32), (10, 1, -3, np.int64), (2, 2, 1, np.int32), (-4, 9, 4, np.int32)]


@pytest.mark.parametrize("start,limit,delta,dtype", RANGES, ids=[f"{a}-{b}-{c}" for a, b, c, _ in RANGES])
def test_range_matches_onnxruntime(start, limit, delta, dtype):
    from onnx import helper, numpy_helper
    inits = [numpy_helper.from_array(np.array(v, dtype), n) for n, v in (("s", start), ("l", limit), ("d", delta))]
    _check_folded(_folded_model([helper.make_node("Range", ["s", "l", "d"], ["c"])], 13, inits))


def test_shape_derived_values_match_onnxruntime():
    from onnx import helper, numpy_helper
    for nodes in ([helper.make_node("Shape", ["x"], ["c"], start=1, end=-1)],
                  [helper.make_node("Shape", ["x"], ["c"], start=-2)],
                  [helper.make_node("Size", ["x"], ["c"])],
                  [helper.make_node("Shape", ["x"], ["s"]),
                   helper.make_node("ConstantOfShape", ["s"], ["c"],
                                    value=numpy_helper.from_array(np.array([7], np.int64)))]):
        _check_folded(_folded_model(nodes, 15))
