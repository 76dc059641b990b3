"""The bad-input corpus (issue 17): broken models, tables, qtables, npz, images, workspaces,
deployed models and scripts, generated here from a tiny real project (damaged copies of real
files: truncated, bit-flipped, emptied, wrong kind, hostile values), run through every tool
in-process and through the shell. Every run must exit non-zero with one line on stderr, no
traceback, no 'internal error', and no file changed or left behind in the project folder."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hostilekit import assert_one_line_error, make_project, run_main, snapshot
from tpushell.tools import (detect_yolov3, model_deploy, model_runner, model_transform, npz_tool,
                            run_calibration, run_qtable)

RNG_SEED = 17


def _variants(data: bytes, rng: np.random.Generator, text: bool) -> dict[str, bytes]:
    """Generic damage of one real file's bytes."""
    out = {"empty": b"", "truncated_half": data[: len(data) // 2], "truncated_10": data[:10],
           "random_bytes": rng.integers(0, 256, 512, dtype=np.uint8).tobytes(),
           "non_utf8": b"\xff\xfe\xfa" + data[3:200]}
    flipped = bytearray(data)
    for i in rng.integers(0, len(data), max(1, len(data) // 50)):
        flipped[i] ^= 0xFF
    out["bit_flipped"] = bytes(flipped)
    if text:
        out["a_json_document"] = b'{"format": "x", "rows": [1, 2]}'
        out["only_comments"] = b"# nothing here\n#\n"
    return out


def _table_rows(table: str, rng) -> dict[str, bytes]:
    lines = table.splitlines()
    row = next(i for i, t in enumerate(lines) if t and not t.startswith("#"))
    name = lines[row].split()[0]
    out = {}
    for label, replacement in {"nan": f"{name} nan -1 1", "inf": f"{name} inf -1 1",
                               "zero": f"{name} 0 -1 1", "negative": f"{name} -3 -1 1",
                               "huge": f"{name} 1e38 -1 1", "min_above_max": f"{name} 1 5 1",
                               "three_columns": f"{name} 1 1", "word": f"{name} one -1 1"}.items():
        changed = list(lines)
        changed[row] = replacement
        out[label] = ("\n".join(changed) + "\n").encode()
    out["duplicate"] = (table + lines[row] + "\n").encode()
    out["other_model"] = b"foo 1.0 -1.0 1.0\nbar 2.0 -2.0 2.0\n"
    return out


def _mlir_edits(text: str) -> dict[str, bytes]:
    edits = {
        "traversal_name": ('module.name = "tiny"', 'module.name = "../escaped/evil"'),
        "absolute_name": ('module.name = "tiny"', 'module.name = "/tmp/evil"'),
        "absolute_weights": ('module.weight_file = "tiny_top_f32_all_weight.npz"',
                             'module.weight_file = "/etc/passwd"'),
        "no_name": ('module.name = "tiny", ', ""),
        "nesting": ("module.state", "x = " + "[" * 5000 + "]" * 5000 + ", module.state"),
        "unknown_dtype": ("x8x8xf32>", "x8x8xq7>"),
        "no_return": ("    return", "    // gone"),
        "negative_dim": ("1x3x8x8", "1x3x-8x8"),
        "huge_dim": ("1x3x8x8", "1x3x100000x100000"),
        "bad_state": ("TOP_F32", "TPU_LOWERED"),
        "undefined_operand": ('"top.Conv"(%0, ', '"top.Conv"(%99, '),
    }
    assert all(a in text for a, _ in edits.values())   # each edit damages the real file
    return {k: text.replace(a, b).encode() for k, (a, b) in edits.items()}


def _onnx_edits(path: Path) -> dict[str, bytes]:
    import onnx
    from onnx import helper

    def edited(change):
        model = onnx.load(path)
        change(model)
        return model.SerializeToString()

    def dim(m, value):
        m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = value

    def raw(m):
        m.graph.initializer[0].raw_data = b"\0" * 12
        del m.graph.initializer[0].float_data[:]

    def attr(m):
        node = next(n for n in m.graph.node if n.op_type == "Resize")
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("mode", b"\xffnearest"))

    return {"unproduced_output": edited(lambda m: setattr(m.graph.output[0], "name", "ghost")),
            "double_producer": edited(lambda m: m.graph.node[3].output.__setitem__(0, "c1")),
            "negative_dim": edited(lambda m: dim(m, -5)),
            "huge_input": edited(lambda m: (dim(m, 100000), m.graph.input[0].type.tensor_type
                                            .shape.dim[3].__setattr__("dim_value", 100000))),
            "short_raw_data": edited(raw), "non_utf8_attribute": edited(attr),
            "unsupported_op": edited(lambda m: setattr(m.graph.node[1], "op_type", "Warp")),
            "no_nodes": edited(lambda m: m.graph.ClearField("node"))}


READABLE_NPZ = ("wrong_shape", "wrong_name", "empty_tensor", "strings")


def _npz_edits(rng) -> dict[str, bytes]:
    import io
    out = {}
    for label, arrays in {"object_array": {"input_1": np.array([{"a": 1}], dtype=object)},
                          "wrong_shape": {"input_1": np.zeros((1, 3, 5, 5), np.float32)},
                          "wrong_name": {"a": np.zeros(1), "b": np.zeros(1)},
                          "empty_tensor": {"input_1": np.zeros((0, 3, 8, 8), np.float32)},
                          "strings": {"input_1": np.array(["x"] * 3)}}.items():
        buf = io.BytesIO()
        if label == "object_array":
            np.savez(buf, allow_pickle=True, **arrays)
        else:
            np.savez(buf, **arrays)
        out[label] = buf.getvalue()
    return out


def _manifest_edits(bmodel: Path) -> dict[str, bytes]:
    import io
    import zipfile
    with zipfile.ZipFile(bmodel) as z:
        members = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(members["manifest.json"])

    def rezip(manifest, drop_array=False):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for n, data in members.items():
                if drop_array and n.startswith("arrays/"):
                    drop_array = False
                    continue
                z.writestr(n, manifest if n == "manifest.json" else data)
        return buf.getvalue()

    step = json.loads(json.dumps(doc))
    step["steps"][0]["kind"] = "warp_drive"
    version = dict(doc, version="1")
    return {"list": rezip(json.dumps([doc])), "no_steps": rezip(json.dumps(
        {k: v for k, v in doc.items() if k != "steps"})), "missing_array": rezip(
        json.dumps(doc), drop_array=True), "unknown_kind": rezip(json.dumps(step)),
        "string_version": rezip(json.dumps(version)), "not_json": rezip("{{{"),
        "deep": rezip("[" * 100000 + "]" * 100000)}


def _image_edits(rng) -> dict[str, bytes]:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    jpg = buf.getvalue()
    return {"empty": b"", "truncated": jpg[: len(jpg) // 3], "text": b"not an image\n",
            "random": rng.integers(0, 256, 300, dtype=np.uint8).tobytes()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(project folder, {kind: {label: path}}) with every broken input written under bad/."""
    root = make_project(tmp_path_factory.mktemp("corpus"))
    rng = np.random.default_rng(RNG_SEED)
    kinds: dict[str, dict[str, bytes]] = {
        "onnx": _variants((root / "tiny.onnx").read_bytes(), rng, False) | _onnx_edits(root / "tiny.onnx"),
        "mlir": _variants((root / "tiny.mlir").read_bytes(), rng, True)
        | _mlir_edits((root / "tiny.mlir").read_text()),
        "table": _variants((root / "cali_table").read_bytes(), rng, True)
        | _table_rows((root / "cali_table").read_text(), rng),
        # an empty or cut qtable is still a valid one (fewer overrides): only damage counts
        "qtable": {k: v for k, v in _variants((root / "qtable").read_bytes(), rng, False).items()
                   if k not in ("empty", "truncated_half", "truncated_10")}
        | {"unknown_mode": b"c3_Conv F17\n", "binary": bytes(range(256)),
           "unknown_op": b"no_such_op F16\n"},
        "npz": _variants((root / "input.npz").read_bytes(), rng, False) | _npz_edits(rng),
        "image": _image_edits(rng),
        "bmodel": _variants((root / "m.bmodel").read_bytes(), rng, False)
        | _manifest_edits(root / "m.bmodel"),
    }
    suffix = {"onnx": ".onnx", "mlir": ".mlir", "table": "", "qtable": "", "npz": ".npz",
              "image": ".jpg", "bmodel": ".bmodel"}
    paths: dict[str, dict[str, Path]] = {}
    for kind, items in kinds.items():
        folder = root / "bad" / kind
        folder.mkdir(parents=True)
        paths[kind] = {}
        for label, data in items.items():
            p = folder / f"{label}{suffix[kind]}"
            p.write_bytes(data)
            paths[kind][label] = p
    # the .mlir variants keep their weights beside them, as a real .mlir has
    shutil.copy(root / "tiny_top_f32_all_weight.npz", root / "bad" / "mlir")
    return root, paths


def _cases(root: Path, paths: dict[str, dict[str, Path]]):
    """(tool, kind, label, main, argv) for every broken input each tool reads."""
    out = root / "out"
    for kind in ("onnx", "mlir"):
        for label, p in paths[kind].items():
            yield ("model_transform", kind, label, model_transform.main,
                   ["--model_name", "t", "--model_def", p, "--mlir", out / "t.mlir"])
            yield ("model_runner", kind, label, model_runner.main,
                   ["--input", root / "input.npz", "--model", p, "--output", out / "o.npz"])
            yield ("run_calibration", kind, label, run_calibration.main,
                   [p, "--dataset", root / "data", "-o", out / "t"])
            yield ("model_deploy", kind, label, model_deploy.main,
                   ["--mlir", p, "--quantize", "INT8", "--calibration_table", root / "cali_table",
                    "--chip", "bm1684x", "--model", out / "m.bmodel"])
            yield ("detect_yolov3", kind, label, detect_yolov3.main,
                   ["--model", p, "--input", root / "bad" / "image" / "text.jpg",
                    "--output", out / "d.jpg"])
    for label, p in paths["mlir"].items():
        yield ("run_qtable", "mlir", label, run_qtable.main,
               [p, "--dataset", root / "data", "--calibration_table", root / "cali_table",
                "--chip", "bm1684x", "-o", out / "q", "--loss_table", out / "l"])
    for label, p in paths["table"].items():
        yield ("model_deploy", "table", label, model_deploy.main,
               ["--mlir", root / "tiny.mlir", "--quantize", "INT8", "--calibration_table", p,
                "--chip", "bm1684x", "--model", out / "m.bmodel"])
        yield ("run_qtable", "table", label, run_qtable.main,
               [root / "tiny.mlir", "--dataset", root / "data", "--calibration_table", p,
                "--chip", "bm1684x", "-o", out / "q", "--loss_table", out / "l"])
    for label, p in paths["qtable"].items():
        yield ("model_deploy", "qtable", label, model_deploy.main,
               ["--mlir", root / "tiny.mlir", "--quantize", "INT8", "--calibration_table",
                root / "cali_table", "--quantize_table", p, "--chip", "bm1684x",
                "--model", out / "m.bmodel"])
    for label, p in paths["npz"].items():
        yield ("model_runner", "npz", label, model_runner.main,
               ["--input", p, "--model", root / "tiny.mlir", "--output", out / "o.npz"])
        yield ("model_deploy", "npz", label, model_deploy.main,
               ["--mlir", root / "tiny.mlir", "--quantize", "INT8", "--calibration_table",
                root / "cali_table", "--chip", "bm1684x", "--model", out / "m.bmodel",
                "--test_input", p])
        yield ("model_transform", "npz", label, model_transform.main,
               ["--model_name", "t", "--model_def", root / "tiny.onnx", "--mlir", out / "t.mlir",
                "--test_input", p])
        if label in READABLE_NPZ:
            continue   # npz_tool reads any readable npz: their compare FAILS on stdout, correctly
        yield ("npz_tool", "npz", label, npz_tool.main, ["compare", p, root / "input.npz"])
        yield ("npz_tool", "npz", label, npz_tool.main, ["dump", p])
    for label, p in paths["image"].items():
        yield ("model_runner", "image", label, model_runner.main,
               ["--input", p, "--model", root / "tiny.mlir", "--output", out / "o.npz"])
        yield ("detect_yolov3", "image", label, detect_yolov3.main,
               ["--model", root / "tiny.mlir", "--input", p, "--output", out / "d.jpg"])
        lst = out.parent / "bad" / f"list_{label}.txt"
        yield ("run_calibration", "image", label, run_calibration.main,
               [root / "tiny.mlir", "--data_list", lst, "-o", out / "t"])
    for label, p in paths["bmodel"].items():
        yield ("model_runner", "bmodel", label, model_runner.main,
               ["--input", root / "input.npz", "--model", p, "--output", out / "o.npz"])
        yield ("detect_yolov3", "bmodel", label, detect_yolov3.main,
               ["--model", p, "--input", root / "bad" / "image" / "text.jpg",
                "--output", out / "d.jpg"])


def _shell_cases(root: Path, paths):
    """(kind, label, argv of tpushell) for the shell: load, open and --script."""
    for kind in ("onnx", "mlir"):
        for label, p in paths[kind].items():
            yield kind, label, ["-c", f"load {p}"]
    for label, p in paths["table"].items():
        yield "table", label, ["-c", f"load {root / 'tiny.mlir'}", "-c", f"calibrate --table {p}"]
    rng = np.random.default_rng(RNG_SEED + 1)
    ws_root = root / "bad" / "workspace"
    for label, data in _variants(b'{"format": "tpushell-workspace", "version": 2}', rng, True).items():
        (ws_root / f"{label}.tpw").write_bytes(data)
        yield "workspace", label, ["-c", f"open {ws_root / (label + '.tpw')}"]
    for label, data in {"non_utf8": b"load x.onnx\n\xff\n", "shell": b"shell touch PWNED\n",
                        "bang": b"!touch PWNED\n", "py": b"py open('PWNED', 'w')\n",
                        "pipe": b"layers | sh\n", "binary": bytes(range(256))}.items():
        (ws_root / f"{label}.tps").write_bytes(data)
        yield "script", label, ["--script", ws_root / f"{label}.tps"]


def test_every_tool_and_the_shell_fail_cleanly_on_the_whole_corpus(corpus, capsys, monkeypatch):
    from tpushell.app import main as shell_main
    from tpushell.core.workspace import open_workspace  # noqa: F401  (imported before the chdir)
    root, paths = corpus
    (root / "out").mkdir()
    for label, p in paths["image"].items():   # a data list naming each broken image
        (root / "bad" / f"list_{label}.txt").write_text(f"{p}\n")
    (root / "bad" / "workspace").mkdir()
    (root / "escaped").mkdir()
    monkeypatch.chdir(root)
    counts: Counter = Counter()
    problems = []
    before = snapshot(root)
    for tool, kind, label, main, argv in _cases(root, paths):
        rc, out, err = run_main(main, argv, capsys)
        counts[tool] += 1
        try:
            assert_one_line_error(rc, err, f"{tool} {kind}/{label}")
            assert "internal error" not in err, f"{tool} {kind}/{label}: {err}"
        except AssertionError as e:
            problems.append(str(e).splitlines()[0])
        now = snapshot(root)
        if now != before:
            problems.append(f"{tool} {kind}/{label}: files changed "
                            f"{sorted(set(now.items()) ^ set(before.items()))[:4]}")
            before = now
    before = snapshot(root)
    for kind, label, argv in _shell_cases(root, paths):
        before = snapshot(root)
        rc, out, err = run_main(shell_main, argv, capsys)
        counts["tpushell"] += 1
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        if rc == 0 or "Traceback" in err or not errors or "internal error" in err:
            problems.append(f"tpushell {kind}/{label}: rc {rc}, stderr {err!r}")
        now = snapshot(root)
        if now != before:
            problems.append(f"tpushell {kind}/{label}: files changed "
                            f"{sorted(set(now.items()) ^ set(before.items()))[:4]}")
    print(f"\ncorpus: {sum(counts.values())} runs: " + ", ".join(f"{t} {n}" for t, n in
                                                                 sorted(counts.items())))
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
