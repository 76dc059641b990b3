"""Every file the product writes goes through here: a temp file in the same folder, then rename.

- nothing is ever half-written: an interrupted or failed write leaves the old file as it was;
- a replaced file keeps its mode (a 0600 file stays 0600);
- an output path that is a symbolic link is refused, never followed or replaced;
- the files of one command can be written as a `FileGroup`: all to temp files first, then renamed
  together (Ctrl-C is held back for those few renames), so they are all old or all new;
- every rename is logged (`WriteLog`), so an interrupted tool can say truly what it wrote.
Reading helpers (`read_text`, `load_npz`) turn OS and decoding errors into one line naming the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import tempfile
import threading
from typing import IO, Iterator

import numpy as np

from .errors import SYSTEM_ERRORS, InputFileError, SystemFileError, system_error_message

_UMASK = os.umask(0)
os.umask(_UMASK)


# ---- the log of files written (for true "nothing was written" messages) --------------------------
class WriteLog:
    """Paths renamed into place while the log is active: `with WriteLog() as log: ...; log.paths`."""

    _active: list["WriteLog"] = []

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __enter__(self) -> "WriteLog":
        WriteLog._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        WriteLog._active.remove(self)

    @classmethod
    def record(cls, path: str) -> None:
        for log in cls._active:
            log.paths.append(path)


# ---- checks before writing ------------------------------------------------------------------------
def check_writable(path: str | os.PathLike, what: str = "") -> str:
    """`path` as str if a file can be written there (checked before long work starts), else an
    InputFileError naming it: missing or read-only folder, a folder or a symbolic link in the way."""
    path = os.fspath(path)
    what = f"{what} " if what else ""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputFileError(f"cannot write {what}{path}: folder {folder} does not exist")
    if os.path.islink(path):
        raise InputFileError(f"cannot write {what}{path}: it is a symbolic link (to "
                             f"{os.readlink(path)}); tpushell does not write through links, "
                             "give the target path itself")
    if os.path.isdir(path):
        raise InputFileError(f"cannot write {what}{path}: it is a folder; give a file name")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputFileError(f"cannot write {what}{path}: folder {folder} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise InputFileError(f"cannot write {what}{path}: the file is read-only")
    return path


def _mode_for(path: str) -> int:
    """The mode of the file `path` replaces, else the usual mode of a new file."""
    try:
        return stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _temp_for(path: str) -> tuple[int, str]:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.chmod(tmp, _mode_for(path))   # mkstemp makes 0600; keep the replaced file's mode
    return fd, tmp


@contextlib.contextmanager
def _held_interrupts() -> Iterator[None]:
    """Ctrl-C arriving inside the block is raised at its end (renames are not cut in half)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda sig, frame: caught.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught:
        raise KeyboardInterrupt


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# ---- writing --------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file next to `path`; on success rename it over `path`, on error delete it.

    An interrupted write (Ctrl-C, exception) leaves any existing `path` untouched. OS errors
    (disk full, permissions) become one InputFileError naming `path`.
    """
    with FileGroup() as group:
        with group.open(path, mode) as f:
            yield f


class FileGroup:
    """The files of one command: each written to a temp file, then all renamed by `commit`.

        with FileGroup() as g:
            save_npz(a, arrays, group=g); write_model(plan, b, group=g)
            check(g.temp(b))            # the written file, before it replaces anything
        # on leaving: all renamed (commit), or on an exception all temp files removed
    """

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}    # final path -> temp file
        self.writing: set[str] = set()       # temp files being written

    def __enter__(self) -> "FileGroup":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            self.discard()
            return
        try:
            self.commit()
        except BaseException:   # Ctrl-C before the renames began: no temp file may stay
            self.discard()
            raise

    @contextlib.contextmanager
    def open(self, path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
        """A temp file for `path`, kept for `commit` when the block ends without error."""
        path = check_writable(path)
        try:
            with _held_interrupts():   # the temp file is known before Ctrl-C can strike
                fd, tmp = _temp_for(path)
                self.writing.add(tmp)
        except OSError as e:
            raise SystemFileError(f"cannot write {path}: {e.strerror or e}") from None
        try:
            kwargs = {} if "b" in mode else {"encoding": "utf-8"}
            with os.fdopen(fd, mode, **kwargs) as f:
                yield f
        except BaseException as e:
            _unlink_quietly(tmp)
            if isinstance(e, SYSTEM_ERRORS) and not isinstance(e, UnicodeDecodeError):
                raise SystemFileError(f"cannot write {path}: "
                                      f"{getattr(e, 'strerror', None) or e or type(e).__name__}"
                                      "; the old file, if any, is unchanged") from None
            raise
        if path in self.pending:
            _unlink_quietly(self.pending[path])
        self.pending[path] = tmp
        self.writing.discard(tmp)

    def temp(self, path: str | os.PathLike) -> str:
        """The temp file holding what will become `path`."""
        return self.pending[check_writable(path)]

    def drop(self, path: str | os.PathLike) -> None:
        """Forget `path`: its temp file is removed and the old file, if any, stays."""
        tmp = self.pending.pop(os.fspath(path), None)
        if tmp is not None:
            _unlink_quietly(tmp)

    def commit(self) -> list[str]:
        """Rename every temp file over its path, Ctrl-C held back; returns the paths."""
        done = []
        with _held_interrupts():
            try:
                for path, tmp in self.pending.items():
                    os.replace(tmp, path)
                    WriteLog.record(path)
                    done.append(path)
            except OSError as e:
                self.pending = {p: t for p, t in self.pending.items() if p not in done}
                self.discard()
                wrote = f"; wrote {', '.join(done)}" if done else "; nothing was written"
                raise SystemFileError(f"cannot replace {path}: {e.strerror or e}{wrote}") from None
        self.pending = {}
        return done

    def discard(self) -> None:
        """Remove every temp file (renamed ones are gone already); the old files stay as they
        were."""
        with _held_interrupts():
            for tmp in list(self.pending.values()) + list(self.writing):
                _unlink_quietly(tmp)
            self.pending, self.writing = {}, set()


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray],
             group: FileGroup | None = None) -> None:
    """np.savez to `path` atomically (the exact name is kept: no '.npz' appended); with `group`,
    the file is renamed when the group commits."""
    if group is None:
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)
        return
    with group.open(path, "wb") as f:
        np.savez(f, **arrays)


# ---- reading --------------------------------------------------------------------------------------
def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The whole UTF-8 text of `path`; a missing, unreadable or non-UTF-8 file is one error."""
    path = require_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except SYSTEM_ERRORS as e:
        raise SystemFileError(f"{what} {system_error_message_for(e, path)}") from None


