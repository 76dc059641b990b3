"""Detection driver, side-by-side comparison, drawing, and Session.detect."""
from __future__ import annotations

import numpy as np
import pytest
from tpushell.core.errors import InputFileError, ModelError, OptionError
from tpushell.core.plots.detection import detection_figure
from tpushell.core.vision.detect import (
    compare_detections,
    detect_images,
    graph_detector,
    match_detections,
    open_detector,
)
from tpushell.core.vision.draw import draw_detections, save_image
from tpushell.core.vision.yolo import Detection, postprocess


def det(cls, score, box, name=None):
    return Detection(cls, name or f"c{cls}", score, tuple(float(v) for v in box))


def test_onnx_is_cut_at_its_heads_and_matches_onnxruntime(tiny_yolo, photo):
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from tpushell.core.graph.preprocess import image_size, letterbox_geometry, preprocess_images
    d = open_detector(tiny_yolo)
    assert d.net_hw == (64, 64)
    x = preprocess_images([photo], d.preprocess)
    heads = ["transpose_output1", "transpose_output"]
    proto = onnx.load(tiny_yolo)
    proto.graph.output.extend(onnx.helper.make_tensor_value_info(h, 1, None) for h in heads)
    ref = dict(zip(heads, ort.InferenceSession(proto.SerializeToString()).run(heads, {"input_1": x})))
    hw = image_size(photo)
    want = postprocess(ref, d.spec, (64, 64), [letterbox_geometry(hw, d.preprocess)], [hw],
                       score_thres=0.3)[0]
    found = detect_images(d, [photo], score_thres=0.3)[0]
    assert found.size == (96, 128) and found.model == "tiny_yolo"
    assert found.draw().size == (128, 96)
    assert len(want) >= 2
    assert [x.name for x in found] == [x.name for x in want]
    for a, b in zip(found, want):
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.box == pytest.approx(b.box, abs=1e-2)


def test_graph_with_a_tail_is_decoded_at_its_heads(tiny_yolo, photo):
    from tpushell.core.graph.onnx_import import import_onnx
    whole = import_onnx(tiny_yolo)                 # outputs: yolo_raw, heads found inside
    assert whole.outputs == ["yolo_raw_Concat"]
    a = detect_images(graph_detector(whole), [photo], score_thres=0.3)[0]
    b = detect_images(open_detector(tiny_yolo), [photo], score_thres=0.3)[0]
    assert a.detections == b.detections and a.detections


def test_tail_with_ops_we_do_not_run_and_an_extra_input(tiny_yolo, tmp_path, photo):
    """Like the ONNX model zoo's file: an NMS-like tail and an `image_shape` input after the heads."""
    import onnx
    from onnx import helper
    proto = onnx.load(tiny_yolo)
    proto.graph.input.append(helper.make_tensor_value_info("image_shape", 1, [1, 2]))
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([5], np.int64), "k"))
    proto.graph.node.extend([
        helper.make_node("ReduceMax", ["yolo_raw"], ["best"], axes=[2], keepdims=0),
        helper.make_node("TopK", ["best", "k"], ["top", "top_idx"]),
        helper.make_node("Mul", ["image_shape", "image_shape"], ["shape2"])])
    proto.graph.output.extend([helper.make_tensor_value_info(t, 1, None)
                               for t in ("top", "top_idx", "shape2")])
    path = tmp_path / "with_tail.onnx"
    onnx.save(proto, path)
    d = open_detector(path)
    assert d.net_hw == (64, 64)
    want = detect_images(open_detector(tiny_yolo), [photo], score_thres=0.3)[0].detections
    assert detect_images(d, [photo], score_thres=0.3)[0].detections == want


