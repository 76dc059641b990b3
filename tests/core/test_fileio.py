"""core/fileio.py: the one place for writes (temp file + rename, mode kept, links refused, files
of one command renamed together) and for turning OS/decoding errors into one line."""
from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest
from tpushell.core.errors import InputFileError
from tpushell.core.fileio import (FigureFolder, FileGroup, WriteLog, atomic_write, check_file_stem,
                                  read_text, save_npz)


def test_a_group_replaces_all_files_or_none(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.npz"
    a.write_text("old a")
    b.write_bytes(b"old b")
    with pytest.raises(RuntimeError):
        with FileGroup() as g:
            with g.open(a) as f:
                f.write("new a")
            save_npz(b, {"x": np.ones(2)}, group=g)
            raise RuntimeError("the check after writing failed")
    assert a.read_text() == "old a" and b.read_bytes() == b"old b"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.npz"]          # no temp file left
    with WriteLog() as log, FileGroup() as g:
        with g.open(a) as f:
            f.write("new a")
        save_npz(b, {"x": np.ones(2)}, group=g)
        assert open(g.temp(a)).read() == "new a" and a.read_text() == "old a"
    assert a.read_text() == "new a" and np.load(b)["x"].tolist() == [1.0, 1.0]
    assert log.paths == [str(a), str(b)]


def test_a_failed_rename_says_what_was_written(tmp_path, monkeypatch):
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)
    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(InputFileError, match=r"cannot replace .*b.txt: No space left on device; "
                                             r"wrote .*a.txt$"):
        with FileGroup() as g:
            for name in ("a.txt", "b.txt"):
                with g.open(tmp_path / name) as f:
                    f.write(name)
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_mode_is_kept_and_links_folders_are_refused(tmp_path):
    p = tmp_path / "secret.txt"
    p.write_text("x")
    os.chmod(p, 0o600)
    with atomic_write(p) as f:
        f.write("y")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600 and p.read_text() == "y"
    os.symlink(p, tmp_path / "link")
    with pytest.raises(InputFileError, match="is a symbolic link"):
        with atomic_write(tmp_path / "link") as f:
            f.write("z")
    with pytest.raises(InputFileError, match="it is a folder"):
        with atomic_write(tmp_path) as f:
            f.write("z")
    assert p.read_text() == "y" and os.path.islink(tmp_path / "link")


def test_read_text_names_the_file_and_the_byte(tmp_path):
    (tmp_path / "t").write_bytes(b"ok\n\xff")
    with pytest.raises(InputFileError, match=r"^table .*t is not UTF-8 text \(byte 0xff at "
                                             r"offset 3\); save it as UTF-8$"):
        read_text(tmp_path / "t", "table")


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "a\\b", "..", "", "x\n"])
def test_file_stems_from_files_cannot_leave_the_folder(name):
    with pytest.raises(InputFileError, match="cannot be part of a file name"):
        check_file_stem(name, "where")


def test_figure_names_are_reserved_and_never_reused(tmp_path):
    figures = FigureFolder(str(tmp_path))
    first, second = figures.next(), figures.next()
    assert os.path.dirname(first) == os.path.dirname(second) != str(tmp_path)
    assert first != second and os.path.exists(first) and os.path.exists(second)
    assert FigureFolder(str(tmp_path)).next().rsplit(os.sep, 2)[-2] != first.rsplit(os.sep, 2)[-2]
