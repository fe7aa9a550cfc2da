"""The run directory's file names and the checks made on it before any work (no torch import)."""

from __future__ import annotations

import json
from pathlib import Path

from metabnn.atomic import ensure_writable
from metabnn.errors import MetabnnError

CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"
CONFIG = "config.json"
METRICS = "metrics.json"


def prepare_run_dir(out: Path, resume: bool) -> None:
    """Refuse an --out (or --resume RUN_DIR) that cannot take the run, before anything is done."""
    out = Path(out)
    if resume:
        if not out.exists():
            raise MetabnnError(f"cannot resume: '{out}' does not exist; give the RUN_DIR of an earlier run")
        if not out.is_dir():
            raise MetabnnError(f"cannot resume: '{out}' is a file; give the RUN_DIR of an earlier run")
        return
    if out.exists() and not out.is_dir():
        raise MetabnnError(f"--out '{out}' is a file; give a new directory path")
    if (out / CHECKPOINT).exists() or (out / MANIFEST).exists():
        raise MetabnnError(f"'{out}' already holds a run; continue it with --resume {out} "
                           "or choose another --out")
    if out.is_dir() and any(out.iterdir()):
        raise MetabnnError(f"--out '{out}' is a directory that holds other files; give a new or empty directory")
    ensure_writable(out, "--out")


def require_writable_run(out: Path) -> None:
    """A run about to be resumed must accept new checkpoints and plots."""
    for d in (out, out / "plots"):
        if d.is_dir():
            try:
                ensure_writable(d, "--resume")
            except MetabnnError as e:
                raise MetabnnError(f"{str(e).split('; choose', 1)[0]}; make the run directory writable "
                                   "(or copy it somewhere writable) and resume that") from None


def check_has_checkpoint(run_dir: Path) -> None:
    """MetabnnError unless ``run_dir`` holds a checkpoint (the message says what the directory is)."""
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT).is_file():
        return
    try:
        artifact = json.loads((run_dir / MANIFEST).read_text()).get("artifact")
    except (OSError, ValueError, AttributeError):
        artifact = None
    if artifact == "metabnn-run":
        raise MetabnnError(f"'{run_dir}' holds no {CHECKPOINT}: the run was stopped before its first "
                           f"checkpoint; delete '{run_dir}' and train it again")
    raise MetabnnError(f"'{run_dir}' holds no {CHECKPOINT}; it is not a metabnn run directory "
                       "(train one with: metabnn train --preset demo --out DIR)")


LOCK = ".metabnn-lock"


class RunLock:
    """An exclusive lock on a run directory for as long as a process trains it.

    Two processes training the same run would interleave their checkpoints; the second is
    refused instead. The lock is an flock on ``RUN/.metabnn-lock``, released by the kernel when
    the process ends, however it ends, so a killed run never leaves a stale lock.
    """

    def __init__(self, run_dir: Path) -> None:
        import fcntl
        import os

        self.path = Path(run_dir) / LOCK
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            owner = self.file.read().strip() or "unknown"
            self.file.close()
            raise MetabnnError(f"'{run_dir}' is being trained right now by another metabnn process (pid {owner}); "
                               "wait for it to finish, or stop it, then resume") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        self.file.close()
