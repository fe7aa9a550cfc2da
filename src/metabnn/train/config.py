"""Run configuration: defaults, presets, ``--set key=value`` overrides and validation.

A config is a plain nested dict (JSON round-trips it into the run directory). Every key a
user can set exists in ``DEFAULTS``; anything else is rejected, so a typo never silently
trains the wrong network. ``data.stream`` is the exception: its keys depend on its kind
and are checked by ``metabnn.data.build_tasks``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator

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
        raise MetabnnError(f"--config '{path}' does not exist; pass an existing JSON file") from None
    except json.JSONDecodeError as e:
        raise MetabnnError(f"--config '{path}' is not valid JSON ({e}); fix the file") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise MetabnnError(f"--config '{path}' cannot be read ({reason}); pass a readable JSON file") from None
    if not isinstance(data, dict):
        raise MetabnnError(f"--config '{path}' holds a JSON {_json_kind(data)}, not an object; write the keys "
                           'as an object, e.g. {"optim": {"meta": 2.0}}')
    return data


def resolve_config(preset: str | None = None, config_file: str | Path | None = None,
                   overrides: list[str] | None = None) -> dict[str, Any]:
    """DEFAULTS, then the preset, then the config file, then each --set, then validation.

    A config file may name its base preset with a top-level ``"preset"`` key.
    """
    config = copy.deepcopy(DEFAULTS)
    file_data = load_config_file(config_file) if config_file is not None else {}
    file_preset = file_data.pop("preset", None)
    if file_preset is not None:
        if preset is not None and preset != file_preset:
            raise MetabnnError(f"--preset {preset} and the config file's \"preset\": {json.dumps(file_preset)} "
                               "disagree; give the preset in one place")
        if not isinstance(file_preset, str):
            raise MetabnnError(f"the config file's \"preset\" is {json.dumps(file_preset)}; give a preset name, "
                               f"one of: {', '.join(PRESETS)}")
        preset = file_preset
    if preset is not None:
        if preset not in PRESETS:
            raise MetabnnError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
        config = _merge(config, PRESETS[preset])
    config = _merge(config, file_data)
    for text in overrides or []:
        config = apply_override(config, text)
    validate(config)
    return config


# ---- validation ------------------------------------------------------------------------
# Every key's type comes from its value in DEFAULTS (an int default takes integers, a float
# default any number, a list default a list of its first element's type); _TYPES widens the
# few keys whose default does not show every accepted form. bool is never a number: JSON's
# `true` for an integer key is a mistake, not 1.

_TYPES: dict[str, tuple[Any, ...]] = {
    "data.dir": ("str", "null"),
    "data.stream": ("object",),
    "optim.meta": ("number", ("list", "number")),
    "optim.fused": ("bool", "str"),
    "train.train_subset": ("int", "null"),
    "train.test_subset": ("int", "null"),
}

_TYPE_WORDS = {"int": "an integer", "number": "a number", "bool": "true or false", "str": "a string",
               "null": "null", "object": "an object"}

MAX_SEED = 2**30 - 1  # seeds are mixed into 64-bit generator seeds (continual.epoch_generator)
MAX_WIDTH = 1 << 20


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _type_of_default(v: Any) -> tuple[Any, ...]:
    if isinstance(v, bool):
        return ("bool",)
    if isinstance(v, int):
        return ("int",)
    if isinstance(v, float):
        return ("number",)
    if isinstance(v, str):
        return ("str",)
    if isinstance(v, list):
        return (("list", _type_of_default(v[0])[0]),)
    if isinstance(v, dict):
        return ("object",)
    raise TypeError(f"DEFAULTS value {v!r} has no rule in _TYPES")


def _matches(v: Any, t: Any) -> bool:
    if isinstance(t, tuple):
        return isinstance(v, list) and all(_matches(x, t[1]) for x in v)
    return {"int": _is_int, "number": _is_number, "bool": lambda x: isinstance(x, bool),
            "str": lambda x: isinstance(x, str), "null": lambda x: x is None,
            "object": lambda x: isinstance(x, dict)}[t](v)


def _describe(types: tuple[Any, ...]) -> str:
    words = [f"a list of {_TYPE_WORDS[t[1]].split(' ', 1)[1]}s" if isinstance(t, tuple) else _TYPE_WORDS[t]
             for t in types]
    return " or ".join(words)


def _leaves(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in OPEN_KEYS:
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def key_types() -> dict[str, tuple[Any, ...]]:
    """Every config key and the JSON types it accepts."""
    return {k: _TYPES.get(k) or _type_of_default(v) for k, v in _leaves(DEFAULTS)}


def _get(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node[part]
    return node


def _show(v: Any) -> str:
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)


def _in(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    def ok(v: Any) -> bool:
        return (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi))

    return ok


def _choice(*allowed: Any):
    return lambda v: any(v == a and type(v) is type(a) for a in allowed)


# key -> (rule on a value of the right type, what it must be, an example); a list key's
# rule applies to every element unless the key is in _WHOLE_LIST_RULES.
_RULES: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "seed": (_in(0, MAX_SEED), f"an integer from 0 to {MAX_SEED}", "0"),
    "device": (lambda v: v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v) is not None,
               "auto, cpu, cuda or cuda:N", "cpu"),
    "model.kind": (_choice("bnn", "float"), "'bnn' or 'float'", "bnn"),
    "model.widths": (_in(1, MAX_WIDTH), f"layer sizes from 1 to {MAX_WIDTH}", "[784,1024,1024,10]"),
    "model.input_bits": (_choice(8, 1), "8 or 1", "8"),
    "optim.lr": (_in(0, lo_open=True), "a number > 0", "0.005"),
    "optim.weight_decay": (_in(0), "a number >= 0", "1e-7"),
    "optim.meta": (_in(0), ">= 0 (0 = plain Adam, paper: 1.35), one m or one per layer", "1.35"),
    "optim.betas": (_in(0, 1, hi_open=True), "two numbers in [0, 1)", "[0.9,0.999]"),
    "optim.eps": (_in(0, lo_open=True), "a number > 0", "1e-8"),
    "optim.fused": (lambda v: isinstance(v, bool) or v == "auto", "true, false or auto", "auto"),
    "train.epochs": (_in(1), "a positive integer", "10"),
    "train.batch_size": (_in(2), "an integer >= 2 (BatchNorm needs a batch)", "100"),
    "train.eval_batch_size": (_in(1), "a positive integer", "2000"),
    "train.scenario": (_choice("task", "domain"), "'task' or 'domain'", "task"),
    "train.train_subset": (lambda v: v is None or v >= 2, "null or an integer >= 2", "null"),
    "train.test_subset": (lambda v: v is None or v >= 2, "null or an integer >= 2", "null"),
    "baseline.kind": (_choice("none", "ewc", "si"), "none, ewc or si", "ewc"),
    "baseline.ewc_lambda": (_in(0), "a number >= 0", "5000"),
    "baseline.ewc_samples": (_in(1), "a positive integer", "500"),
    "baseline.si_c": (_in(0), "a number >= 0", "0.1"),
    "baseline.si_xi": (_in(0, lo_open=True), "a number > 0", "0.1"),
}


def _check_key(key: str, value: Any, types: tuple[Any, ...]) -> None:
    rule = _RULES.get(key)
    example = f"{key}={rule[2]}" if rule else f"{key}={_show(_get(DEFAULTS, key))}"
    if not any(_matches(value, t) for t in types):
        bad = ""
        elem = next((t[1] for t in types if isinstance(t, tuple)), None)
        if isinstance(value, list) and elem is not None:
            wrong = [x for x in value if not _matches(x, elem)]
            bad = f" ({_show(wrong[0])} is not {_TYPE_WORDS[elem]})" if wrong else ""
        raise MetabnnError(f"{key}={_show(value)} is not {_describe(types)}{bad}; set e.g. {example}")
    if rule is None:
        return
    ok, what, _ = rule
    values = value if isinstance(value, list) else [value]
    if key == "optim.betas" and len(values) != 2:
        raise MetabnnError(f"{key}={_show(value)} has {len(values)} value{'' if len(values) == 1 else 's'}; set {what}, e.g. {example}")
    if key == "model.widths" and len(values) < 2:
        raise MetabnnError(f"{key}={_show(value)} is {'empty' if not values else 'one size'}; give the input, "
                           f"hidden and output sizes, e.g. {example}")
    if isinstance(value, list) and key == "optim.meta" and not values:
        raise MetabnnError(f"{key}=[] is empty; set {what}, e.g. {example}")
    for v in values:
        if not ok(v):
            raise MetabnnError(f"{key}={_show(value)} must be {what}; set e.g. {example}")


def validate(config: dict[str, Any]) -> None:
    """Every key's type and range, then the rules that relate keys; MetabnnError on the first problem."""
    from metabnn.data.streams import check_stream

    for key, types in key_types().items():
        _check_key(key, _get(config, key), types)
    widths, meta = config["model"]["widths"], config["optim"]["meta"]
    if isinstance(meta, list) and len(meta) != len(widths) - 1:
        raise MetabnnError(f"optim.meta lists {len(meta)} values for {len(widths) - 1} layers "
                           f"(model.widths={_show(widths)}); give one m, or one per layer")
    data_dir = config["data"]["dir"]
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise MetabnnError(f"data.dir '{data_dir}' is not a directory; give the directory holding the dataset "
                           "files, or null to use the cache")
    check_stream(config["data"]["stream"])
