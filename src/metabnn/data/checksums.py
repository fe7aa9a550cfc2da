"""Checking data files against the catalog's checksums, remembering files already checked.

Hashing ~55 MB on every load is slow, so a passed check is stamped in
``<cache>/<dataset>/.verified.json``, keyed by the file's absolute path, size and
mtime; a file that changed since gets hashed again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

from metabnn.atomic import atomic_write_json
from metabnn.data.catalog import FileSum
from metabnn.errors import MetabnnError

STAMP_NAME = ".verified.json"


def content_md5(path: str | Path) -> tuple[str, int]:
    """(md5, size) of the file's content, after gunzip when it is gzipped."""
    path = Path(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:  # type: ignore[operator]
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except (OSError, EOFError) as e:
        raise MetabnnError(f"cannot read {path} ({e}); delete it and fetch the dataset again") from None
    return digest.hexdigest(), size


def file_md5(path: str | Path) -> str:
    """md5 of the file's bytes as stored (for downloaded archives)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _key(path: Path) -> tuple[str, dict[str, int]]:
    st = path.stat()
    return str(path.resolve()), {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Verifier:
    """Verifies files for one dataset, with stamps kept in ``stamp_dir``."""

    def __init__(self, stamp_dir: Path) -> None:
        self.stamp_path = stamp_dir / STAMP_NAME
        try:
            self.stamps: dict[str, dict] = json.loads(self.stamp_path.read_text())
            if not isinstance(self.stamps, dict):
                self.stamps = {}
        except (OSError, ValueError):
            self.stamps = {}
        self.dirty = False

    def verify(self, path: Path, expected: FileSum) -> None:
        key, stat = _key(path)
        stamp = self.stamps.get(key)
        if stamp == {**stat, "md5": expected.md5}:
            return
        md5, size = content_md5(path)
        if md5 != expected.md5 or (expected.size is not None and size != expected.size):
            raise MetabnnError(
                f"checksum mismatch for {path}: expected md5 {expected.md5}"
                + (f" ({expected.size} bytes)" if expected.size is not None else "")
                + f", got {md5} ({size} bytes); the file is damaged or not the official one: "
                "delete it and fetch the dataset again, or point --data-dir at the official files"
            )
        self.stamps[key] = {**stat, "md5": md5}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            atomic_write_json(self.stamp_path, self.stamps)
        except OSError:
            # A read-only cache only costs speed: the files get hashed again next time.
            pass
        self.dirty = False


def stat_fingerprint(paths: list[Path]) -> list[list]:
    """What identifies a set of files cheaply: absolute path, size and mtime of each."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out
