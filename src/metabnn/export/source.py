"""Reading a RUN dir for export: checks, the model, and each task's BatchNorm state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metabnn.errors import MetabnnError
from metabnn.export.request import check_run_dir
from metabnn.train.batchnorm_state import BNState, live_affine
from metabnn.train.checkpoint import load_checkpoint_verified
from metabnn.train.models import BinaryMLP


@dataclass
class RunSource:
    run_dir: Path
    config: dict[str, Any]
    model: BinaryMLP
    task_specs: list[dict[str, Any]]  # the finished tasks' specs, in order
    bn_states: list[BNState]  # the state each finished task is evaluated with
    complete: bool  # every task of the stream finished
    checkpoint_sha256: str


def read_run(run_dir: Path) -> RunSource:
    """The run in ``run_dir``, or a MetabnnError saying why it can not be exported."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    # One read: the digest is of exactly the bytes that were loaded and verified, even while
    # a run that is still training replaces checkpoint.pt after every epoch.
    state, digest = load_checkpoint_verified(run_dir)
    try:
        return _from_state(run_dir, state, digest)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise MetabnnError(f"the checkpoint in '{run_dir}' lacks or garbles what a run holds ({type(e).__name__}: "
                           f"{str(e)[:80]}); the run directory is damaged: train it again") from None


def _from_state(run_dir: Path, state: dict[str, Any], digest: str) -> RunSource:
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
                           f"let it finish one task (continue it with: metabnn train --resume {run_dir})")
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
