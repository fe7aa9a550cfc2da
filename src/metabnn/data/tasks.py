"""Continual-learning task streams built from datasets.

A stream config (a dict) becomes a list of ``Task``s; each task carries a JSON-able
``spec`` from which ``task_from_spec`` rebuilds exactly the same tensors in a later
stage. Permuted tasks record the permutation itself, not only its seed, so a change
in torch's RNG cannot silently change a task between training and deployment.

Tensors are flattened to [N, D] uint8. Tasks may share tensors (e.g. the test set of
every subset in a "stream"), so callers must not modify them in place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metabnn.data.catalog import dataset_spec
from metabnn.data.dataset import ArrayDataset, load_dataset
from metabnn.data.streams import check_stream, get_typed, stream_kind
from metabnn.errors import MetabnnError

@dataclass
class Task:
    name: str
    train_x: torch.Tensor  # uint8 [N, D], flattened and (for permuted tasks) permuted
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor  # uint8 [M, D]
    test_y: torch.Tensor
    num_classes: int
    spec: dict


def permutation(seed: int, n: int) -> torch.Tensor:
    """A deterministic permutation of range(n) (int64) from ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(int(n), generator=g)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _indices_digest(idx: torch.Tensor) -> str:
    return hashlib.sha256(idx.to(torch.int64).numpy().astype("<i8").tobytes()).hexdigest()


def _permuted_task(ds: ArrayDataset, spec: dict, perm: torch.Tensor) -> Task:
    return Task(
        name=spec["name"],
        train_x=_flat(ds.train_x)[:, perm].contiguous(),
        train_y=ds.train_y,
        test_x=_flat(ds.test_x)[:, perm].contiguous(),
        test_y=ds.test_y,
        num_classes=ds.num_classes,
        spec=spec,
    )


def _whole_task(ds: ArrayDataset, spec: dict) -> Task:
    return Task(spec["name"], _flat(ds.train_x), ds.train_y, _flat(ds.test_x), ds.test_y, ds.num_classes, spec)


def _subset_order(ds: ArrayDataset, seed: int, n_subsets: int) -> tuple[torch.Tensor, ...]:
    n = ds.train_x.shape[0]
    if not 1 <= n_subsets <= n:
        raise MetabnnError(f"data.stream.n_subsets={n_subsets} but {ds.name} has {n} training samples; use 1..{n}")
    return torch.tensor_split(permutation(seed, n), n_subsets)


def _subset_task(ds: ArrayDataset, spec: dict, idx: torch.Tensor) -> Task:
    return Task(
        name=spec["name"],
        train_x=_flat(ds.train_x)[idx],
        train_y=ds.train_y[idx],
        test_x=_flat(ds.test_x),
        test_y=ds.test_y,
        num_classes=ds.num_classes,
        spec=spec,
    )


def _dim(ds: ArrayDataset) -> int:
    return int(_flat(ds.train_x).shape[1])


def build_tasks(stream: dict, data_dir: str | Path | None = None) -> list[Task]:
    """The tasks a stream config describes (kinds: permuted, sequence, stream)."""
    where = "data.stream"
    kind = check_stream(stream, where)
    if kind == "permuted":
        name = stream["dataset"]
        n_tasks = stream["n_tasks"]
        seed = stream["seed"]
        ds = load_dataset(name, data_dir)
        short, dim = dataset_spec(ds.name).short, _dim(ds)
        tasks = []
        for k in range(n_tasks):
            perm = permutation(seed + k, dim)
            spec = {
                "kind": "permuted", "name": f"p{short}-{k + 1}", "dataset": ds.name, "index": k,
                "seed": seed + k, "stream_seed": seed, "dim": dim, "permutation": perm.tolist(),
            }
            tasks.append(_permuted_task(ds, spec, perm))
        return tasks
    if kind == "sequence":
        sets = [load_dataset(n, data_dir) for n in stream["datasets"]]
        first = sets[0]
        for ds in sets[1:]:
            if _dim(ds) != _dim(first) or ds.num_classes != first.num_classes:
                raise MetabnnError(
                    f"sequence datasets differ: {first.name} has {_dim(first)} inputs and {first.num_classes} classes, "
                    f"{ds.name} has {_dim(ds)} and {ds.num_classes}; a sequence needs datasets of the same shape "
                    "(e.g. mnist and fashion-mnist)"
                )
        return [
            _whole_task(ds, {"kind": "sequence", "name": ds.name, "dataset": ds.name, "index": i, "dim": _dim(ds)})
            for i, ds in enumerate(sets)
        ]
    name, n_subsets, seed = stream["dataset"], stream["n_subsets"], stream["seed"]
    ds = load_dataset(name, data_dir)
    short, dim = dataset_spec(ds.name).short, _dim(ds)
    tasks = []
    for i, idx in enumerate(_subset_order(ds, seed, n_subsets)):
        spec = {
            "kind": "stream", "name": f"{short}-subset-{i + 1}", "dataset": ds.name, "subset": i,
            "n_subsets": n_subsets, "seed": seed, "dim": dim, "indices_sha256": _indices_digest(idx),
        }
        tasks.append(_subset_task(ds, spec, idx))
    return tasks


def _valid_permutation(values: Any, dim: int) -> torch.Tensor:
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise MetabnnError("task spec 'permutation' must be a list of integers; rebuild the task list from the run's config")
    perm = torch.tensor(values, dtype=torch.int64)
    if perm.numel() != dim or not torch.equal(torch.sort(perm).values, torch.arange(dim)):
        raise MetabnnError(
            f"task spec 'permutation' is not a permutation of range({dim}) ({perm.numel()} entries); "
            "the spec is damaged or for another dataset: rebuild it from the run's config"
        )
    return perm


def task_from_spec(spec: dict, data_dir: str | Path | None = None) -> Task:
    """Rebuild exactly the task ``spec`` (a ``Task.spec``, possibly via JSON) describes."""
    where = "task spec"
    kind = stream_kind(spec, where)
    fix = "use a task spec as 'metabnn train' records it (the run's tasks, e.g. an export's tasks.json)"
    ds = load_dataset(get_typed(spec, "dataset", str, where, fix), data_dir)
    dim = _dim(ds)
    if "dim" in spec and spec["dim"] != dim:
        raise MetabnnError(f"{where} says dim {spec['dim']} but {ds.name} has {dim} inputs; {fix}")
    name = get_typed(spec, "name", str, where, fix)
    out = dict(spec)
    if kind == "permuted":
        if "permutation" not in spec:
            raise MetabnnError(f"{where} '{name}' lacks 'permutation'; {fix}")
        return _permuted_task(ds, out, _valid_permutation(spec["permutation"], dim))
    if kind == "sequence":
        return _whole_task(ds, out)
    subset = get_typed(spec, "subset", int, where, fix)
    n_subsets = get_typed(spec, "n_subsets", int, where, fix)
    seed = get_typed(spec, "seed", int, where, fix)
    parts = _subset_order(ds, seed, n_subsets)
    if not 0 <= subset < n_subsets:
        raise MetabnnError(f"{where} '{name}' has subset {subset} outside 0..{n_subsets - 1}; {fix}")
    idx = parts[subset]
    digest = spec.get("indices_sha256")
    if digest is not None and digest != _indices_digest(idx):
        raise MetabnnError(
            f"{where} '{name}': the subset drawn now differs from the recorded one (torch's RNG changed?); "
            "retrain with this torch version or use the torch version that made the run"
        )
    return _subset_task(ds, out, idx)
