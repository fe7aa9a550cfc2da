"""The figures derived from an accuracy matrix (no torch import: plots and reports use them)."""

from __future__ import annotations

from typing import Any


def mean_final_accuracy(acc: list[list[float]]) -> float:
    last = [a for a in acc[-1] if a is not None]  # None: a task added later (append_tasks)
    return sum(last) / len(last) if last else 0.0


def backward_transfer(acc: list[list[float]]) -> float:
    """BWT (Lopez-Paz & Ranzato 2017): mean of acc[T-1][j] - acc[j][j] over j < T-1."""
    t = len(acc)
    if t < 2:
        return 0.0
    return sum(acc[t - 1][j] - acc[j][j] for j in range(t - 1)) / (t - 1)


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """Add the derived figures to a metrics dict that holds ``acc``."""
    if metrics.get("acc"):
        metrics["mean_final_acc"] = mean_final_accuracy(metrics["acc"])
        metrics["bwt"] = backward_transfer(metrics["acc"])
    secs = metrics.get("train_seconds", 0.0)
    metrics["samples_per_s"] = metrics.get("train_samples", 0) / secs if secs > 0 else 0.0
    return metrics
