"""MaxPool, AveragePool and the global pools against onnxruntime, one line per attribute variant."""
from __future__ import annotations

import numpy as np
import pytest

from opcheck import Given, In, case, check_op

MAXPOOL = [
    case("basic", "MaxPool", [In((1, 3, 8, 8))], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    case("yolo-pool11", "MaxPool", [In((2, 4, 13, 13))], {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [0, 0, 1, 1]}),
    case("pads", "MaxPool", [In((1, 2, 7, 7))], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    case("asym-pads", "MaxPool", [In((1, 2, 7, 6))], {"kernel_shape": [3, 2], "pads": [2, 0, 0, 1]}),
    case("ceil", "MaxPool", [In((1, 2, 7, 8))], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    case("ceil-pads", "MaxPool", [In((1, 2, 9, 9))], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    case("ceil-window-starts-in-pad", "MaxPool", [In((1, 1, 5, 5))],
         {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    case("dilations", "MaxPool", [In((1, 2, 10, 10))], {"kernel_shape": [3, 3], "dilations": [2, 2]}),
    case("dilations-ceil", "MaxPool", [In((1, 2, 10, 11))],
         {"kernel_shape": [2, 2], "dilations": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
    case("same-upper", "MaxPool", [In((1, 2, 7, 7))], {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"}),
    case("same-lower", "MaxPool", [In((1, 2, 7, 7))], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    case("valid", "MaxPool", [In((1, 2, 7, 7))], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}),
    case("all-negative-pads", "MaxPool", [In((1, 2, 5, 5), low=-3, high=-1)],
         {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    case("1d", "MaxPool", [In((2, 3, 11))], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    case("3d", "MaxPool", [In((1, 2, 5, 6, 7))], {"kernel_shape": [2, 2, 3], "strides": [2, 2, 2]}),
    case("many-plane-blocks", "MaxPool", [In((2, 8, 300, 300))], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    case("plane-above-block", "MaxPool", [In((1, 2, 600, 600))], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    case("indices", "MaxPool", [In((2, 3, 8, 8))], {"kernel_shape": [2, 2], "strides": [2, 2]}, n_outputs=2),
    case("indices-pads-ceil", "MaxPool", [In((1, 2, 7, 9))],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}, n_outputs=2),
    case("indices-column-major", "MaxPool", [In((2, 2, 6, 7))],
         {"kernel_shape": [2, 3], "strides": [1, 2], "storage_order": 1}, n_outputs=2),
    case("indices-dilations", "MaxPool", [In((1, 2, 9, 9))], {"kernel_shape": [2, 2], "dilations": [2, 2]},
         n_outputs=2),
    case("indices-ties", "MaxPool", [Given(np.random.default_rng(0).integers(0, 2, (1, 2, 6, 6)).astype(np.float32))],
         {"kernel_shape": [2, 2], "strides": [2, 2]}, n_outputs=2),
    case("indices-1d", "MaxPool", [In((2, 3, 11))], {"kernel_shape": [3], "strides": [2]}, n_outputs=2),
    case("opset11", "MaxPool", [In((1, 3, 6, 6))], {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=11),
]

AVGPOOL = [
    case("basic", "AveragePool", [In((1, 3, 8, 8))], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    case("pads-exclude", "AveragePool", [In((1, 2, 7, 7))], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    case("pads-include", "AveragePool", [In((1, 2, 7, 7))],
         {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    case("asym-pads-include", "AveragePool", [In((1, 2, 6, 7))],
         {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 2, 0], "count_include_pad": 1}),
    case("ceil", "AveragePool", [In((1, 2, 7, 8))], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    case("ceil-include", "AveragePool", [In((1, 2, 8, 8))],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1, "count_include_pad": 1}),
    case("ceil-exclude", "AveragePool", [In((1, 2, 8, 8))],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    case("same-upper", "AveragePool", [In((1, 2, 7, 7))], {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"}),
    case("same-lower-include", "AveragePool", [In((1, 2, 7, 7))],
         {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER", "count_include_pad": 1}),
    case("dilations", "AveragePool", [In((1, 2, 9, 9))], {"kernel_shape": [2, 2], "dilations": [2, 2]}, opset=19),
    case("1d", "AveragePool", [In((2, 3, 11))], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    case("opset11", "AveragePool", [In((1, 3, 6, 6))], {"kernel_shape": [3, 3], "strides": [3, 3]}, opset=11),
]

GLOBAL = [
    case("gap-4d", "GlobalAveragePool", [In((2, 5, 7, 6))]),
    case("gap-3d", "GlobalAveragePool", [In((2, 5, 9))]),
    case("gmp-4d", "GlobalMaxPool", [In((2, 5, 7, 6))]),
]


@pytest.mark.parametrize("op_type,inputs,attrs,kw", MAXPOOL + AVGPOOL + GLOBAL)
def test_op_matches_onnxruntime(op_type, inputs, attrs, kw):
    check_op(op_type, inputs, attrs, **kw)
