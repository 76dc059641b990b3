"""Which samples calibration and search use, and loading them as input batches (reference A.3).

    samples = select_samples(dataset="COCO2017", input_num=100)   # [[path], [path], ...]
    for feeds in load_batches(samples, graph, batch_size=10):     # {input name: array}
        run(graph, feeds)

Every tool selects with the same rule (sorted, then Python's random with seed 1684, then the first
`input_num`), so `--input_num 10` elsewhere means the first 10 of the calibration list.
Samples are decoded in background threads while the caller computes (one sample is read by
core/graph/samples.py).
"""
from __future__ import annotations

import os
import pathlib
import random
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputFileError, OptionError, TpuWarning
from ..fileio import read_text
from ..graph.ir import Graph
from ..graph.samples import ACCEPTED, input_config, load_sample, sample_kind

SEED = 1684
# Samples decoded ahead of the caller, per batch: bounded so memory does not grow with the dataset.
PREFETCH_BATCHES = 2


def _shuffled(files: list[str]) -> list[str]:
    """The reference order: sorted, then `random.seed(1684); random.shuffle` (own generator, same
    sequence, so the caller's global random state is left alone)."""
    files = sorted(files)
    random.Random(SEED).shuffle(files)
    return files


def _take(items: list, input_num: int, source: str) -> list:
    """The first `input_num` items (0 = all); a TpuWarning when fewer are available."""
    if input_num > len(items):
        warnings.warn(TpuWarning(f"--input_num {input_num} is larger than the {len(items)} samples "
                                 f"in {source}; using all {len(items)}"), stacklevel=4)
    return items[:input_num] if input_num > 0 else items


def _check_one_kind(samples: list[list[str]], source: str) -> None:
    """All files of one kind, else an error naming one file of each of two kinds."""
    first: dict[str, str] = {}
    for sample in samples:
        for path in sample:
            first.setdefault(sample_kind(path), path)
    if len(first) > 1:
        (k1, f1), (k2, f2) = list(first.items())[:2]
        raise InputFileError(f"{source} mixes kinds of data: {f1} is {k1} but {f2} is {k2}; "
                             f"use one kind (images, npz or npy) per dataset")


def _from_folder(dataset: str, input_num: int) -> list[list[str]]:
    root = pathlib.Path(dataset)
    if root.is_file():
        raise InputFileError(f"dataset {dataset} is a file, not a folder: give the folder that "
                             f"holds the samples, or a list file with --data_list")
    if not root.is_dir():
        raise InputFileError(f"dataset folder not found: {dataset}")
    files, others = [], 0
    for p in root.glob("**/*"):
        if sample_kind(p.name) and p.is_file():
            files.append(str(p))
        elif p.is_file():
            others += 1
    if not files:
        found = f" ({others} other files)" if others else ""
        raise InputFileError(f"dataset folder {dataset} holds no samples{found}; accepted "
                             f"extensions: {ACCEPTED} (searched recursively)")
    samples = [[f] for f in _shuffled(files)]
    _check_one_kind(samples, f"dataset folder {dataset}")
    return _take(samples, input_num, f"dataset folder {dataset}")


def _resolve(entry: str, list_dir: str, where: str) -> str:
    """A data-list entry as given (relative to the working folder), else next to the list file."""
    if os.path.isfile(entry):
        return entry
    beside = os.path.join(list_dir, entry)
    if not os.path.isabs(entry) and os.path.isfile(beside):
        return beside
    raise InputFileError(f"{where}: file not found: {entry}")


def _from_list(data_list: str, input_num: int) -> list[list[str]]:
    if not os.path.isfile(data_list):
        raise InputFileError(f"data list file not found: {data_list}")
    list_dir = os.path.dirname(os.path.abspath(data_list))
    samples = []
    for number, line in enumerate(read_text(data_list, "data list").splitlines(), 1):
        entries = [e.strip() for e in line.split(",")]
        if not any(entries):
            continue
        where = f"{data_list} line {number}"
        for e in entries:
            if sample_kind(e) is None:
                # name only the extension: a tampered list may point at any file's text
                ext = os.path.splitext(e)[1][:12] or "none"
                raise InputFileError(f"{where}: not a sample file name (extension {ext!r}); "
                                     f"accepted extensions: {ACCEPTED}")
        if len(entries) > 1 and "npz" in map(sample_kind, entries):
            raise InputFileError(f"{where}: an npz sample is one file holding every input; "
                                 f"found {len(entries)} files")
        samples.append([_resolve(e, list_dir, where) for e in entries])
    if not samples:
        raise InputFileError(f"data list {data_list} lists no samples; give one sample a line, "
                             f"inputs separated by commas")
    _check_one_kind(samples, f"data list {data_list}")
    return _take(samples, input_num, f"data list {data_list}")


def select_samples(dataset: str | os.PathLike | None = None, data_list: str | os.PathLike | None = None,
                   input_num: int = 0) -> list[list[str]]:
    """The reference's sample list: one list of files (one per model input, or one npz) a sample.

    `dataset`: folder searched recursively for jpg|jpeg|bmp|png|jfif|npz|npy, sorted, shuffled with
    seed 1684; `data_list`: a file with one sample a line (`a.jpg` or `a.npy,b.npy`); then the
    first `input_num` (0 = all).
    """
    if int(input_num) < 0:
        raise OptionError(f"--input_num {input_num} is not valid; give a count >= 0 (0 = all)")
    if dataset and data_list:
        raise OptionError("give either --dataset or --data_list, not both")
    if data_list:
        return _from_list(os.fspath(data_list), int(input_num))
    if dataset:
        return _from_folder(os.fspath(dataset), int(input_num))
    raise OptionError("no calibration data: give --dataset DIR or --data_list FILE")


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def load_batches(samples: Sequence[Sequence[str]], graph: Graph, batch_size: int = 1,
                 workers: int = 2) -> Iterator[dict[str, np.ndarray]]:
    """Feeds dicts {input name: array} of `batch_size` samples each (the last may be smaller).

    Samples are loaded by `workers` background threads, at most two batches ahead of the caller;
    errors name the file. Closing the iterator (or Ctrl-C) cancels the loads not yet started.
    """
    if int(batch_size) < 1:
        raise OptionError(f"batch size {batch_size} is not valid; give 1 or more")
    if not samples:
        raise OptionError("no samples to load")
    kinds = {sample_kind(f) for s in samples for f in s}
    if "image" in kinds:
        for info in graph.inputs:
            input_config(graph, info)       # fail now, not in a worker thread
    return _batches([list(s) for s in samples], graph, int(batch_size), max(1, int(workers)))


def _batches(samples: list[list[str]], graph: Graph, batch_size: int,
             workers: int) -> Iterator[dict[str, np.ndarray]]:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tpushell-load")
    pending: deque = deque()
    todo = iter(samples)
    try:
        while True:
            for sample in todo:
                pending.append(pool.submit(load_sample, sample, graph))
                if len(pending) >= PREFETCH_BATCHES * batch_size:
                    break
            if not pending:
                return
            n = min(batch_size, len(pending))
            yield _stack([pending.popleft().result() for _ in range(n)])
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
