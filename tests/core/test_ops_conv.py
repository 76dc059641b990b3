"""Conv, ConvTranspose and BatchNormalization against onnxruntime, one line per attribute variant."""
from __future__ import annotations

import numpy as np
import pytest

from opcheck import Const, In, case, check_op

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
