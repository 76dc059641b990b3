"""YOLO post-processing: decode against hand-computed boxes, layouts, anchors by grid, NMS edge
cases, letterbox mapping, names, and the tutorial image against onnxruntime."""
from __future__ import annotations

import math

import numpy as np
import pytest
from tpushell.core.errors import InputFileError, ModelError
from tpushell.core.vision.yolo import (
    COCO_CLASSES,
    Detection,
    YoloSpec,
    class_names,
    decode,
    find_heads,
    head_layout,
    iou_one_to_many,
    nms,
    postprocess,
    read_class_names,
    to_original,
)

SPEC = YoloSpec.tutorial()
NET = (64, 64)          # stride 32 -> 2x2 grid (anchors 3,4,5), stride 16 -> 4x4 (anchors 1,2,3)
LOW = -30.0             # a logit whose sigmoid is ~0


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def empty_head(grid: int) -> np.ndarray:
    """An NHWC head (1, g, g, 255) where nothing is detected."""
    return np.full((1, grid, grid, 255), LOW, np.float32)


def put(head, row, col, anchor, tx, ty, tw, th, obj, cls, p_cls):
    cell = head[0, row, col, anchor * 85:(anchor + 1) * 85]
    cell[:4] = tx, ty, tw, th
    cell[4] = logit(obj)
    cell[5 + cls] = logit(p_cls)


def test_decode_one_box_by_hand():
    coarse, fine = empty_head(2), empty_head(4)
    # stride-32 head, row 1, col 0, third anchor of mask 3,4,5 -> anchor 5 = (344, 319)
    put(coarse, 1, 0, 2, tx=0.0, ty=logit(0.75), tw=math.log(0.25), th=0.0, obj=0.9, cls=49,
        p_cls=0.8)
    boxes, scores = decode({"a": coarse, "b": fine}, SPEC, NET)
    assert boxes.shape == (1, 2 * 2 * 3 + 4 * 4 * 3, 4) and scores.shape == (1, 60, 80)
    k = (1 * 2 + 0) * 3 + 2                       # row-major cells, then anchors
    cx, cy = (0.5 + 0) / 2 * 64, (0.75 + 1) / 2 * 64          # 16, 56
    w, h = 0.25 * 344, 319.0
    assert boxes[0, k] == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=1e-4)
    assert scores[0, k, 49] == pytest.approx(0.72, abs=1e-6)
    assert scores[0].max() == pytest.approx(0.72, abs=1e-6)


def test_fine_head_uses_anchors_1_2_3():
    fine = empty_head(4)
    put(fine, 3, 2, 0, 0.0, 0.0, 0.0, 0.0, obj=0.99, cls=0, p_cls=0.99)
    boxes, _ = decode({"fine": fine, "coarse": empty_head(2)}, SPEC, NET)
    k = (3 * 4 + 2) * 3                 # heads are concatenated in the given (any) order
    w, h = SPEC.anchors[1]              # 23 x 27
    assert boxes[0, k] == pytest.approx([40 - w / 2, 56 - h / 2, 40 + w / 2, 56 + h / 2])


def test_nchw_equals_nhwc_and_output_order_does_not_matter():
    rng = np.random.default_rng(0)
    coarse = rng.normal(0, 2, (2, 2, 2, 255)).astype(np.float32)
    fine = rng.normal(0, 2, (2, 4, 4, 255)).astype(np.float32)
    geo = [(1.0, (0, 0), (64, 64))] * 2
    a = postprocess({"c": coarse, "f": fine}, SPEC, NET, geo, [(64, 64)] * 2, score_thres=0.3)
    b = postprocess({"f": fine.transpose(0, 3, 1, 2), "c": coarse.transpose(0, 3, 1, 2)}, SPEC, NET,
                    geo, [(64, 64)] * 2, score_thres=0.3)
    assert a == b and len(a) == 2 and a[0]


