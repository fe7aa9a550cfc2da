"""Datasets (IDX, CIFAR pickle batches, sklearn digits), their offline sources, and task streams.

Names are imported on first use, so that checking a config (``metabnn.data.streams``,
``metabnn.data.catalog``) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DATASETS": "metabnn.data.catalog",
    "ArrayDataset": "metabnn.data.dataset",
    "fetch_dataset": "metabnn.data.dataset",
    "load_dataset": "metabnn.data.dataset",
    "data_cache_dir": "metabnn.data.sources",
    "Task": "metabnn.data.tasks",
    "build_tasks": "metabnn.data.tasks",
    "permutation": "metabnn.data.tasks",
    "task_from_spec": "metabnn.data.tasks",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'metabnn.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
