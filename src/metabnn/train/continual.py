"""The continual-learning loop: tasks one after another, per-task BatchNorm, metrics, resume.

Every random choice is derived from (seed, task, epoch), and the checkpoint written after
each epoch holds everything else, so a resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm

from metabnn.atomic import StagedDir, atomic_write_json
from metabnn.data import Task, build_tasks, task_from_spec
from metabnn.errors import MetabnnError
from metabnn.train import checkpoint as ckpt
from metabnn.train.allocator import keep_freed_memory
from metabnn.train.baselines import NoBaseline, make_baseline
from metabnn.train.batchnorm_state import BNState, live_affine, population_statistics, using_bn_state
from metabnn.train.metrics import accuracy, binary_signs, flip_fractions, hidden_histograms, summarize
from metabnn.train.names import short_layer_names
from metabnn.train.models import build_model
from metabnn.train.optimizer import make_optimizer
from metabnn.train.rundir import RunLock, prepare_run_dir, require_writable_run

Log = Callable[[str], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MetabnnError("device 'cuda' asked for but no CUDA GPU is visible; use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise MetabnnError(f"device '{name}' asked for but only {torch.cuda.device_count()} CUDA GPU(s) are "
                           "visible (numbered from 0); use --device cuda:0 or --device cpu")
    return torch.device(name)


def epoch_generator(seed: int, task: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + task) * 10_007 + epoch)


def limit_task(task: Task, train_n: int | None, test_n: int | None, seed: int) -> Task:
    """The first N images of a fixed shuffle, for quick runs; the full task when N is None."""
    if train_n is not None and train_n < len(task.train_x):
        keep = torch.randperm(len(task.train_x), generator=torch.Generator().manual_seed(seed))[:train_n]
        task = Task(task.name, task.train_x[keep], task.train_y[keep], task.test_x, task.test_y,
                    task.num_classes, task.spec)
    if test_n is not None and test_n < len(task.test_x):
        task = Task(task.name, task.train_x, task.train_y, task.test_x[:test_n],
                    task.test_y[:test_n], task.num_classes, task.spec)
    return task


class ContinualTrainer:
    """Owns the model, optimizer, baseline and metrics of one run directory."""

    def __init__(self, config: dict[str, Any], run_dir: Path, tasks: list[Task],
                 log: Log = print, progress: bool = True):
        self.config, self.run_dir, self.log, self.progress = config, run_dir, log, progress
        keep_freed_memory()
        self.device = resolve_device(config["device"])
        tcfg = config["train"]
        self.tasks = [limit_task(t, tcfg["train_subset"], tcfg["test_subset"], config["seed"])
                      for t in tasks]
        widths = config["model"]["widths"]
        dim = self.tasks[0].train_x.shape[1]
        if widths[0] != dim or widths[-1] != self.tasks[0].num_classes:
            raise MetabnnError(
                f"model.widths={widths} do not fit the data ({dim} inputs, "
                f"{self.tasks[0].num_classes} classes); set model.widths=[{dim},...,"
                f"{self.tasks[0].num_classes}]")
        torch.manual_seed(config["seed"])
        self.model = build_model(config["model"]["kind"], widths,
                                 config["model"]["input_bits"]).to(self.device)
        self.optimizer = self._new_optimizer()
        self.baseline: NoBaseline = make_baseline(
            config["baseline"], [p for _, p in self.model.hidden_weights()])
        self.task_index, self.epoch = 0, 0
        self.bn_states: list[BNState] = []
        self.current_bn: BNState | None = None
        self.start_signs: dict[str, torch.Tensor] = {}
        self.metrics: dict[str, Any] = {
            "tasks": [t.name for t in self.tasks], "acc": [], "curves": {"epoch": [], "acc": []},
            "flips": [], "hidden_hist": [], "hist_range": [-4.0, 4.0], "bn_tasks": [],
            "epochs_per_task": config["train"]["epochs"], "scenario": config["train"]["scenario"],
            "train_samples": 0, "train_seconds": 0.0,
        }

    def _new_optimizer(self) -> torch.optim.Optimizer:
        o = self.config["optim"]
        return make_optimizer(self.model, lr=o["lr"], weight_decay=o["weight_decay"],
                              meta=o["meta"], betas=tuple(o["betas"]), eps=o["eps"],
                              fused=o["fused"])

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "task_specs": [t.spec for t in self.tasks],
            "progress": {"task": self.task_index, "epoch": self.epoch},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline.state_dict(),
            "bn_states": self.bn_states,
            "current_bn": self.current_bn,
            "start_signs": self.start_signs,
            "metrics": self.metrics,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.baseline.load_state_dict(state["baseline"])
            self.task_index = int(state["progress"]["task"])
            self.epoch = int(state["progress"]["epoch"])
            self.bn_states, self.current_bn = state["bn_states"], state["current_bn"]
            self.start_signs, self.metrics = state["start_signs"], state["metrics"]
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise MetabnnError(f"checkpoint in '{self.run_dir}' does not match its config "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                               "start a new run") from None

    def save(self) -> None:
        ckpt.save_checkpoint(self.run_dir, self.state_dict())
        atomic_write_json(self.run_dir / ckpt.METRICS, summarize(dict(self.metrics)))

    def append_tasks(self, tasks: list[Task]) -> None:
        """Add tasks after the run's own (e.g. a deployed network learning one more task).

        Call after ``load_state_dict``; ``run`` then trains only what is not finished. Accuracy
        rows keep one entry per known task: older rows get None for tasks unknown back then.
        """
        tcfg = self.config["train"]
        known = len(self.bn_states)
        new = [limit_task(t, tcfg["train_subset"], tcfg["test_subset"], self.config["seed"]) for t in tasks]
        for t in new:
            if t.train_x.shape[1] != self.tasks[0].train_x.shape[1] or t.num_classes != self.tasks[0].num_classes:
                raise MetabnnError(f"task {t.name} has {t.train_x.shape[1]} inputs and {t.num_classes} classes; "
                                   f"the network takes {self.tasks[0].train_x.shape[1]} and "
                                   f"{self.tasks[0].num_classes}")
        if self.task_index != known or self.epoch != 0:
            raise MetabnnError(f"run '{self.run_dir}' is in the middle of task {self.task_index + 1}; "
                               "finish it (metabnn train --resume) before adding tasks")
        self.tasks = self.tasks[:known] + new
        n = len(self.tasks)
        self.metrics["tasks"] = [t.name for t in self.tasks]
        for rows in (self.metrics["acc"], self.metrics["curves"]["acc"]):
            for i, row in enumerate(rows):
                rows[i] = (list(row) + [None] * n)[:n]

    # ---- training ----------------------------------------------------------------------
    def batches(self, task: Task, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = self.config["train"]["batch_size"]
        order = torch.randperm(len(task.train_x), generator=epoch_generator(
            self.config["seed"], self.task_index, epoch))
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            if len(idx) < 2:  # a one-image batch breaks BatchNorm; it is dropped
                continue
            x = task.train_x[idx].to(self.device, torch.float32).div_(255.0)
            yield x, task.train_y[idx].to(self.device)

    def train_epoch(self, task: Task, epoch: int) -> float:
        self.model.train()
        total, n = 0.0, 0
        bar = tqdm(self.batches(task, epoch), total=-(-len(task.train_x) // self.config["train"]["batch_size"]),
                   desc=f"{task.name} epoch {epoch + 1}/{self.config['train']['epochs']}",
                   leave=False, disable=not self.progress, file=sys.stderr, mininterval=0.5)
        start = time.perf_counter()
        for x, y in bar:
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.baseline.before_step()
            self.optimizer.step()
            self.baseline.after_step()
            total += float(loss.detach()) * len(y)
            n += len(y)
        self.metrics["train_seconds"] += time.perf_counter() - start
        self.metrics["train_samples"] += n
        return total / max(n, 1)

    def bn_state_for(self, j: int) -> BNState:
        """The BatchNorm state task j is evaluated with (see DESIGN.md, BatchNorm and hardware)."""
        assert self.current_bn is not None
        tcfg = self.config["train"]
        if tcfg["scenario"] == "domain" or j >= len(self.bn_states):
            return self.current_bn
        state = self.bn_states[j]
        return state if tcfg["per_task_affine"] else live_affine(self.model, state)

    def evaluate(self, task_ids: list[int]) -> list[float]:
        self.model.eval()
        bs = self.config["train"]["eval_batch_size"]
        out = []
        for j in task_ids:
            with using_bn_state(self.model, self.bn_state_for(j)):
                out.append(accuracy(self.model, self.tasks[j].test_x, self.tasks[j].test_y, bs))
        return out

    def fisher_batches(self, task: Task) -> Iterator[torch.Tensor]:
        """One-image log-likelihood losses, evaluation mode, for EWC's Fisher information."""
        n = self.config["baseline"]["ewc_samples"]
        self.model.eval()
        with using_bn_state(self.model, self.bn_state_for(self.task_index)):
            g = torch.Generator().manual_seed(self.config["seed"] + 7919 * self.task_index)
            for i in torch.randperm(len(task.train_x), generator=g)[:n]:
                x = task.train_x[i:i + 1].to(self.device, torch.float32).div_(255.0)
                logp = F.log_softmax(self.model(x), 1)
                yield F.nll_loss(logp, task.train_y[i:i + 1].to(self.device))

    def start_task(self) -> None:
        if self.config["optim"]["reset_per_task"]:
            self.optimizer = self._new_optimizer()
        self.start_signs = binary_signs(self.model)
        self.baseline.start_task()

    def end_task(self, task: Task, seen_acc: list[float]) -> None:
        i = self.task_index
        self.bn_states.append(self.current_bn)
        self.metrics["bn_tasks"].append(task.name)
        unseen = self.evaluate(list(range(i + 1, len(self.tasks))))
        self.metrics["acc"].append(seen_acc + unseen)
        self.metrics["flips"].append(flip_fractions(self.start_signs, binary_signs(self.model)))
        self.metrics["hidden_hist"].append(hidden_histograms(self.model))
        self.baseline.end_task(lambda: self.fisher_batches(task))
        row = " ".join(f"{a:5.1f}" for a in self.metrics["acc"][-1][: i + 1])
        flips = list(self.metrics["flips"][-1].values())
        self.log(f"task {i + 1}/{len(self.tasks)} {task.name} done: acc on tasks 1..{i + 1}: {row} "
                 f"| mean {sum(seen_acc) / len(seen_acc):.2f}% | weights flipped during this task: "
                 + ", ".join(f"{name} {100 * v:.1f}%" for name, v in zip(short_layer_names(len(flips)), flips)))

    def run(self) -> dict[str, Any]:
        epochs = self.config["train"]["epochs"]
        while self.task_index < len(self.tasks):
            i, task = self.task_index, self.tasks[self.task_index]
            if self.epoch == 0:
                self.start_task()
            while self.epoch < epochs:
                e = self.epoch
                loss = self.train_epoch(task, e)
                self.current_bn = population_statistics(self.model, task.train_x)
                seen = self.evaluate(list(range(i + 1)))
                self.metrics["curves"]["epoch"].append(i * epochs + e + 1)
                self.metrics["curves"]["acc"].append(seen + [None] * (len(self.tasks) - i - 1))
                self.log(f"  {task.name} epoch {e + 1}/{epochs} loss {loss:.4f} "
                         f"acc " + " ".join(f"{a:5.1f}" for a in seen))
                self.epoch = e + 1
                if self.epoch == epochs:
                    self.end_task(task, seen)
                    self.task_index, self.epoch = i + 1, 0
                    self.save()
                    break
                self.save()
        return summarize(dict(self.metrics))


