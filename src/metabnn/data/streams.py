"""Stream configs (``data.stream``): their kinds, keys, types and ranges, checked without data.

Kept free of torch so that a config is checked in well under a second, before any work.
"""

from __future__ import annotations

from typing import Any

from metabnn.data.catalog import dataset_spec
from metabnn.errors import MetabnnError

KINDS = ("permuted", "sequence", "stream")


def get_typed(d: dict, key: str, kind: type, where: str, fix: str) -> Any:
    if key not in d:
        raise MetabnnError(f"{where} lacks '{key}'; {fix}")
    value = d[key]
    # bool is an int subclass, but `n_tasks: true` is a config mistake, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MetabnnError(f"{where} has {key}={value!r}, expected {kind.__name__}; {fix}")
    return value


def stream_kind(d: Any, where: str) -> str:
    if not isinstance(d, dict):
        raise MetabnnError(f"{where} must be a mapping with a 'kind', got {type(d).__name__}; e.g. "
                           '{"kind": "permuted", "dataset": "mnist", "n_tasks": 3, "seed": 0}')
    kind = get_typed(d, "kind", str, where, f"set kind to one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise MetabnnError(f"{where} has unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


# The keys each stream kind takes; any other key is a typo or a leftover of another kind.
STREAM_KEYS = {
    "permuted": ("kind", "dataset", "n_tasks", "seed"),
    "sequence": ("kind", "datasets"),
    "stream": ("kind", "dataset", "n_subsets", "seed"),
}
MAX_STREAM_SEED = 2**62  # seed + task index must stay a valid 64-bit generator seed


def check_stream(stream: Any, where: str = "data.stream") -> str:
    """Check a stream config's keys, types and ranges without loading any data; returns its kind."""
    kind = stream_kind(stream, where)
    extra = [k for k in stream if k not in STREAM_KEYS[kind]]
    if extra:
        raise MetabnnError(f"{where} has key '{extra[0]}', which a '{kind}' stream does not take (it takes "
                           f"{', '.join(STREAM_KEYS[kind])}); remove it, or set the whole stream, e.g. "
                           f"--set data.stream='{_example(kind)}'")
    if kind == "sequence":
        names = stream.get("datasets")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise MetabnnError(f"{where} needs datasets: a non-empty list of dataset names, e.g. [mnist, fashion-mnist]")
        for n in names:
            dataset_spec(n)
        return kind
    dataset_spec(get_typed(stream, "dataset", str, where, "set dataset, e.g. mnist"))
    count = "n_tasks" if kind == "permuted" else "n_subsets"
    n = get_typed(stream, count, int, where, f"set {count} to the number of tasks (>= 1)")
    if n < 1:
        raise MetabnnError(f"{where} has {count}={n}; set {count} to 1 or more")
    seed = get_typed(stream, "seed", int, where, "set seed to an integer, e.g. 0")
    if not 0 <= seed <= MAX_STREAM_SEED:
        raise MetabnnError(f"{where} has seed={seed}; set seed to an integer from 0 to {MAX_STREAM_SEED}")
    return kind


def _example(kind: str) -> str:
    return {"permuted": '{"kind":"permuted","dataset":"mnist","n_tasks":3,"seed":0}',
            "sequence": '{"kind":"sequence","datasets":["mnist","fashion-mnist"]}',
            "stream": '{"kind":"stream","dataset":"fashion-mnist","n_subsets":60,"seed":0}'}[kind]
