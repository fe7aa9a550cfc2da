"""Atomic writes: the old file survives a failed write, no temp file is left behind."""

import os

import pytest

from metabnn.atomic import atomic_write, atomic_write_json


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"v": 1})

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert os.listdir(tmp_path) == ["a.json"]


def test_mode_follows_umask(tmp_path):
    path = tmp_path / "b.bin"
    old = os.umask(0o022)
    try:
        atomic_write(path, lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