Started = Callable[[Path], None]
Done = Callable[[Path, dict[str, Any]], None]


def train(config: dict[str, Any], out: Path, log: Log = print, progress: bool = True,
          on_done: Done | None = None, on_started: Started | None = None) -> dict[str, Any]:
    """Train a fresh run into ``out``; all input is checked before anything is written.

    The run directory appears whole (config, manifest and a checkpoint of the untrained network)
    before the first epoch, so an interruption at any point leaves a run that --resume continues.
    ``on_started(out)`` is called once it is in place.
    """
    from metabnn.train.config import validate

    validate(config)
    prepare_run_dir(out, resume=False)
    with _memory_errors(config):
        tasks = build_tasks(config["data"]["stream"], config["data"]["dir"])
        trainer = ContinualTrainer(config, out, tasks, log, progress)
        with StagedDir(out, "run directory") as stage:
            ckpt.write_run_files(stage, config, [t.spec for t in tasks])
            trainer.run_dir = stage
            trainer.save()
            lock = RunLock(stage)  # the lock moves into place with the directory
        trainer.run_dir = out
        if on_started is not None:
            on_started(out)
        try:
            return _finish(trainer, on_done)
        finally:
            lock.release()


def resume(out: Path, log: Log = print, progress: bool = True, on_done: Done | None = None,
           on_complete: Done | None = None) -> dict[str, Any]:
    """Continue an interrupted run from its last completed epoch.

    A run that already finished every task is not touched: ``on_complete(out, metrics)`` reports it.
    """
    prepare_run_dir(out, resume=True)
    state = ckpt.load_checkpoint(out)
    try:
        config, specs, p = state["config"], state["task_specs"], state["progress"]
        done = int(p["task"]) >= len(specs)
        metrics = summarize(dict(state["metrics"]))
    except (KeyError, TypeError, ValueError) as e:
        raise MetabnnError(f"the checkpoint in '{out}' lacks what a run holds ({type(e).__name__}); "
                           "the run directory is damaged: train it again") from None
    if done:
        log(f"'{out}' is already complete ({len(specs)} tasks trained); nothing to resume")
        if on_complete is not None:
            on_complete(out, metrics)
        return metrics
    from metabnn.train.config import validate

    validate_recorded(config, validate, out)
    require_writable_run(out)
    lock = RunLock(out)
    try:
        # Another process may have trained on between the read above and the lock.
        return _resume_locked(out, ckpt.load_checkpoint(out), log, progress, on_done, on_complete)
    finally:
        lock.release()


