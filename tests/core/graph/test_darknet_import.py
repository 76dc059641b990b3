"""darknet import: a tiny cfg checked against an independent numpy darknet forward, the real
yolov3-tiny checked against its ONNX twin, and bad files."""
from __future__ import annotations

import numpy as np
import pytest
from darknetkit import TINY_CFG, conv_layers, write_weights
from tpushell.core.errors import InputFileError, ModelError, OptionError
from tpushell.core.graph.darknet_import import darknet_to_onnx, import_darknet, parse_cfg
from tpushell.core.graph.interpreter import run


# ---- an independent darknet forward, written from darknet's layer semantics --------------------
def dn_conv(x, p, stride, pad, groups):
    n, cin_g, k, _ = p["w"].shape
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    out = np.zeros((n, oh, ow), np.float64)
    per = n // groups
    for g in range(groups):
        xs, outs = xp[g * cin_g:(g + 1) * cin_g], slice(g * per, (g + 1) * per)
        for dy in range(k):
            for dx in range(k):
                patch = xs[:, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride]
                out[outs] += np.einsum("oc,chw->ohw", p["w"][outs, :, dy, dx], patch)
    if "gamma" in p:   # darknet: (x - mean) / (sqrt(var) + .000001) * scale + bias
        out = (out - p["mean"][:, None, None]) / (np.sqrt(p["var"][:, None, None]) + 1e-6)
        out = out * p["gamma"][:, None, None]
    return out + p["bias"][:, None, None]


def dn_maxpool(x, size, stride):
    pad = size - 1                      # darknet's default padding; windows start at -pad/2
    c, h, w = x.shape
    oh, ow = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
    out = np.full((c, oh, ow), -np.inf)
    for i in range(oh):
        for j in range(ow):
            for dy in range(size):
                for dx in range(size):
                    y, xx = i * stride + dy - pad // 2, j * stride + dx - pad // 2
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, i, j] = np.maximum(out[:, i, j], x[:, y, xx])
    return out


def dn_forward(x, params):
    """The tiny cfg by hand: returns the two [yolo] inputs, NCHW."""
    leaky = lambda v: np.where(v > 0, v, 0.1 * v)  # noqa: E731
    l0 = leaky(dn_conv(x, params[0], 1, 1, 1))
    l1 = dn_maxpool(l0, 2, 2)
    l2 = leaky(dn_conv(l1, params[1], 1, 1, 1))
    l3 = dn_maxpool(l2, 2, 2)
    l4 = dn_maxpool(l3, 2, 1)
    head1 = dn_conv(l4, params[2], 1, 0, 1)
    l8 = np.maximum(dn_conv(l4, params[3], 1, 0, 1), 0)
    l9 = l8.repeat(2, axis=1).repeat(2, axis=2)
    l10 = np.concatenate([l9, l2])
    l11 = leaky(dn_conv(l10, params[4], 1, 1, 2))
    l12 = l11 + l2
    head2 = dn_conv(l12, params[5], 1, 0, 1)
    return head1, head2


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(7)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    params = write_weights(tmp_path / "tiny.weights", conv_layers(TINY_CFG), rng)
    return cfg, tmp_path / "tiny.weights", params


def test_tiny_network_matches_darknet_semantics(tiny):
    cfg, weights, params = tiny
    g = import_darknet(cfg, weights)
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)
    out = run(g, {"input_1": x})
    assert g.outputs == ["transpose_output1_Transpose", "transpose_output_Transpose"]
    want1, want2 = dn_forward(x[0].astype(np.float64), params)
    got1, got2 = (out[t][0].transpose(2, 0, 1) for t in g.outputs)
    assert got1.shape == (21, 8, 8) and got2.shape == (21, 16, 16)
    for got, want in ((got1, want1), (got2, want2)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_tiny_network_names_and_meta(tiny):
    cfg, weights, _ = tiny
    g = import_darknet(cfg, weights)
    # the reference's op types: Upsample (nearest Resize by 2), Permute (Transpose)
    assert g.summary() == {"Conv": 6, "LeakyRelu": 3, "MaxPool": 3, "Upsample": 1, "Concat": 1,
                           "Add": 1, "Permute": 2}
    ops = set(g.op_names)
    # BN folded into the Conv (keeps its name); the Relu fused into its Conv, as for ONNX models
    assert {"conv0_Conv", "conv0_leaky_LeakyRelu", "pool1_MaxPool", "pool4_MaxPool", "up9_Resize",
            "concat10_Concat", "shortcut12_Add", "conv3_relu_Relu", "transpose_output1_Transpose"} <= ops
    assert g.node("conv3_relu_Relu").op_type == "Conv"
    assert g.node("pool4_MaxPool").attrs["pads"] == [0, 0, 1, 1]
    assert g.node("pool1_MaxPool").attrs["pads"] == [0, 0, 0, 0]
    assert g.node("conv4_Conv").attrs["group"] == 2
    assert g.meta["yolo"] == {
        "anchors": [[2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13]], "classes": 2,
        "input_size": [32, 32],
        "heads": [{"grid": [8, 8], "mask": [3, 4, 5]}, {"grid": [16, 16], "mask": [0, 1, 2]}]}


def test_onnx_model_runs_in_onnxruntime(tiny):
    ort = pytest.importorskip("onnxruntime")
    import onnx
    cfg, weights, _ = tiny
    proto, meta = darknet_to_onnx(cfg, weights)
    onnx.checker.check_model(proto)
    x = np.random.default_rng(2).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)
    ref = ort.InferenceSession(proto.SerializeToString()).run(None, {"input_1": x})
    g = import_darknet(cfg, weights)
    ours = run(g, {"input_1": x})
    for r, t in zip(ref, g.outputs):
        assert np.abs(ours[t] - r).max() <= 1e-5 * np.abs(r).max()


