"""What ``metabnn serve`` (the board) and ``--remote`` (the workstation) agree on.

Stdlib and numpy only: both sides import it, the board without torch.

- Token: ``DEPLOY_DIR/server-token`` (mode 0600), written by the build's deploy step, copied
  to the board with the package. Every request carries ``Authorization: Bearer <token>``.
- Identity: the build the package came from, its register map (every layer's memory: IP,
  partition, word count, file) and its bitstream files. Two packages with different
  identities drive different hardware: nothing is exchanged between them.
- State: the generation and the sha256 of every device-side file (driver/, tasks/), i.e.
  exactly what the accelerator holds for each task. An update goes from one state to the
  next; a workstation and a board in different states are refused, not merged.
- Words travel as runs ``[start, base64 of little-endian uint32]`` against a base file the
  board already holds; arrays as ``{"dtype", "shape", "data": base64}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError
from metabnn.runtime.package import TOKEN as TOKEN_FILE

DEFAULT_PORT = 8737
DEFAULT_MAX_REQUEST = 16 << 20  # bytes of one request body (an update of pmnist-cpu is ~0.2 MiB)
API = "/v1"


# ---- token --------------------------------------------------------------------------------

def write_token(deploy: Path) -> Path:
    """Create ``deploy/server-token`` (mode 0600) unless it exists; returns its path."""
    path = Path(deploy) / TOKEN_FILE
    if path.is_file():
        return path
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # a umask cannot widen it, but an existing tmp file kept its mode
    os.replace(tmp, path)
    return path


def read_token(path: Path, how_to_get: str) -> str:
    """The token in ``path``; a missing, unreadable or empty file is one line with ``how_to_get``."""
    try:
        token = Path(path).read_text().strip()
    except FileNotFoundError:
        raise MetabnnError(f"no token: '{path}' does not exist; {how_to_get}") from None
    except IsADirectoryError:
        raise MetabnnError(f"the token file '{path}' is a directory; {how_to_get}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MetabnnError(f"the token file '{path}' cannot be read ({type(e).__name__}); {how_to_get}") from None
    if not token or len(token) < 16 or any(c.isspace() for c in token):
        raise MetabnnError(f"the token file '{path}' holds no usable token (one line of at least 16 characters); "
                           f"{how_to_get}")
    return token


def token_is_private(path: Path) -> bool:
    try:
        return not (Path(path).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return True


# ---- identity and state -------------------------------------------------------------------

def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must match for two packages to drive the same hardware."""
    regmap = [{"index": l["index"], "name": l["name"], "kind": l["kind"],
               "memory": {k: l["memory"].get(k) for k in ("ip", "sdp", "rt_index", "base", "words", "file")}}
              for l in manifest["layers"]]
    bit = {rel: d for rel, d in manifest.get("files", {}).items() if rel.startswith("bitfile/")}
    return {"build": manifest.get("source", {}).get("build_manifest_sha256"),
            "widths": [int(w) for w in manifest["network"]["widths"]],
            "register_map": _digest(regmap), "bitstream": _digest(bit) if bit else None}


def state(manifest: dict[str, Any]) -> dict[str, Any]:
    """The device-side state: generation, live tasks, digest of every driver/ and tasks/ file."""
    files = {rel: d for rel, d in manifest.get("files", {}).items() if rel.startswith(("driver/", "tasks/"))}
    return {"generation": int(manifest["generation"]),
            "tasks": [t["name"] for t in manifest["tasks"] if t.get("live")], "digest": _digest(files)}


def identity_mismatch(mine: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """Which part of two identities differs (None: they match)."""
    for key, what in (("build", "a different build"), ("widths", "a different network"),
                      ("register_map", "a different register map"), ("bitstream", "a different bitstream")):
        if mine.get(key) != theirs.get(key):
            return what
    return None


def describe_state(s: dict[str, Any]) -> str:
    return f"generation {s['generation']}, tasks {', '.join(s['tasks'])}"


# ---- encodings ----------------------------------------------------------------------------

def encode_array(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


ARRAY_DTYPES = {"|u1", "<i8", "<f4", "<u4"}


def decode_array(obj: Any, what: str, max_items: int | None = None) -> np.ndarray:
    """The array of ``encode_array``; anything else is a ``ValueError`` naming ``what``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), str) or obj.get("dtype") not in ARRAY_DTYPES \
            or not isinstance(obj.get("shape"), list) \
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in obj["shape"]):
        raise ValueError(f"{what} must be an array {{dtype, shape, data}} of one of {sorted(ARRAY_DTYPES)}")
    n = int(np.prod(obj["shape"], dtype=np.int64)) if obj["shape"] else 1
    if max_items is not None and n > max_items:
        raise ValueError(f"{what} holds {n} values, at most {max_items} are taken")
    try:
        raw = base64.b64decode(obj["data"], validate=True)
    except ValueError:
        raise ValueError(f"{what}: 'data' is not base64") from None
    dt = np.dtype(obj["dtype"])
    if len(raw) != n * dt.itemsize:
        raise ValueError(f"{what}: {len(raw)} bytes of data for shape {obj['shape']} of {obj['dtype']}")
    return np.frombuffer(raw, dtype=dt).reshape(obj["shape"]).copy()


def word_runs(old: np.ndarray | None, new: np.ndarray, gap: int = 4) -> list[list[Any]]:
    """Runs of ``new`` that differ from ``old`` (all of ``new`` when there is no ``old``)."""
    from metabnn.runtime.accelerator import changed_runs

    new = np.asarray(new, dtype="<u4")
    if old is None or old.size != new.size:
        spans = [(0, int(new.size))] if new.size else []
    else:
        spans = changed_runs(np.asarray(old, dtype="<u4"), new, gap)
    return [[int(a), base64.b64encode(new[a:b].tobytes()).decode()] for a, b in spans]


def apply_runs(base: np.ndarray, runs: Any, what: str) -> tuple[np.ndarray, int]:
    """``base`` with ``runs`` written over it, and the number of words they carried."""
    out = np.array(base, dtype=np.uint32)
    if not isinstance(runs, list):
        raise ValueError(f"{what}: 'runs' must be a list of [start, base64 words]")
    total = 0
    for r in runs:
        if not (isinstance(r, list) and len(r) == 2 and isinstance(r[0], int) and not isinstance(r[0], bool)
                and isinstance(r[1], str)):
            raise ValueError(f"{what}: each run must be [start, base64 words]")
        try:
            raw = base64.b64decode(r[1], validate=True)
        except ValueError:
            raise ValueError(f"{what}: a run is not base64") from None
        if len(raw) % 4:
            raise ValueError(f"{what}: a run is not whole 32-bit words")
        words = np.frombuffer(raw, dtype="<u4")
        if r[0] < 0 or r[0] + words.size > out.size:
            raise ValueError(f"{what}: words {r[0]}..{r[0] + words.size - 1} are outside its {out.size} words")
        out[r[0]:r[0] + words.size] = words
        total += int(words.size)
    return out, total
