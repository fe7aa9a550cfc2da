"""CIFAR-10/100 "python version" pickle batches.

Each batch is a pickled dict with ``data`` (uint8 [n, 3072], channel-major RGB rows) and
``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100). The pickles were written by
Python 2, so keys may be bytes and the strings need latin1 decoding.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from metabnn.errors import MetabnnError

LAYOUTS: dict[str, dict[str, object]] = {
    "cifar10": {
        "dir": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
    },
    "cifar100": {
        "dir": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
    },
}


def batch_dir(directory: str | Path, variant: str) -> Path | None:
    """The directory holding ``variant``'s batches: ``directory`` itself or its standard subfolder."""
    layout = LAYOUTS[variant]
    directory = Path(directory)
    for cand in (directory, directory / str(layout["dir"])):
        if all((cand / f).is_file() for f in [*layout["train"], *layout["test"]]):  # type: ignore[misc]
            return cand
    return None


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            # The official batches are plain dicts of arrays/lists; checksums are
            # verified before this for anything metabnn fetched itself.
            entry = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise MetabnnError(f"{path} is not a CIFAR pickle batch ({e}); delete it and fetch the dataset again") from None
    if not isinstance(entry, dict):
        raise MetabnnError(f"{path} is not a CIFAR pickle batch (holds {type(entry).__name__}); delete it and fetch the dataset again")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise MetabnnError(
            f"{path} lacks 'data' or '{label_key}' (keys: {sorted(entry)}); point --data-dir at the right CIFAR variant"
        )
    data = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise MetabnnError(
            f"{path} has data of shape {data.shape} and {len(labels)} labels, expected [n, 3072] and n; "
            "delete it and fetch the dataset again"
        )
    return data, labels


def _read_split(directory: Path, names: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_read_batch(directory / n, label_key) for n in names]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(data), torch.from_numpy(labels)


def read_cifar(
    directory: str | Path, variant: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x uint8 [N,3,32,32], train_y int64, test_x, test_y) from ``directory`` or its standard subfolder."""
    if variant not in LAYOUTS:
        raise MetabnnError(f"unknown CIFAR variant {variant!r}; use 'cifar10' or 'cifar100'")
    found = batch_dir(directory, variant)
    if found is None:
        layout = LAYOUTS[variant]
        names = ", ".join([*layout["train"], *layout["test"]])  # type: ignore[misc]
        raise MetabnnError(
            f"{directory} holds no {variant} batches ({names}) nor a {layout['dir']}/ folder; "
            f"extract the official {variant} python archive there"
        )
    layout = LAYOUTS[variant]
    key = str(layout["label_key"])
    train_x, train_y = _read_split(found, list(layout["train"]), key)  # type: ignore[arg-type]
    test_x, test_y = _read_split(found, list(layout["test"]), key)  # type: ignore[arg-type]
    return train_x, train_y, test_x, test_y