def system_error_message_for(e: BaseException, path: str) -> str:
    """`path: cause` for an error met while reading `path`."""
    message = system_error_message(e, path)
    return message if message.startswith(path) else f"{path}: {message}"


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an npz file, with errors that name the file."""
    path = require_file(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as e:
        if isinstance(e, SYSTEM_ERRORS):
            raise SystemFileError(f"npz file {system_error_message_for(e, path)}") from None
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
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise SystemFileError.wrap(e, path) from None
    return h.hexdigest()


def check_file_stem(name: str, where: str) -> str:
    """`name` if it can be the start of a file name in a folder the user gave: no folder
    separators, no '..', no control characters (a name read from a file never steers where
    files go); else InputFileError naming `where`."""
    bad = (not isinstance(name, str) or not name or len(name) > 200 or name in (".", "..")
           or any(c in name for c in "/\\\0") or ".." in name
           or any(ord(c) < 32 for c in name) or os.path.isabs(name))
    if bad:
        raise InputFileError(f"{where}: model name {str(name)[:80]!r} cannot be part of a file "
                             "name (no '/', '\\', '..' or control characters, at most 200 "
                             "characters)")
    return name


class FigureFolder:
    """Where figures saved without `-o` go: one new folder per session under `base`
    (`tpushell_plots_<date>_<time>[_k]`, made at the first figure), and inside it names that
    are reserved as they are handed out, so no file is ever overwritten without being named."""

    def __init__(self, base: str = ".") -> None:
        self.base = base
        self.folder: str | None = None
        self.count = 0

    def _make_folder(self) -> str:
        import datetime
        stem = os.path.join(self.base, datetime.datetime.now().strftime("tpushell_plots_%Y%m%d_%H%M%S"))
        for k in range(1, 1000):
            folder = stem if k == 1 else f"{stem}_{k}"
            try:
                os.mkdir(folder)
                return folder
            except FileExistsError:
                continue
            except OSError as e:
                raise SystemFileError(f"cannot make the figure folder {folder}: "
                                      f"{e.strerror or e}") from None
        raise InputFileError(f"cannot make a figure folder under {self.base}: too many exist")

    def next(self, ext: str = "png") -> str:
        """A new, reserved file name for the next figure (the folder is made on first use)."""
        if self.folder is None or not os.path.isdir(self.folder):
            self.folder = self._make_folder()
        while True:
            self.count += 1
            path = os.path.join(self.folder, f"plot_{self.count}.{ext}")
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                return path
            except FileExistsError:
                continue
