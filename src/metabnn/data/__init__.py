"""Datasets (IDX, CIFAR pickle batches, sklearn digits), their offline sources, and task streams."""

from metabnn.data.catalog import DATASETS
from metabnn.data.dataset import ArrayDataset, fetch_dataset, load_dataset
from metabnn.data.sources import data_cache_dir
from metabnn.data.tasks import Task, build_tasks, permutation, task_from_spec

__all__ = [
    "ArrayDataset",
    "DATASETS",
    "Task",
    "build_tasks",
    "data_cache_dir",
    "fetch_dataset",
    "load_dataset",
    "permutation",
    "task_from_spec",
]
