"""The run directory's checkpoint: written atomically after every epoch, verified on every read.

The run's manifest.json records the sha256 of checkpoint.pt. Each save writes the manifest
first, naming both the new checkpoint's digest and the one on disk, and then renames the new
checkpoint into place: a crash between the two leaves the old checkpoint, which the manifest
still accepts, so a run is never refused for having been interrupted, while any change to the
file's bytes (a flipped bit, a truncated copy) is refused.

Runs made before the digest existed (no ``checkpoint`` entry in manifest.json) are read with a
warning and gain the digest at their next save.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import torch

import metabnn
from metabnn.atomic import atomic_write_bytes, atomic_write_json
from metabnn.errors import MetabnnError
from metabnn.train.rundir import CHECKPOINT, CONFIG, MANIFEST, METRICS, check_has_checkpoint  # noqa: F401

FORMAT = "metabnn-run-checkpoint"
VERSION = 1
ARTIFACT = "metabnn-run"

# (inode, size, mtime) of a checkpoint file -> its sha256, so a save need not re-hash the
# file the previous save (or a verified load) of this process left on disk.
_known_digests: dict[str, tuple[tuple[int, int, int], str]] = {}


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _remember(path: Path, digest: str) -> None:
    key = _stat_key(path)
    if key is not None:
        _known_digests[str(path.resolve())] = (key, digest)


def _digest_on_disk(path: Path) -> str | None:
    key = _stat_key(path)
    if key is None:
        return None
    known = _known_digests.get(str(path.resolve()))
    if known is not None and known[0] == key:
        return known[1]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_manifest(config: dict[str, Any], task_specs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "artifact": ARTIFACT,
        "metabnn_version": metabnn.__version__,
        "config": config,
        "tasks": [{k: v for k, v in s.items() if k != "permutation"} for s in task_specs],
    }


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as the run's checkpoint and its sha256 into manifest.json (see the module doc)."""
    payload = {"format": FORMAT, "version": VERSION, "metabnn_version": metabnn.__version__, **state}
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = run_dir / CHECKPOINT
    manifest = _read_manifest(run_dir) or {}
    if "config" in state and "task_specs" in state:
        manifest.update(run_manifest(state["config"], state["task_specs"]))
    manifest["checkpoint"] = {"file": CHECKPOINT, "sha256": digest, "previous_sha256": _digest_on_disk(path)}
    atomic_write_json(run_dir / MANIFEST, manifest)
    atomic_write_bytes(path, data)
    _remember(path, digest)


def _accepted(manifest: dict[str, Any] | None) -> list[str] | None:
    entry = (manifest or {}).get("checkpoint")
    if not isinstance(entry, dict):
        return None
    return [d for d in (entry.get("sha256"), entry.get("previous_sha256")) if isinstance(d, str)]


def load_checkpoint_verified(run_dir: Path, expected_sha256: str | None = None) -> tuple[dict[str, Any], str]:
    """The run's checkpoint and the sha256 of the bytes it was read from.

    The bytes must match ``expected_sha256`` when given (e.g. a deploy package's own record),
    else the digest recorded in the run's manifest.json. MetabnnError (one line) when the
    checkpoint is missing, altered, truncated, foreign or of another format version.
    """
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    check_has_checkpoint(run_dir)
    for _ in range(5):
        if expected_sha256 is not None:
            manifest, accepted = None, [expected_sha256]
        else:
            manifest = _read_manifest(run_dir)
            if manifest is None or manifest.get("artifact") != ARTIFACT:
                raise MetabnnError(f"'{run_dir}' holds {CHECKPOINT} but no readable run {MANIFEST}; it is damaged "
                                   "or was not made by 'metabnn train': train the run again")
            accepted = _accepted(manifest)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise MetabnnError(f"cannot read '{path}' ({e.strerror}); make it readable") from None
        digest = hashlib.sha256(data).hexdigest()
        if accepted is None:
            print(f"metabnn: warning: '{run_dir / MANIFEST}' records no checksum of {CHECKPOINT} (a run made by an "
                  "older metabnn); it is read unverified, and its next save adds the checksum", file=sys.stderr)
            break
        if digest in accepted:
            break
        # A run that is training replaces both files after every epoch; look again if it moved on.
        if expected_sha256 is not None or _accepted(_read_manifest(run_dir)) == accepted:
            raise MetabnnError(f"checkpoint '{path}' is corrupted (its sha256 is not the one recorded for it); "
                               "restore it from a copy, or train the run again with another --out")
    else:
        raise MetabnnError(f"'{path}' kept changing while it was read (the run is training); try again after "
                           "the current epoch")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise MetabnnError(f"checkpoint '{path}' is corrupted or unreadable ({type(e).__name__}); "
                           "restore it or start a new run with another --out") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MetabnnError(f"'{path}' is not a metabnn run checkpoint (foreign file); "
                           "point at a directory made by 'metabnn train'")
    if state.get("version") != VERSION:
        raise MetabnnError(f"checkpoint '{path}' has format version {state.get('version')}, "
                           f"this metabnn reads {VERSION}; use the metabnn version that wrote it")
    _remember(path, digest)
    return state, digest


def load_checkpoint(run_dir: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """The run's checkpoint, verified (see ``load_checkpoint_verified``): every reader goes through here."""
    return load_checkpoint_verified(run_dir, expected_sha256)[0]


def write_run_files(run_dir: Path, config: dict[str, Any], task_specs: list[dict[str, Any]],
                    checkpoint_sha256: str | None = None) -> None:
    """config.json and manifest.json of a run.

    The manifest keeps the checksum it already holds, or records ``checkpoint_sha256``: the
    digest of a checkpoint the caller copied into ``run_dir`` after verifying it.
    """
    atomic_write_json(run_dir / CONFIG, config)
    manifest = run_manifest(config, task_specs)
    old = _read_manifest(run_dir)
    if checkpoint_sha256 is not None:
        manifest["checkpoint"] = {"file": CHECKPOINT, "sha256": checkpoint_sha256, "previous_sha256": None}
    elif old is not None and isinstance(old.get("checkpoint"), dict):
        manifest["checkpoint"] = old["checkpoint"]
    atomic_write_json(run_dir / MANIFEST, manifest)


def read_config(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / CONFIG).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise MetabnnError(f"'{run_dir / CONFIG}' is missing or unreadable ({type(e).__name__}); "
                           "the run directory is damaged") from None