def test_head_layout():
    channels = SPEC.channels()
    assert head_layout((1, 255, 13, 13), channels) == "NCHW"
    assert head_layout((1, 13, 13, 255), channels) == "NHWC"
    assert head_layout((1, 255, 255, 255), channels) == "NHWC"
    assert head_layout((1, 2535, 85), channels) is None
    assert head_layout((1, 256, 13, 13), channels) is None


def test_outputs_that_are_not_heads():
    with pytest.raises(ModelError, match=r"found yolo_raw \[1, 2535, 85\]; expected rank-4 heads "
                                         r"with 255 channels .*NCHW \[N,255,H,W\] or NHWC"):
        decode({"yolo_raw": np.zeros((1, 2535, 85), np.float32)}, SPEC, (416, 416))


def test_unknown_grid_and_duplicate_grid():
    with pytest.raises(ModelError, match=r"8x8 grid for a 64x64 input; the tutorial anchors are for "
                                         r"stride 32 \(2x2\), stride 16 \(4x4\)"):
        decode({"h": empty_head(8)}, SPEC, NET)
    with pytest.raises(ModelError, match="both have a 2x2 grid"):
        decode({"a": empty_head(2), "b": empty_head(2)}, SPEC, NET)


def test_spec_from_darknet_meta_matches_by_stride():
    meta = {"anchors": [[2, 3], [4, 5], [6, 7], [8, 9]], "classes": 2, "input_size": [32, 32],
            "heads": [{"grid": [4, 4], "mask": [2, 3]}, {"grid": [8, 8], "mask": [0, 1]}]}
    spec = YoloSpec.from_meta(meta)
    assert spec.masks == {8: (2, 3), 4: (0, 1)} and spec.channels() == {14}
    # the same network run at 64x64 has 8x8 and 16x16 grids: still strides 8 and 4
    assert spec.mask_for("h", (16, 16), (64, 64)) == (0, 1)


def test_iou():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 8]], float)
    assert iou_one_to_many(boxes[0], boxes) == pytest.approx([1, 50 / 150, 0, 0])


def test_nms_identical_boxes_keep_the_first_best():
    boxes = np.array([[0, 0, 10, 10]] * 3, float)
    assert nms(boxes, np.array([0.5, 0.9, 0.9]), np.zeros(3, int), 0.5).tolist() == [1]


def test_nms_disjoint_classes_are_independent():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], float)
    kept = nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), 0.5)
    assert kept.tolist() == [0, 2]


def test_nms_threshold_is_inclusive_and_greedy():
    # b overlaps a with IoU exactly 1/3 -> kept at iou_thres 1/3; c overlaps b only
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    assert nms(boxes, scores, np.zeros(3, int), 1 / 3).tolist() == [0, 1, 2]
    assert nms(boxes, scores, np.zeros(3, int), 0.3).tolist() == [0, 2]


def test_nms_corner_boxes_not_width_height():
    # the reference read (x1, y1) as (w, h): these two far-apart boxes would then overlap
    boxes = np.array([[100, 100, 110, 110], [0, 0, 108, 108]], float)
    assert nms(boxes, np.array([0.9, 0.8]), np.zeros(2, int), 0.5).tolist() == [0, 1]


def test_nms_and_postprocess_empty():
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).tolist() == []
    dets = postprocess({"a": empty_head(2), "b": empty_head(4)}, SPEC, NET,
                       [(1.0, (0, 0), (64, 64))], [(64, 64)])
    assert dets == [[]]


def test_to_original_undoes_the_letterbox():
    # a 100 x 200 (h x w) image letterboxed into 64 x 64: 32 x 64 placed at top 16
    geometry = (0.32, (16, 0), (32, 64))
    boxes = np.array([[0, 16, 64, 48], [32, 32, 48, 40], [-5, 0, 70, 70]], float)
    assert to_original(boxes, geometry, (100, 200)).tolist() == [
        [0, 0, 200, 100], [100, 50, 150, 75], [0, 0, 200, 100]]


