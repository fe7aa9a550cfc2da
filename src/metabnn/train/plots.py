"""PNG plots of a run, made from metrics.json alone (so they can be redrawn at any time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metabnn.atomic import atomic_write


def _save(fig: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def plot_curves(metrics: dict[str, Any], path: Path) -> None:
    """Each task's test accuracy over the whole training (the paper's Fig. 2 style)."""
    epochs = metrics["curves"]["epoch"]
    accs = metrics["curves"]["acc"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for j, name in enumerate(metrics["tasks"]):
        xs = [e for e, row in zip(epochs, accs) if row[j] is not None]
        ys = [row[j] for row in accs if row[j] is not None]
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, label=name)
    per_task = metrics["epochs_per_task"]
    for k in range(1, len(metrics["acc"])):
        ax.axvline(k * per_task + 0.5, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("epoch (all tasks)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy of every task during continual training")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    _save(fig, path)


def plot_accuracy_matrix(metrics: dict[str, Any], path: Path) -> None:
    acc = np.array(metrics["acc"], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * acc.shape[1], 1.0 + 0.6 * acc.shape[0]))
    im = ax.imshow(acc, vmin=0, vmax=100, cmap="viridis")
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            ax.text(j, i, f"{acc[i, j]:.1f}", ha="center", va="center", fontsize=8,
                    color="white" if acc[i, j] < 60 else "black")
    ax.set_xticks(range(acc.shape[1]), [f"T{j + 1}" for j in range(acc.shape[1])])
    ax.set_yticks(range(acc.shape[0]), [f"after T{i + 1}" for i in range(acc.shape[0])])
    ax.set_xlabel("evaluated task")
    ax.set_title(f"Accuracy matrix (mean final {metrics.get('mean_final_acc', 0):.2f}%)")
    fig.colorbar(im, ax=ax, label="%")
    _save(fig, path)


def plot_histograms(metrics: dict[str, Any], path: Path) -> None:
    hists = metrics["hidden_hist"]
    layers = list(hists[0].keys()) if hists else []
    lo, hi = metrics["hist_range"]
    fig, axes = plt.subplots(1, max(len(layers), 1), figsize=(4 * max(len(layers), 1), 3.2),
                             squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for t, h in enumerate(hists):
            counts = np.array(h[layer], dtype=float)
            edges = np.linspace(lo, hi, len(counts) + 1)
            ax.stairs(counts, edges, label=f"after T{t + 1}")
        ax.set_yscale("log")
        ax.set_title(f"hidden weights W_h, layer {layer}")
        ax.set_xlabel("W_h")
    axes[0][0].set_ylabel("count")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def plot_flips(metrics: dict[str, Any], path: Path) -> None:
    flips = metrics["flips"]
    layers = list(flips[0].keys()) if flips else []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(layers), 1)
    for k, layer in enumerate(layers):
        xs = np.arange(len(flips)) + k * width
        ax.bar(xs, [100 * f[layer] for f in flips], width=width, label=layer)
    ax.set_xticks(np.arange(len(flips)) + 0.4 - width / 2, [f"T{t + 1}" for t in range(len(flips))])
    ax.set_ylabel("binary weights flipped (%)")
    ax.set_title("Sign flips of the binary weights during each task")
    ax.legend(fontsize=8)
    _save(fig, path)


def write_plots(run_dir: Path, metrics: dict[str, Any]) -> list[Path]:
    out = run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fn in (("accuracy_curves", plot_curves), ("accuracy_matrix", plot_accuracy_matrix),
                     ("hidden_weight_histograms", plot_histograms), ("flips", plot_flips)):
        path = out / f"{name}.png"
        if metrics.get("acc"):
            fn(metrics, path)
            paths.append(path)
    return paths