def test_input_shapes_and_output_names(tiny):
    cfg, weights, _ = tiny
    g = import_darknet(cfg, weights, input_shapes=[[2, 3, 64, 64]], output_names=["conv2"])
    assert g.outputs == ["conv2_Conv"] and g.inputs[0].shape == (2, 3, 64, 64)
    assert g.shapes["conv2_Conv"] == (2, 21, 16, 16)
    assert g.meta["yolo"]["input_size"] == [64, 64]
    with pytest.raises(OptionError, match=r"\[N,3,H,W\]"):
        import_darknet(cfg, weights, input_shapes=[[1, 1, 32, 32]])
    with pytest.raises(ModelError, match="cannot concatenate maps of different sizes"):
        import_darknet(cfg, weights, input_shapes=[[1, 3, 34, 34]])


def test_old_header_with_int32_seen(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    params = write_weights(tmp_path / "tiny.weights", conv_layers(TINY_CFG),
                           np.random.default_rng(3), version=(0, 1, 0))
    g = import_darknet(cfg)        # weights found beside the cfg
    assert np.array_equal(g.weights["conv2_W"], params[2]["w"])


def test_weights_that_do_not_fit_the_cfg(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    convs = conv_layers(TINY_CFG)
    write_weights(tmp_path / "long.weights", convs, np.random.default_rng(0), extra=5)
    with pytest.raises(InputFileError, match="5 values left after the last layer"):
        import_darknet(cfg, tmp_path / "long.weights")
    write_weights(tmp_path / "short.weights", convs[:3], np.random.default_rng(0))
    with pytest.raises(InputFileError, match=r"ends inside layer 8 \(conv3"):
        import_darknet(cfg, tmp_path / "short.weights")
    with pytest.raises(InputFileError, match="needs its weights"):
        import_darknet(cfg)
    with pytest.raises(InputFileError, match="not a darknet weights file"):
        (tmp_path / "tiny.weights").write_bytes(b"\0" * 8)
        import_darknet(cfg)


@pytest.mark.parametrize("edit, error", [
    (("[maxpool]\nsize=2\nstride=2", "[reorg]\nstride=2"), r"bad.cfg:14: layer kind \[reorg\]"),
    (("activation=relu", "activation=mish"), r"activation 'mish' is not supported"),
    (("layers = -3", "layers = -30"), r"layer reference -30 points to layer -23"),
    (("layers = -1, 2", "layers = -1, 2\ngroups=2"), "grouped route"),
    (("filters=21\nactivation=linear\n\n[yolo]\nmask = 3",
      "filters=20\nactivation=linear\n\n[yolo]\nmask = 3"), "needs 21"),
    (("[net]", "[layer]"), "must start with a \\[net\\] section"),
    (("size=1\nstride=1\npad=1\nfilters=21", "size=1\nstride=1\npad=1\nfilters=x21"),
     "filters=x21 is not a whole number"),
])
def test_bad_cfg(tmp_path, edit, error):
    text = TINY_CFG.replace(*edit, 1)
    assert text != TINY_CFG
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    write_weights(tmp_path / "bad.weights", conv_layers(TINY_CFG), np.random.default_rng(0))
    with pytest.raises((ModelError, InputFileError), match=error):
        import_darknet(cfg, tmp_path / "bad.weights")


def test_parse_cfg_comments_and_lines(tmp_path):
    cfg = tmp_path / "c.cfg"
    cfg.write_text("# header\n[net]\nwidth = 8 # trailing\n\n[maxpool]\nsize=2\n")
    sections = parse_cfg(str(cfg))
    assert [(s.kind, s.line, s.options) for s in sections] == [
        ("net", 2, {"width": "8"}), ("maxpool", 5, {"size": "2"})]
    cfg.write_text("[net]\nwidth 8\n")
    with pytest.raises(InputFileError, match=r"c.cfg:2: expected"):
        parse_cfg(str(cfg))


@pytest.mark.zoo
def test_yolov3_tiny_equals_its_onnx_twin(zoo, yolo_graph, golden_input):
    """Issue 2 acceptance 4: the darknet files give the ONNX file's graph and outputs."""
    from tpushell.core.graph.loader import load_model
    d = zoo / "yolov3-tiny"
    g = load_model(d / "yolov3-tiny.cfg", model_data=str(d / "yolov3-tiny.weights"))
    assert g.op_names == yolo_graph.op_names
    assert g.outputs == yolo_graph.outputs
    assert g.summary() == {"Conv": 13, "LeakyRelu": 11, "MaxPool": 6, "Upsample": 1, "Concat": 1,
                           "Permute": 2}
    ours, twin = run(g, {"input_1": golden_input}), run(yolo_graph, {"input_1": golden_input})
    for t in g.outputs:
        a, b = ours[t].ravel().astype(np.float64), twin[t].ravel().astype(np.float64)
        cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        assert cos >= 0.99999, t
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max(), t
    assert g.meta["yolo"]["heads"][0] == {"grid": [13, 13], "mask": [3, 4, 5]}
    assert g.meta["yolo"]["heads"][1]["mask"] == [0, 1, 2]      # what this cfg says