def _resume_locked(out: Path, state: dict[str, Any], log: Log, progress: bool, on_done: Done | None,
                   on_complete: Done | None) -> dict[str, Any]:
    config, specs, p = state["config"], state["task_specs"], state["progress"]
    if int(p["task"]) >= len(specs):
        log(f"'{out}' is already complete ({len(specs)} tasks trained); nothing to resume")
        metrics = summarize(dict(state["metrics"]))
        if on_complete is not None:
            on_complete(out, metrics)
        return metrics
    data_dir = config["data"]["dir"]
    if data_dir is not None and not Path(data_dir).is_dir():
        log(f"the run's data directory '{data_dir}' is gone; reading the datasets from the cache "
            "(their checksums are verified either way)")
        data_dir = None
    with _memory_errors(config):
        tasks = [task_from_spec(s, data_dir) for s in specs]
        trainer = ContinualTrainer(config, out, tasks, log, progress)
        trainer.load_state_dict(state)
        log(f"resuming '{out}' at task {p['task'] + 1}, epoch {p['epoch'] + 1}")
        return _finish(trainer, on_done)


def validate_recorded(config: Any, validate: Callable[[dict[str, Any]], None], out: Path) -> None:
    """The recorded config of a run must still be a valid config (a damaged or foreign file is not)."""
    if not isinstance(config, dict):
        raise MetabnnError(f"the checkpoint in '{out}' holds no config; the run directory is damaged")
    recorded = dict(config, data=dict(config.get("data") or {}, dir=None))  # a moved data dir is no error
    try:
        validate(recorded)
    except (KeyError, TypeError) as e:
        raise MetabnnError(f"the config recorded in '{out}' lacks {e}; the run directory is damaged or was "
                           "made by another metabnn version") from None
    except MetabnnError as e:
        raise MetabnnError(f"the config recorded in '{out}' is invalid ({e}); the run directory is damaged") from None


class _memory_errors:
    """Running out of memory is a size problem the user can fix, not a bug."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        # CPU allocations that fail raise a plain RuntimeError from torch's allocator.
        cpu_alloc = exc_type is not None and issubclass(exc_type, RuntimeError) and "allocate memory" in str(exc)
        if exc_type is not None and (issubclass(exc_type, (MemoryError, torch.OutOfMemoryError)) or cpu_alloc):
            c = self.config
            raise MetabnnError(
                f"out of memory (model.widths={c['model']['widths']}, train.batch_size={c['train']['batch_size']}); "
                "use smaller model.widths, train.batch_size or train.eval_batch_size, or fewer tasks") from None


def _finish(trainer: ContinualTrainer, on_done: Done | None) -> dict[str, Any]:
    metrics = trainer.run()
    if on_done is not None:
        on_done(trainer.run_dir, metrics)
    return metrics
