"""Reading a RUN dir for export: checks, the model, and each task's BatchNorm state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metabnn.errors import MetabnnError
from metabnn.export.manifest import sha256_file
from metabnn.train.batchnorm_state import BNState, live_affine
from metabnn.train.checkpoint import CHECKPOINT, MANIFEST, load_checkpoint
from metabnn.train.models import BinaryMLP

RUN_ARTIFACT = "metabnn-run"


@dataclass
class RunSource:
    run_dir: Path
    config: dict[str, Any]
    model: BinaryMLP
    task_specs: list[dict[str, Any]]  # the finished tasks' specs, in order
    bn_states: list[BNState]  # the state each finished task is evaluated with
    complete: bool  # every task of the stream finished
    checkpoint_sha256: str


def _fix() -> str:
    return "give a RUN_DIR made by 'metabnn train' (e.g. metabnn train --preset demo --out RUN_DIR)"


def read_run(run_dir: Path) -> RunSource:
    """The run in ``run_dir``, or a MetabnnError saying why it can not be exported."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MetabnnError(f"'{run_dir}' is not a directory; {_fix()}")
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise MetabnnError(f"'{run_dir}' holds no {MANIFEST}; it is not a metabnn run directory: {_fix()}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise MetabnnError(f"'{run_dir / MANIFEST}' is unreadable ({type(e).__name__}); {_fix()}") from None
    artifact = manifest.get("artifact") if isinstance(manifest, dict) else None
    if artifact != RUN_ARTIFACT:
        raise MetabnnError(f"'{run_dir}' holds a '{artifact}' artifact, not a training run "
                           f"('{RUN_ARTIFACT}'); {_fix()}")
    # A run that is still training replaces checkpoint.pt after every epoch: hash it before
    # and after loading so the manifest names exactly the checkpoint that was exported.
    for _ in range(3):
        before = sha256_file(run_dir / CHECKPOINT) if (run_dir / CHECKPOINT).is_file() else None
        state = load_checkpoint(run_dir)
        digest = sha256_file(run_dir / CHECKPOINT)
        if digest == before:
            break
    else:
        raise MetabnnError(f"'{run_dir / CHECKPOINT}' kept changing while it was read (the run is training); "
                           "export it again, or after the current epoch")
    config = state["config"]
    mcfg = config.get("model", {})
    if mcfg.get("kind", "bnn") != "bnn":
        raise MetabnnError(f"run '{run_dir}' trained a model.kind={mcfg.get('kind')!r} network; only binary "
                           "networks (model.kind=bnn) can be exported to hardware")
    model = BinaryMLP(mcfg["widths"], int(mcfg.get("input_bits", 8)))
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        raise MetabnnError(f"the checkpoint's weights do not fit model.widths={mcfg['widths']} "
                           f"({type(e).__name__}); the run directory is damaged") from None
    model.eval()
    finished = len(state.get("bn_states") or [])
    specs = state.get("task_specs") or []
    if finished == 0:
        raise MetabnnError(f"run '{run_dir}' has not finished any task yet, so there is nothing to export; "
                           f"let it finish one task (metabnn train resumes it with the same --out)")
    if finished > len(specs):
        raise MetabnnError(f"run '{run_dir}' has {finished} BatchNorm states for {len(specs)} tasks; "
                           "the checkpoint is damaged: retrain it")
    tcfg = config.get("train", {})
    states = []
    for j in range(finished):  # the trainer's rule (ContinualTrainer.bn_state_for)
        if tcfg.get("scenario", "task") == "domain":
            states.append(state["current_bn"])
        elif tcfg.get("per_task_affine", True):
            states.append(state["bn_states"][j])
        else:
            states.append(live_affine(model, state["bn_states"][j]))
    return RunSource(run_dir, config, model, specs[:finished], states, complete=finished == len(specs),
                     checkpoint_sha256=digest)
