"""The run directory's checkpoint: written atomically after every epoch, checked on load."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

import metabnn
from metabnn.atomic import atomic_write, atomic_write_json
from metabnn.errors import MetabnnError

FORMAT = "metabnn-run-checkpoint"
VERSION = 1
CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"
CONFIG = "config.json"
METRICS = "metrics.json"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "version": VERSION, "metabnn_version": metabnn.__version__, **state}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(run_dir / CHECKPOINT, lambda f: f.write(buf.getvalue()))


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise MetabnnError(f"'{run_dir}' holds no {CHECKPOINT}; it is not a metabnn run directory "
                           "(train one with: metabnn train --preset demo --out DIR)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise MetabnnError(f"checkpoint '{path}' is corrupted or unreadable ({type(e).__name__}); "
                           "restore it or start a new run with another --out") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MetabnnError(f"'{path}' is not a metabnn run checkpoint (foreign file); "
                           "point at a directory made by 'metabnn train'")
    if state.get("version") != VERSION:
        raise MetabnnError(f"checkpoint '{path}' has format version {state.get('version')}, "
                           f"this metabnn reads {VERSION}; use the metabnn version that wrote it")
    return state


def write_run_files(run_dir: Path, config: dict[str, Any], task_specs: list[dict[str, Any]]) -> None:
    atomic_write_json(run_dir / CONFIG, config)
    atomic_write_json(run_dir / MANIFEST, {
        "artifact": "metabnn-run",
        "metabnn_version": metabnn.__version__,
        "config": config,
        "tasks": [{k: v for k, v in s.items() if k != "permutation"} for s in task_specs],
    })


def read_config(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / CONFIG).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise MetabnnError(f"'{run_dir / CONFIG}' is missing or unreadable ({type(e).__name__}); "
                           "the run directory is damaged") from None
