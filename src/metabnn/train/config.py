"""Run configuration: defaults, presets, ``--set key=value`` overrides and validation.

A config is a plain nested dict (JSON round-trips it into the run directory). Every key a
user can set exists in ``DEFAULTS``; anything else is rejected, so a typo never silently
trains the wrong network. ``data.stream`` is the exception: its keys depend on its kind
and are checked by ``metabnn.data.build_tasks``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from metabnn.errors import MetabnnError

OPEN_KEYS = {"data.stream"}  # dicts whose sub-keys are validated elsewhere

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",
    "data": {
        "dir": None,
        "stream": {"kind": "permuted", "dataset": "mnist", "n_tasks": 3, "seed": 0},
    },
    "model": {"kind": "bnn", "widths": [784, 1024, 1024, 10], "input_bits": 8},
    "optim": {
        "lr": 0.005,
        "weight_decay": 1e-7,
        "meta": 1.35,          # one m for every layer, or a list with one m per layer
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "reset_per_task": True,  # fresh Adam state at each task, as in the reference code
        "fused": "auto",         # compile the metaplastic step (true/false/auto: large nets)
    },
    "train": {
        "epochs": 10,           # per task
        "batch_size": 100,
        "eval_batch_size": 2000,
        "scenario": "task",     # "task": per-task BatchNorm; "domain": one shared set
        "per_task_affine": True,
        "train_subset": None,   # use only the first N (shuffled) training images of each task
        "test_subset": None,
    },
    "baseline": {
        "kind": "none",          # none | ewc | si
        "ewc_lambda": 5000.0,
        "ewc_samples": 500,
        "si_c": 0.1,
        "si_xi": 0.1,
    },
}


def _pmnist(n_tasks: int) -> dict[str, Any]:
    return {"kind": "permuted", "dataset": "mnist", "n_tasks": n_tasks, "seed": 0}


PRESETS: dict[str, dict[str, Any]] = {
    # Consolidation depends on m * |W_h|, and |W_h| grows with the number of steps. The
    # paper's m = 1.35 assumes 40 epochs per task; the short CPU presets take fewer steps,
    # so their hidden weights stay smaller and a larger m gives the same protection
    # (measured: 784-1024-1024-10 after 8 epochs/task keeps task 1 at 97% with m = 3 but
    # drops it to 62% with m = 1.35 by the middle of task 2).
    # Small enough for about a minute on two cores, large enough to show forgetting.
    "demo": {
        "data": {"stream": _pmnist(3)},
        "model": {"widths": [784, 256, 256, 10]},
        "optim": {"meta": 10.0},
        "train": {"epochs": 3, "train_subset": 30000},
    },
    "pmnist-cpu": {
        "data": {"stream": _pmnist(6)},
        "model": {"widths": [784, 1024, 1024, 10]},
        "optim": {"meta": 3.0},
        "train": {"epochs": 10},
    },
    "pmnist-cpu-nometa": {
        "data": {"stream": _pmnist(6)},
        "model": {"widths": [784, 1024, 1024, 10]},
        "optim": {"meta": 0.0},
        "train": {"epochs": 10},
    },
    "pmnist-paper": {
        "data": {"stream": _pmnist(6)},
        "model": {"widths": [784, 4096, 4096, 10]},
        "optim": {"lr": 0.005, "weight_decay": 1e-7, "meta": 1.35},
        "train": {"epochs": 40},
    },
    "mnist-fmnist": {
        "data": {"stream": {"kind": "sequence", "datasets": ["mnist", "fashion-mnist"]}},
        "model": {"widths": [784, 4096, 4096, 10]},
        "optim": {"meta": 1.5},
        "train": {"epochs": 50},
    },
    "fmnist-stream": {
        "data": {"stream": {"kind": "stream", "dataset": "fashion-mnist", "n_subsets": 60,
                            "seed": 0}},
        "model": {"widths": [784, 1024, 1024, 10]},
        "optim": {"meta": 2.5},
        "train": {"epochs": 20, "scenario": "domain"},
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        path = f"{prefix}{key}"
        if key not in out:
            raise MetabnnError(f"unknown config key '{path}'; known keys: {known_keys()}")
        if isinstance(out[key], dict) and path not in OPEN_KEYS:
            if not isinstance(value, dict):
                raise MetabnnError(f"config key '{path}' is a section; set its keys, e.g. {path}.x=...")
            out[key] = _merge(out[key], value, path + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def known_keys(tree: dict[str, Any] | None = None, prefix: str = "") -> str:
    tree = DEFAULTS if tree is None else tree
    keys: list[str] = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in OPEN_KEYS:
            keys.append(known_keys(value, path + "."))
        else:
            keys.append(path)
    return ", ".join(keys)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value``; the value is JSON where it parses (numbers, lists, null), else a string."""
    if "=" not in text:
        raise MetabnnError(f"--set '{text}' is not key=value; e.g. --set optim.meta=1.35")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_override(config: dict[str, Any], text: str) -> dict[str, Any]:
    path, value = parse_override(text)
    nested: dict[str, Any] = value
    for part in reversed(path):
        nested = {part: nested}
    # data.stream.x=... edits one key of the open stream dict rather than replacing it.
    if path[:2] == ["data", "stream"] and len(path) > 2:
        stream = copy.deepcopy(config["data"]["stream"])
        target = stream
        for part in path[2:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
        nested = {"data": {"stream": stream}}
    return _merge(config, nested)


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MetabnnError(f"config file '{path}' does not exist; pass an existing JSON file") from None
    except json.JSONDecodeError as e:
        raise MetabnnError(f"config file '{path}' is not valid JSON ({e}); fix the file") from None
    if not isinstance(data, dict):
        raise MetabnnError(f"config file '{path}' must hold a JSON object")
    data.pop("preset", None)
    return data


def resolve_config(preset: str | None = None, config_file: str | Path | None = None,
                   overrides: list[str] | None = None) -> dict[str, Any]:
    """DEFAULTS, then the preset, then the config file, then each --set, then validation."""
    config = copy.deepcopy(DEFAULTS)
    if preset is not None:
        if preset not in PRESETS:
            raise MetabnnError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
        config = _merge(config, PRESETS[preset])
    if config_file is not None:
        config = _merge(config, load_config_file(config_file))
    for text in overrides or []:
        config = apply_override(config, text)
    validate(config)
    return config


def validate(config: dict[str, Any]) -> None:
    model, optim, train, base = config["model"], config["optim"], config["train"], config["baseline"]
    widths = model["widths"]
    if not isinstance(widths, list) or not widths:
        raise MetabnnError("model.widths is empty; give layer sizes, e.g. model.widths=[784,1024,1024,10]")
    if len(widths) < 2 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise MetabnnError(f"model.widths={widths} needs >= 2 positive integers, e.g. [784,1024,10]")
    metas = optim["meta"] if isinstance(optim["meta"], list) else [optim["meta"]]
    for m in metas:
        if not isinstance(m, (int, float)) or m < 0:
            raise MetabnnError(f"optim.meta={optim['meta']} must be >= 0 (0 = plain Adam, paper: 1.35)")
    if isinstance(optim["meta"], list) and len(optim["meta"]) != len(widths) - 1:
        raise MetabnnError(f"optim.meta lists {len(optim['meta'])} values for {len(widths) - 1} layers")
    for key in ("lr",):
        if not isinstance(optim[key], (int, float)) or optim[key] <= 0:
            raise MetabnnError(f"optim.{key}={optim[key]} must be a positive number")
    if not isinstance(optim["weight_decay"], (int, float)) or optim["weight_decay"] < 0:
        raise MetabnnError(f"optim.weight_decay={optim['weight_decay']} must be >= 0")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not isinstance(train[key], int) or train[key] < 1:
            raise MetabnnError(f"train.{key}={train[key]} must be a positive integer")
    if train["batch_size"] < 2:
        raise MetabnnError("train.batch_size must be >= 2 (BatchNorm needs a batch)")
    for key in ("train_subset", "test_subset"):
        if train[key] is not None and (not isinstance(train[key], int) or train[key] < 2):
            raise MetabnnError(f"train.{key}={train[key]} must be null or an integer >= 2")
    if optim["fused"] not in (True, False, "auto"):
        raise MetabnnError(f"optim.fused={optim['fused']} must be true, false or auto")
    if train["scenario"] not in ("task", "domain"):
        raise MetabnnError(f"train.scenario='{train['scenario']}' must be 'task' or 'domain'")
    if model["kind"] not in ("bnn", "float"):
        raise MetabnnError(f"model.kind='{model['kind']}' must be 'bnn' or 'float'")
    if model["input_bits"] not in (1, 8):
        raise MetabnnError(f"model.input_bits={model['input_bits']} must be 8 or 1")
    if base["kind"] not in ("none", "ewc", "si"):
        raise MetabnnError(f"baseline.kind='{base['kind']}' must be none, ewc or si")
    if config["device"] not in ("auto", "cpu", "cuda") and not str(config["device"]).startswith("cuda:"):
        raise MetabnnError(f"device='{config['device']}' must be auto, cpu or cuda")
    if not isinstance(config["data"]["stream"], dict) or "kind" not in config["data"]["stream"]:
        raise MetabnnError("data.stream must be an object with a 'kind' (permuted, sequence, stream)")
