"""All-or-nothing package updates: stage, seal (journal), write the device, commit.

1. ``begin``: a fresh ``deploy/.staging/`` receives every new or changed file.
2. ``seal``: the new manifest goes into staging, then ``deploy/update.json`` (the journal,
   written atomically) names every staged file with its sha256. From here on the update
   rolls forward: everything it needs is on disk.
3. The caller writes the accelerator (diff, read back, flush).
4. ``commit``: staged files are renamed into place, then the new manifest (the moment the
   new task becomes live), then the journal goes.

``recover`` (called by ``open_package`` under the exclusive package lock, so the writer is
known to be gone): a journal means a sealed update, so it is committed (renames that already
happened are recognised by their sha256); staging without a journal means an unsealed one,
so it is thrown away. Either way the package is whole again, and the device is re-synced to
it on open (Accelerator.open reads back every memory). The update's learn.json is one of
its staged files, so a rolled-forward update is in the log like any other.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from metabnn.atomic import atomic_write_json
from metabnn.errors import MetabnnError
from metabnn.runtime.package import JOURNAL, MANIFEST, STAGING, sha256_file


def pending(root: Path) -> bool:
    return (root / JOURNAL).exists() or (root / STAGING).exists()


def begin(root: Path) -> Path:
    if (root / JOURNAL).exists():
        raise MetabnnError(f"'{root}' has an unfinished update; run 'metabnn status {root}' to repair it")
    shutil.rmtree(root / STAGING, ignore_errors=True)
    (root / STAGING).mkdir()
    return root / STAGING


def seal(root: Path, manifest: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """Write the staged manifest and the journal; returns the journal."""
    staging = root / STAGING
    atomic_write_json(staging / MANIFEST, manifest)
    files = {}
    for p in sorted(staging.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            files[p.relative_to(staging).as_posix()] = sha256_file(p)
    entry = {"state": "sealed", "generation": manifest["generation"], "files": files,
             "manifest_sha256": sha256_file(staging / MANIFEST), **info}
    _fsync_dir(staging)
    atomic_write_json(root / JOURNAL, entry)
    return entry


def commit(root: Path) -> None:
    j = read_journal(root)
    staging = root / STAGING
    for rel, digest in j["files"].items():
        src, dst = staging / rel, root / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        elif not (dst.is_file() and sha256_file(dst) == digest):
            raise MetabnnError(f"the interrupted update of '{root}' cannot be finished: {rel} is neither staged nor "
                               f"in place (was the package copied half-way?); restore the package from a copy "
                               f"or rebuild it")
    man = staging / MANIFEST
    if man.is_file():
        os.replace(man, root / MANIFEST)  # the commit point: the new task is live from here
    elif sha256_file(root / MANIFEST) != j["manifest_sha256"]:
        raise MetabnnError(f"the interrupted update of '{root}' cannot be finished: its staged manifest is gone; "
                           "restore the package from a copy or rebuild it")
    _fsync_dir(root)
    os.unlink(root / JOURNAL)
    shutil.rmtree(staging, ignore_errors=True)


def abort(root: Path) -> None:
    """Drop an update whose device write failed (the caller restores the device)."""
    try:
        os.unlink(root / JOURNAL)
    except FileNotFoundError:
        pass
    shutil.rmtree(root / STAGING, ignore_errors=True)


def read_journal(root: Path) -> dict[str, Any]:
    try:
        j = json.loads((root / JOURNAL).read_text())
        if not (isinstance(j, dict) and isinstance(j.get("files"), dict) and isinstance(j.get("generation"), int)
                and isinstance(j.get("manifest_sha256"), str)):
            raise ValueError("fields")
        return j
    except (OSError, ValueError) as e:
        raise MetabnnError(f"'{root / JOURNAL}' (the journal of an interrupted update) is damaged "
                           f"({type(e).__name__}); restore the package from a copy, or delete it and "
                           f"'{root / STAGING}' to drop the update (status then checks every file)") from None


def recover(root: Path) -> str | None:
    """Finish or undo an interrupted update; returns what was done (None: nothing to do)."""
    if (root / JOURNAL).exists():
        j = read_journal(root)
        commit(root)
        return f"rolled forward interrupted update to generation {j['generation']} ({j.get('what', '')})"
    if (root / STAGING).exists():
        shutil.rmtree(root / STAGING)
        return "discarded an unsealed update (the package is unchanged)"
    return None


def _fsync_dir(path: Path) -> None:
    # Renames are durable only once the directory itself is synced.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
