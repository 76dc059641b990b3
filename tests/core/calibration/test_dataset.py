"""Dataset selection (the reference's sorted + seed-1684 order) and loading samples as batches."""
from __future__ import annotations

import pathlib
import random
import time
import warnings

import numpy as np
import pytest
from PIL import Image
from tpushell.core.calibration.dataset import load_batches, select_samples
from tpushell.core.errors import InputFileError, ModelError, OptionError, TpuWarning
from tpushell.core.graph.ir import Graph, TensorInfo
from tpushell.core.graph.preprocess import PreprocessConfig, preprocess_image


def reference_order(folder) -> list[str]:
    """The reference's selection, written out: recursive glob, sorted, global seed 1684 shuffle."""
    exts = {"jpg", "jpeg", "bmp", "png", "jfif", "npz", "npy"}
    files = sorted(str(p) for p in pathlib.Path(folder).glob("**/*")
                   if p.suffix[1:].lower() in exts)
    state = random.getstate()
    random.seed(1684)
    random.shuffle(files)
    random.setstate(state)
    return files


def image_graph(n_inputs: int = 1, shape=(1, 3, 8, 10), **preprocess) -> Graph:
    inputs = [TensorInfo(f"in{i}", shape) for i in range(n_inputs)]
    cfg = PreprocessConfig(net_shape=shape[2:], **preprocess)
    return Graph("tiny", inputs, [], [], preprocess=cfg)


def make_images(folder: pathlib.Path, names) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


# ---- selection ----------------------------------------------------------------------------------
def test_order_is_sorted_then_seed_1684_shuffle(tmp_path):
    names = [f"img{i:03d}.jpg" for i in range(30)] + ["sub/a.PNG", "sub/deeper/b.JPEG", "c.bmp",
                                                      "Z.jfif"]
    make_images(tmp_path, names)
    (tmp_path / "notes.txt").write_text("not a sample")
    random.seed(5)
    before = random.random()
    random.seed(5)
    samples = select_samples(dataset=tmp_path)
    assert [s[0] for s in samples] == reference_order(tmp_path)
    assert len(samples) == 34 and all(len(s) == 1 for s in samples)
    assert random.random() == before, "the caller's global random state must be left alone"
    assert select_samples(dataset=tmp_path, input_num=7) == samples[:7]


def test_input_num_larger_than_the_dataset_warns_and_uses_all(tmp_path):
    make_images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    with pytest.warns(TpuWarning, match=rf"--input_num 10 is larger than the 3 samples in "
                                        rf"dataset folder {tmp_path}"):
        samples = select_samples(dataset=tmp_path, input_num=10)
    assert len(samples) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(select_samples(dataset=tmp_path, input_num=3)) == 3


def test_empty_and_missing_folders_are_errors(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputFileError, match=rf"{tmp_path} holds no samples \(1 other files\); "
                                             r"accepted extensions: jpg\|jpeg\|bmp\|png\|jfif\|npz\|npy"):
        select_samples(dataset=tmp_path)
    with pytest.raises(InputFileError, match="dataset folder not found: .*nowhere"):
        select_samples(dataset=tmp_path / "nowhere")
    with pytest.raises(InputFileError, match=r"readme.txt is a file, not a folder: .*--data_list"):
        select_samples(dataset=tmp_path / "readme.txt")


def test_mixed_kinds_name_two_files(tmp_path):
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    np.savez(tmp_path / "c.npz", x=np.zeros((1, 3, 8, 10), np.float32))
    with pytest.raises(InputFileError, match=r"mixes kinds of data: .*\.(jpg|npz) is .* but .*\."
                                             r"(jpg|npz) is"):
        select_samples(dataset=tmp_path)


def test_option_errors():
    with pytest.raises(OptionError, match="--dataset DIR or --data_list FILE"):
        select_samples()
    with pytest.raises(OptionError, match="not both"):
        select_samples(dataset="a", data_list="b")
    with pytest.raises(OptionError, match="--input_num -1"):
        select_samples(dataset="a", input_num=-1)