def test_postprocess_maps_to_the_original_image():
    coarse = empty_head(2)
    put(coarse, 1, 1, 0, 0.0, 0.0, 0.0, 0.0, obj=0.9, cls=0, p_cls=0.9)   # anchor 3: 81 x 82
    geometry = (0.5, (8, 0), (48, 64))                 # a 96 x 128 image, scaled by 1/2
    dets = postprocess({"c": coarse, "f": empty_head(4)}, SPEC, NET, [geometry], [(96, 128)])
    cx, cy = 48, (48 - 8) * 2
    assert dets == [[Detection(0, "person", pytest.approx(0.81), pytest.approx(
        (max(0, (cx - 40.5) * 2), max(0, cy - 82), min(128, (cx + 40.5) * 2), min(96, cy + 82))))]]
    assert str(dets[0][0]) == "person:81.0% box 15,0,128,96"


def test_class_names(tmp_path):
    assert class_names(80)[49] == "orange" and len(COCO_CLASSES) == 80
    assert class_names(2) == ["class0", "class1"]
    f = tmp_path / "names"
    f.write_text("cat\n\ndog\n")
    assert read_class_names(f) == ["cat", "dog"]
    with pytest.raises(InputFileError, match="2 class names given, the model has 80"):
        class_names(80, ["cat", "dog"])
    f.write_text("\n")
    with pytest.raises(InputFileError, match="is empty"):
        read_class_names(f)
    with pytest.raises(InputFileError, match="cannot read class names"):
        read_class_names(tmp_path / "missing")


def test_find_heads_prefers_the_transpose_and_sorts_coarse_first():
    nodes = [("Conv", ["x"], ["h26"]), ("Conv", ["x"], ["h13"]), ("Conv", ["x"], ["other"]),
             ("Transpose", ["h13"], ["t13"]), ("Reshape", ["t13"], ["r13"])]
    shapes = {"h26": (1, 255, 26, 26), "h13": (1, 255, 13, 13), "other": (1, 256, 13, 13),
              "t13": (1, 13, 13, 255), "r13": (1, 507, 85)}
    assert find_heads(nodes, shapes, SPEC) == ["t13", "h26"]


@pytest.mark.zoo
def test_tutorial_image_scores_match_onnxruntime(zoo, golden_input):
    """Issue 7 acceptance 1: one person, at least one orange, scores within 0.05 of onnxruntime
    decoded on the same preprocessed input."""
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from tpushell.core.graph.preprocess import image_size, letterbox_geometry, preprocess_images
    from tpushell.core.vision.detect import open_detector
    image = zoo / "COCO2017" / "000000366711.jpg"
    det = open_detector(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx")
    x = preprocess_images([image], det.preprocess)
    assert np.array_equal(x, golden_input)
    proto = onnx.load(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx")
    heads = ["transpose_output1", "transpose_output"]
    proto.graph.output.extend(onnx.helper.make_tensor_value_info(h, 1, None) for h in heads)
    ref = dict(zip(heads, ort.InferenceSession(proto.SerializeToString()).run(heads, {"input_1": x})))
    hw = image_size(image)
    geo = [letterbox_geometry(hw, det.preprocess)]
    want = postprocess(ref, SPEC, (416, 416), geo, [hw], score_thres=0.5, iou_thres=0.45)[0]
    ours = postprocess(det.forward(x), det.spec, det.net_hw, geo, [hw], score_thres=0.5,
                       iou_thres=0.45)[0]
    assert [d.name for d in want] == ["orange", "person"]
    assert [d.name for d in ours] == ["orange", "person"]
    for a, b in zip(ours, want):
        assert abs(a.score - b.score) <= 0.05
        assert np.abs(np.subtract(a.box, b.box)).max() < 1.0
    person = ours[1]
    assert person.score == pytest.approx(0.675, abs=0.005)
    assert np.abs(np.subtract(person.box, (35, 104, 270, 316))).max() < 2
    assert ours[0].score == pytest.approx(0.79, abs=0.005)
