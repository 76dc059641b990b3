"""Writing files so that nothing is ever half-written: temp file in the same folder, then rename."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from typing import IO, Iterator

import numpy as np

from .errors import InputFileError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file next to `path`; on success rename it over `path`, on error delete it.

    An interrupted write (Ctrl-C, exception) leaves any existing `path` untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputFileError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; a written file gets the usual mode
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to `path` atomically (the exact name is kept: no '.npz' appended)."""
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an npz file, with errors that name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as e:
        raise InputFileError(f"{path} is not a readable npz file ({type(e).__name__}: {e})") from e


def require_file(path: str | os.PathLike, what: str = "file") -> str:
    """`path` as str if it is an existing file, else InputFileError naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        hint = " (it is a folder)" if os.path.isdir(path) else ""
        raise InputFileError(f"{what} not found: {path}{hint}")
    return path


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
