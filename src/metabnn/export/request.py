"""The checks of an export request that need no torch: they run before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metabnn.atomic import ensure_writable
from metabnn.errors import MetabnnError
from metabnn.export.manifest import check_out_dir
from metabnn.train.rundir import MANIFEST, check_has_checkpoint

RUN_ARTIFACT = "metabnn-run"


def run_fix() -> str:
    return "give a RUN_DIR made by 'metabnn train' (e.g. metabnn train --preset demo --out RUN_DIR)"


def check_run_dir(run_dir: Path) -> dict[str, Any]:
    """The run's manifest, after checking ``run_dir`` is a run directory with a checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MetabnnError(f"'{run_dir}' is not a directory; {run_fix()}")
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise MetabnnError(f"'{run_dir}' holds no {MANIFEST}; it is not a metabnn run directory: {run_fix()}") from None
    except (ValueError, OSError) as e:
        raise MetabnnError(f"'{run_dir / MANIFEST}' is unreadable ({type(e).__name__}); {run_fix()}") from None
    artifact = manifest.get("artifact") if isinstance(manifest, dict) else None
    if not isinstance(artifact, str):
        raise MetabnnError(f"'{run_dir}' is not a training run (its {MANIFEST} names no metabnn artifact); "
                           f"{run_fix()}")
    if artifact != RUN_ARTIFACT:
        raise MetabnnError(f"'{run_dir}' holds a '{artifact}' artifact, not a training run; {run_fix()}")
    check_has_checkpoint(run_dir)
    return manifest


def check_export_request(run_dir: Path, out_dir: Path, data_dir: str | Path | None, limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise MetabnnError(f"--limit {limit} must be a positive number of test images per task "
                           "(or leave --limit out to verify all of them)")
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise MetabnnError(f"--data-dir '{data_dir}' is not a directory; give the directory holding the dataset "
                           "files, or leave --data-dir out to use the cache")
    check_out_dir(Path(out_dir))
    ensure_writable(Path(out_dir), "--out")
    check_run_dir(Path(run_dir))