def test_model_without_yolo_heads(tmp_path, photo):
    import onnx
    from onnx import helper, numpy_helper
    w = numpy_helper.from_array(np.zeros((16, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input_1", "w"], ["feat"])], "g",
                              [helper.make_tensor_value_info("input_1", 1, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("feat", 1, [1, 16, 30, 30])], [w])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(ModelError, match=r"not YOLO heads: found feat \[1, 16, 30, 30\]; expected "
                                         r"rank-4 heads with 255 channels"):
        open_detector(path)


def test_bad_inputs(tiny_yolo, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    d = open_detector(tiny_yolo)
    with pytest.raises(InputFileError, match="cannot read image .*broken.jpg"):
        detect_images(d, [bad])
    with pytest.raises(OptionError, match="--iou_thres 1.5 is outside"):
        detect_images(d, [bad], iou_thres=1.5)
    with pytest.raises(OptionError, match="unknown model kind '.pt'"):
        (tmp_path / "m.pt").write_bytes(b"")
        open_detector(tmp_path / "m.pt")
    with pytest.raises(OptionError, match=r"--net_input_dims \[32, 32\] does not fit"):
        open_detector(tiny_yolo, net_input_dims=[32, 32])


def test_match_detections():
    ref = [det(0, 0.9, (0, 0, 10, 10)), det(1, 0.8, (20, 20, 30, 30)), det(1, 0.6, (50, 50, 60, 60))]
    other = [det(0, 0.7, (1, 1, 10, 10)), det(2, 0.8, (20, 20, 30, 30)),
             det(1, 0.65, (50, 50, 61, 61)), det(1, 0.6, (52, 52, 60, 60))]
    diff = match_detections(ref, other)
    assert [(m.ref.score, m.other.score) for m in diff.matched] == [(0.9, 0.7), (0.6, 0.65)]
    assert diff.matched[0].drift == pytest.approx(-0.2)
    assert diff.lost == [ref[1]]                     # class changed: lost and gained
    assert diff.gained == [other[1], other[3]]       # a second box on the same object
    assert match_detections([], []).summary() == "0 object(s); lost none; gained none"


def test_comparison_text_and_figure(photo):
    f32 = [det(0, 0.9, (5, 5, 50, 50), "person"), det(49, 0.8, (60, 10, 90, 40), "orange")]
    int8 = [det(0, 0.82, (6, 5, 50, 52), "person")]
    mixed = f32 + [det(49, 0.6, (10, 60, 30, 90), "orange")]
    cmp = compare_detections(photo, {"F32": f32, "INT8": int8, "mixed": mixed})
    text = str(cmp)
    assert "INT8: 1 object(s); lost orange:80.0%; gained none; score drift person 0.900->0.820 " \
           "(-0.080, box IoU 0.94)" in text
    assert "mixed: 3 object(s); lost none; gained orange:60.0%" in text
    fig = detection_figure(cmp)
    axes = fig.get_axes()
    assert len(axes) == 3
    assert axes[1].get_title().startswith("INT8: 1 object(s), lost 1, gained 0")
    assert len(axes[1].patches) == 2 and len(axes[2].patches) == 3


def test_draw_and_save(photo, tmp_path):
    img = draw_detections(photo, [det(0, 0.5, (10, 10, 60, 50), "person")])
    assert img.size == (128, 96)
    pixels = np.asarray(img)
    assert not np.array_equal(pixels, np.asarray(draw_detections(photo, [])))
    for name in ("out.png", "out.jpg"):
        save_image(img, tmp_path / name)
        from PIL import Image
        assert Image.open(tmp_path / name).size == (128, 96)
    with pytest.raises(OptionError, match="unknown extension '.gif'"):
        save_image(img, tmp_path / "out.gif")
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.zoo
def test_session_detect_and_side_by_side(zoo):
    from tpushell.core import Session
    s = Session()
    s.load(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx", input_shapes=[[1, 3, 416, 416]],
           output_names=["transpose_output1", "transpose_output"], scale=[0.0039216] * 3,
           pixel_format="rgb", keep_aspect_ratio=True, pad_value=128)
    image = zoo / "COCO2017" / "000000366711.jpg"
    found = s.detect(image)
    assert [(d.name, round(d.score, 2)) for d in found] == [("orange", 0.79), ("person", 0.67)]
    cmp = s.compare_detections(image, ["f32", zoo / "yolov3-tiny" / "yolov3-tiny.cfg"])
    diff = cmp.diffs["yolov3-tiny"]
    # same scores; the cfg's mask 0,1,2 shrinks the 26x26 head's orange box below IoU 0.5
    assert [m.ref.name for m in diff.matched] == ["person"]
    assert [d.name for d in diff.lost] == ["orange"] and [d.name for d in diff.gained] == ["orange"]
    assert diff.gained[0].score == pytest.approx(diff.lost[0].score, abs=1e-5)


def test_mlir_keeps_preprocessing_and_darknet_anchors(tmp_path, photo):
    from darknetkit import TINY_CFG, conv_layers, write_weights
    from tpushell.core.graph.loader import load_model
    from tpushell.core.graph.mlir import write_mlir
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    write_weights(tmp_path / "tiny.weights", conv_layers(TINY_CFG), np.random.default_rng(4))
    prep = {"scale": [1 / 255] * 3, "pixel_format": "rgb", "keep_aspect_ratio": True,
            "pad_value": 0}
    g = load_model(cfg, name="tiny", preprocess=prep)
    write_mlir(g, tmp_path / "tiny.mlir")
    d = open_detector(tmp_path / "tiny.mlir")
    assert d.spec.classes == 2 and d.spec.masks == {4: (3, 4, 5), 2: (0, 1, 2)}
    assert d.preprocess.pad_value == 0 and d.preprocess.scale == [1 / 255] * 3
    same = detect_images(graph_detector(g), [photo], score_thres=0.2)[0]
    assert same.detections and detect_images(d, [photo], score_thres=0.2)[0].detections == same.detections


@pytest.mark.zoo
def test_int8_and_mixed_side_by_side(zoo, golden):
    """Issue 7 acceptance 2 with the reference's calibration table and qtable: our INT8 and mixed
    detections are those decoded from the reference's own INT8 and mixed heads (golden dumps),
    and the side by side shows the same two objects with small score drift."""
    from tpushell.core import Session
    from tpushell.core.calibration.tables import read_calibration_table
    from tpushell.core.graph.preprocess import image_size, letterbox_geometry
    s = Session()
    s.load(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx", input_shapes=[[1, 3, 416, 416]],
           output_names=["transpose_output1", "transpose_output"], scale=[0.0039216] * 3,
           pixel_format="rgb", keep_aspect_ratio=True, pad_value=128)
    s.calibration = read_calibration_table(golden / "tpumlir_cali_table")
    image = zoo / "COCO2017" / "000000366711.jpg"
    with pytest.raises(Exception, match="'mixed' needs a qtable"):
        s.detect(image, model="mixed")
    s.load_qtable(golden / "tpumlir_qtable")
    cmp = s.compare_detections(image)
    assert list(cmp.results) == ["F32", "INT8", "mixed"]
    hw = image_size(image)
    geometry = [letterbox_geometry(hw, s.preprocess_config)]
    for label, kind in (("INT8", "int8"), ("mixed", "mix")):
        with np.load(golden / f"000000366711_{kind}_bm1684x.npz") as npz:
            heads = {t: npz[t] for t in ("transpose_output1_Transpose", "transpose_output_Transpose")}
        reference = postprocess(heads, s.detector().spec, (416, 416), geometry, [hw])[0]
        ours = cmp.results[label]
        assert [d.name for d in ours] == [d.name for d in reference] == ["orange", "person"]
        for a, b in zip(ours, reference):
            assert a.score == pytest.approx(b.score, abs=1e-3)
            assert a.box == pytest.approx(b.box, abs=0.5)
        diff = cmp.diffs[label]
        assert not diff.lost and not diff.gained
        assert all(abs(m.drift) < 0.05 and m.iou > 0.8 for m in diff.matched)
    assert cmp.results["INT8"][1].score == pytest.approx(0.649, abs=0.001)
    assert cmp.results["mixed"][0].score == pytest.approx(0.794, abs=0.001)
    assert len(detection_figure(cmp).get_axes()) == 3