def test_data_list_lines_inputs_and_relative_paths(tmp_path, monkeypatch):
    make_images(tmp_path / "imgs", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    listing = tmp_path / "list.txt"
    listing.write_text("imgs/a.jpg, imgs/b.jpg\n\n  imgs/c.jpg ,imgs/d.jpg  \n")
    monkeypatch.chdir(tmp_path / "imgs")          # entries resolve next to the list file
    samples = select_samples(data_list=listing)
    assert [[pathlib.Path(p).name for p in s] for s in samples] == [["a.jpg", "b.jpg"],
                                                                     ["c.jpg", "d.jpg"]]
    assert len(select_samples(data_list=listing, input_num=1)) == 1


@pytest.mark.parametrize("content,message", [
    ("a.jpg\nmissing.jpg\n", r"line 2: file not found: missing.jpg"),
    ("a.jpg\nnotes.txt\n", r"line 2: not a sample file name \(extension '.txt'\)"),
    ("x.npz,y.npz\n", r"line 1: an npz sample is one file"),
    ("a.jpg\nx.npz\n", r"mixes kinds"),
    ("\n\n", r"lists no samples"),
])
def test_data_list_errors_name_the_line(tmp_path, content, message):
    make_images(tmp_path, ["a.jpg"])
    for name in ("x.npz", "y.npz"):
        np.savez(tmp_path / name, x=np.zeros(3))
    listing = tmp_path / "list.txt"
    listing.write_text(content)
    with pytest.raises(InputFileError, match=message):
        select_samples(data_list=listing)


# ---- loading ------------------------------------------------------------------------------------
def test_image_batches_follow_the_graph_preprocessing(tmp_path):
    paths = make_images(tmp_path, [f"{i}.png" for i in range(5)])
    graph = image_graph(pixel_format="rgb", keep_aspect_ratio=True, pad_value=9, scale=[0.5] * 3)
    batches = list(load_batches([[p] for p in paths], graph, batch_size=2))
    assert [b["in0"].shape[0] for b in batches] == [2, 2, 1]
    stacked = np.concatenate([b["in0"] for b in batches])
    expected = np.stack([preprocess_image(p, graph.preprocess) for p in paths])
    assert stacked.dtype == np.float32 and np.array_equal(stacked, expected)


def test_two_image_inputs_each_sized_by_its_input(tmp_path):
    a, b = make_images(tmp_path, ["a.png", "b.png"])
    graph = Graph("two", [TensorInfo("x", (1, 3, 8, 8)), TensorInfo("y", (1, 3, 6, 4))], [], [],
                  preprocess=PreprocessConfig(net_shape=(8, 8)))
    (feeds,) = load_batches([[a, b]], graph, batch_size=4)
    assert feeds["x"].shape == (1, 3, 8, 8) and feeds["y"].shape == (1, 3, 6, 4)
    with pytest.raises(InputFileError, match="has 1 file.*2 inputs \\(x, y\\)"):
        next(load_batches([[a]], graph))


def test_npz_single_input_any_key_and_batched_arrays(tmp_path):
    graph = image_graph()
    x = np.random.default_rng(1).random((3, 8, 10), dtype=np.float32)
    np.savez(tmp_path / "one.npz", whatever=x)                    # one sample, no batch axis
    np.savez(tmp_path / "two.npz", in0=np.stack([x, x + 1]).astype(np.float64))
    (feeds,) = load_batches([[str(tmp_path / "one.npz")], [str(tmp_path / "two.npz")]], graph, 2)
    assert feeds["in0"].dtype == np.float32 and feeds["in0"].shape == (3, 3, 8, 10)
    assert np.array_equal(feeds["in0"][0], x) and np.array_equal(feeds["in0"][2], x + 1)


@pytest.mark.parametrize("arrays,message", [
    ({"in0": np.zeros((1, 3, 8, 9))}, r"bad.npz key 'in0' has shape \[1, 3, 8, 9\]; input 'in0' "
                                      r"expects \['N', 3, 8, 10\]"),
    ({"a": np.zeros((1, 3, 8, 10)), "b": np.zeros(1)}, r"bad.npz holds 2 arrays \['a', 'b'\]"),
])
def test_npz_with_wrong_shape_or_key_names_file_and_key(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputFileError, match=message):
        next(load_batches([[str(tmp_path / "bad.npz")]], image_graph()))


def test_multi_input_npz_and_npy(tmp_path):
    graph = Graph("two", [TensorInfo("x", (1, 4)), TensorInfo("y", (1, 2))], [], [])
    np.savez(tmp_path / "s.npz", x=np.ones((1, 4)), y=np.zeros((1, 2)), extra=np.zeros(7))
    (feeds,) = load_batches([[str(tmp_path / "s.npz")]], graph)
    assert feeds["x"].shape == (1, 4) and feeds["y"].shape == (1, 2)
    np.savez(tmp_path / "partial.npz", x=np.ones((1, 4)))
    with pytest.raises(InputFileError, match=r"partial.npz has no array for input\(s\) \['y'\]"):
        next(load_batches([[str(tmp_path / "partial.npz")]], graph))
    np.save(tmp_path / "x.npy", np.full(4, 2.0))
    np.save(tmp_path / "y.npy", np.full((1, 3), 2.0))
    ok = [str(tmp_path / "x.npy"), str(tmp_path / "x.npy")]
    with pytest.raises(InputFileError, match=r"y.npy has shape \[1, 3\]; input 'y' expects"):
        list(load_batches([ok[:1] + [str(tmp_path / "y.npy")]], graph))


def test_corrupt_image_error_names_the_file_from_the_worker(tmp_path):
    paths = make_images(tmp_path, ["a.jpg", "b.jpg"])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    batches = load_batches([[paths[0]], [str(bad)], [paths[1]]], image_graph(), batch_size=1)
    assert next(batches)["in0"].shape == (1, 3, 8, 10)
    with pytest.raises(InputFileError, match="broken.jpg"):
        next(batches)


def test_images_without_preprocessing_fail_before_loading(tmp_path):
    paths = make_images(tmp_path, ["a.jpg"])
    graph = Graph("raw", [TensorInfo("x", (1, 3, 8, 8))], [], [], preprocess=None)
    with pytest.raises(ModelError, match="no image preprocessing"):
        load_batches([paths], graph)
    with pytest.raises(OptionError, match="batch size 0"):
        load_batches([paths], image_graph(), batch_size=0)


def test_closing_early_stops_the_loader(tmp_path):
    paths = make_images(tmp_path, [f"{i}.png" for i in range(40)])
    batches = load_batches([[p] for p in paths], image_graph(), batch_size=1)
    next(batches)
    start = time.perf_counter()
    batches.close()
    assert time.perf_counter() - start < 1.0


# ---- the real dataset ---------------------------------------------------------------------------
@pytest.mark.zoo
def test_zoo_order_and_loading(zoo, yolo_graph):
    folder = zoo / "COCO2017"
    samples = select_samples(dataset=str(folder), input_num=100)
    assert [s[0] for s in samples] == reference_order(str(folder))
    print("first 10 of the seed-1684 order:", [pathlib.Path(s[0]).name for s in samples[:10]])
    graph = yolo_graph.copy()
    graph.preprocess = PreprocessConfig(net_shape=(416, 416), scale=[0.0039216] * 3,
                                        pixel_format="rgb", keep_aspect_ratio=True, pad_value=128)
    start = time.perf_counter()
    sizes = [b["input_1"].shape[0] for b in load_batches(samples, graph, batch_size=16)]
    print(f"load + preprocess of 100 zoo images: {time.perf_counter() - start:.2f} s")
    assert sizes == [16] * 6 + [4]
