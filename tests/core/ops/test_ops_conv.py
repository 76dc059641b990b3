"""Conv, ConvTranspose and BatchNormalization against onnxruntime, one line per attribute variant."""
from __future__ import annotations

import numpy as np
import pytest

from opcheck import Const, In, case, check_op
from tpushell.core.ops.conv import conv_nd

RNG = np.random.default_rng(7)


def w(*shape):
    return Const(RNG.uniform(-1, 1, shape).astype(np.float32))


CONV = [
    case("2d-basic", "Conv", [In((1, 3, 9, 9)), w(4, 3, 3, 3)]),
    case("2d-bias-pads", "Conv", [In((2, 3, 9, 9)), w(5, 3, 3, 3), w(5)], {"pads": [1, 1, 1, 1]}),
    case("2d-asym-pads", "Conv", [In((1, 2, 7, 8)), w(3, 2, 3, 2)], {"pads": [0, 2, 1, 1]}),
    case("2d-strides", "Conv", [In((1, 3, 11, 10)), w(4, 3, 3, 3)], {"strides": [2, 3], "pads": [1, 1, 1, 1]}),
    case("2d-dilations", "Conv", [In((1, 2, 12, 12)), w(3, 2, 3, 3)], {"dilations": [2, 3], "pads": [2, 1, 2, 1]}),
    case("2d-groups", "Conv", [In((2, 4, 8, 8)), w(6, 2, 3, 3), w(6)], {"group": 2, "pads": [1, 1, 1, 1]}),
    case("2d-depthwise", "Conv", [In((2, 5, 9, 9)), w(5, 1, 3, 3), w(5)], {"group": 5, "pads": [1, 1, 1, 1]}),
    case("2d-depthwise-blocks-relu-bias", "Conv", [In((2, 48, 60, 60)), w(48, 1, 3, 3), w(48)],
         {"group": 48, "pads": [1, 1, 1, 1]}),
    case("2d-depthwise-mult", "Conv", [In((1, 3, 8, 8)), w(6, 1, 3, 3)], {"group": 3, "strides": [2, 2]}),
    case("2d-depthwise-dil-stride", "Conv", [In((1, 4, 13, 13)), w(4, 1, 3, 3)],
         {"group": 4, "dilations": [2, 2], "strides": [2, 2], "pads": [2, 2, 2, 2]}),
    case("2d-pointwise", "Conv", [In((3, 8, 5, 5)), w(4, 8, 1, 1), w(4)]),
    case("2d-pointwise-stride", "Conv", [In((1, 8, 6, 6)), w(4, 8, 1, 1)], {"strides": [2, 2]}),
    case("2d-kernel-shape", "Conv", [In((1, 3, 7, 7)), w(2, 3, 2, 3)], {"kernel_shape": [2, 3]}),
    case("same-upper", "Conv", [In((1, 2, 7, 7)), w(3, 2, 4, 4)], {"auto_pad": "SAME_UPPER"}),
    case("same-lower", "Conv", [In((1, 2, 7, 7)), w(3, 2, 4, 4)], {"auto_pad": "SAME_LOWER"}),
    case("same-upper-stride", "Conv", [In((1, 2, 9, 8)), w(3, 2, 3, 3)],
         {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    case("same-lower-stride-dil", "Conv", [In((1, 2, 10, 9)), w(3, 2, 3, 2)],
         {"auto_pad": "SAME_LOWER", "strides": [2, 3], "dilations": [2, 1]}, ref="onnx"),  # ORT refuses
    case("valid", "Conv", [In((1, 2, 7, 7)), w(3, 2, 3, 3)], {"auto_pad": "VALID", "strides": [2, 2]}),
    case("1d", "Conv", [In((2, 3, 17)), w(4, 3, 5), w(4)], {"pads": [2, 1], "strides": [2]}),
    case("1d-dil-groups", "Conv", [In((1, 4, 20)), w(4, 2, 3)], {"dilations": [3], "group": 2}),
    case("1d-same-upper", "Conv", [In((1, 2, 9)), w(2, 2, 4)], {"auto_pad": "SAME_UPPER", "strides": [2]}),
    case("3d", "Conv", [In((1, 2, 5, 6, 5)), w(3, 2, 3, 3, 2)], {"pads": [1, 0, 1, 1, 1, 0]}),
    case("row-blocks-batch2", "Conv", [In((2, 3, 70, 70)), w(4, 3, 3, 3), w(4)], {"pads": [1, 1, 1, 1]}),
    case("row-blocks-strided", "Conv", [In((1, 2, 150, 131)), w(3, 2, 3, 3)], {"strides": [2, 1]}),
    case("pointwise-row-blocks", "Conv", [In((2, 4, 80, 70)), w(5, 4, 1, 1), w(5)]),
    case("1d-long", "Conv", [In((2, 2, 9000)), w(3, 2, 5), w(3)], {"pads": [2, 2]}),
    case("3d-row-blocks", "Conv", [In((1, 2, 6, 40, 40)), w(3, 2, 3, 3, 3)], {"pads": [1, 1, 1, 1, 1, 1]}),
    case("batched-small-maps", "Conv", [In((12, 8, 10, 20)), w(6, 8, 3, 3), w(6)], {"pads": [1, 1, 1, 1]}),
    case("groups-batch3", "Conv", [In((3, 6, 9, 9)), w(4, 3, 3, 3), w(4)], {"group": 2}),
    case("weight-as-input", "Conv", [In((1, 3, 6, 6)), In((2, 3, 3, 3))], {"pads": [1, 1, 1, 1]}),
    case("opset11", "Conv", [In((1, 3, 6, 6)), w(2, 3, 3, 3)], opset=11),
    case("opset21", "Conv", [In((1, 3, 6, 6)), w(2, 3, 3, 3)], opset=21),
]

CONV_TRANSPOSE = [
    case("basic", "ConvTranspose", [In((1, 3, 5, 5)), w(3, 4, 3, 3)]),
    case("bias-strides", "ConvTranspose", [In((2, 3, 5, 4)), w(3, 2, 3, 3), w(2)], {"strides": [2, 2]}),
    case("pads", "ConvTranspose", [In((1, 2, 6, 6)), w(2, 3, 4, 4)], {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    case("asym-pads", "ConvTranspose", [In((1, 2, 5, 5)), w(2, 3, 3, 3)], {"strides": [2, 1], "pads": [0, 1, 2, 0]}),
    case("output-padding", "ConvTranspose", [In((1, 2, 5, 5)), w(2, 3, 3, 3)],
         {"strides": [3, 2], "output_padding": [2, 1]}),
    case("groups", "ConvTranspose", [In((1, 4, 5, 5)), w(4, 3, 3, 3), w(6)], {"group": 2, "strides": [2, 2]}),
    case("depthwise", "ConvTranspose", [In((1, 3, 4, 4)), w(3, 1, 2, 2)], {"group": 3, "strides": [2, 2]}),
    case("dilations", "ConvTranspose", [In((1, 2, 5, 5)), w(2, 2, 3, 3)], {"dilations": [2, 2]}),
    case("output-shape", "ConvTranspose", [In((1, 2, 4, 4)), w(2, 2, 3, 3)],
         {"strides": [2, 2], "output_shape": [9, 9]}),
    case("same-upper", "ConvTranspose", [In((1, 2, 4, 5)), w(2, 2, 3, 3)], {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    case("same-lower", "ConvTranspose", [In((1, 2, 4, 5)), w(2, 2, 4, 4)], {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    case("1d", "ConvTranspose", [In((2, 3, 7)), w(3, 2, 4), w(2)], {"strides": [2], "pads": [1, 2]}),
    case("kernel-1x1-stride", "ConvTranspose", [In((1, 4, 3, 3)), w(4, 2, 1, 1)], {"strides": [2, 2]}),
]

BN = [
    case("4d", "BatchNormalization", [In((2, 3, 5, 5)), w(3), w(3), w(3), Const(RNG.uniform(0.1, 2, 3).astype(np.float32))]),
    case("2d", "BatchNormalization", [In((4, 6)), w(6), w(6), w(6), Const(RNG.uniform(0.1, 2, 6).astype(np.float32))],
         {"epsilon": 1e-3}),
    case("3d-opset11", "BatchNormalization",
         [In((2, 4, 7)), w(4), w(4), w(4), Const(RNG.uniform(0.1, 2, 4).astype(np.float32))], opset=11),
]


@pytest.mark.parametrize("op_type,inputs,attrs,kw", CONV + CONV_TRANSPOSE + BN)
def test_op_matches_onnxruntime(op_type, inputs, attrs, kw):
    check_op(op_type, inputs, attrs, **kw)


@pytest.mark.parametrize("shape,group,pads", [((3, 4, 9, 9), 1, [1, 1, 1, 1]), ((2, 4, 70, 70), 2, [0, 1, 2, 1]),
                                              ((12, 8, 5, 5), 1, [0, 0, 0, 0]), ((12, 8, 10, 20), 1, [1, 1, 1, 1])])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_nd_on_integer_codes_is_exact(shape, group, pads, dtype):
    """The INT8 simulator runs conv_nd on int8 codes in float: sums must come out exact."""
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, shape)
    wq = rng.integers(-128, 128, (6, shape[1] // group, 3, 3))
    got = conv_nd(x.astype(dtype), wq.astype(dtype), None, [3, 3], [1, 1], [1, 1], pads[:2], pads[2:], group,
                  pad_value=-128.0)
    xp = np.pad(x, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])], constant_values=-128)
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))   # n, c, oh, ow, 3, 3
    cg, mg = shape[1] // group, 6 // group
    want = np.concatenate([np.einsum("ncyxij,mcij->nmyx", win[:, g * cg:(g + 1) * cg], wq[g * mg:(g + 1) * mg])
                           for g in range(group)], axis=1)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.astype(np.int64), want)
