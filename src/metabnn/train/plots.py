"""PNG plots of a run, made from metrics.json alone (so they can be redrawn at any time).

Every figure's title names the run (its directory) and its m, so the PNGs of two runs side
by side cannot be mistaken for one another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from metabnn.atomic import atomic_write  # noqa: E402
from metabnn.train.names import layer_names  # noqa: E402
from metabnn.train.summary import summarize  # noqa: E402

PLOTS = ("accuracy_curves", "accuracy_matrix", "hidden_weight_histograms", "flips")


def _save(fig: plt.Figure, path: Path) -> None:
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def run_label(run_dir: Path, config: dict[str, Any] | None) -> str:
    """'NAME, m = 10' (or 'NAME, float MLP'): what tells one run's figures from another's."""
    name = Path(run_dir).resolve().name
    if not isinstance(config, dict):
        return name
    model, optim = config.get("model") or {}, config.get("optim") or {}
    if model.get("kind") == "float":
        return f"{name}, float MLP"
    meta = optim.get("meta")
    if isinstance(meta, list):
        return f"{name}, m = {' / '.join(f'{m:g}' for m in meta)}"
    if isinstance(meta, (int, float)) and not isinstance(meta, bool):
        return f"{name}, m = {meta:g}"
    return name


def _layers(metrics: dict[str, Any], key: str, config: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """The per-layer keys of metrics[key] in layer order, and their readable names."""
    rows = metrics[key]
    keys = list(rows[0].keys()) if rows else []
    widths = ((config or {}).get("model") or {}).get("widths")
    return keys, layer_names(len(keys), widths if isinstance(widths, list) else None)


def plot_curves(metrics: dict[str, Any], path: Path, label: str = "") -> None:
    """Each task's test accuracy over the whole training (the paper's Fig. 2 style)."""
    epochs = metrics["curves"]["epoch"]
    accs = metrics["curves"]["acc"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for j, name in enumerate(metrics["tasks"]):
        xs = [e for e, row in zip(epochs, accs) if row[j] is not None]
        ys = [row[j] for row in accs if row[j] is not None]
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, label=f"T{j + 1} ({name})")
    per_task = metrics["epochs_per_task"]
    for k in range(1, len(metrics["acc"])):
        ax.axvline(k * per_task + 0.5, color="grey", lw=0.6, ls="--")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (all tasks)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{label}: test accuracy of every task during continual training")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    _save(fig, path)


def plot_accuracy_matrix(metrics: dict[str, Any], path: Path, label: str = "") -> None:
    acc = np.array([[np.nan if a is None else a for a in row] for row in metrics["acc"]], dtype=float)
    fig, ax = plt.subplots(figsize=(2.5 + 0.75 * acc.shape[1], 1.4 + 0.6 * acc.shape[0]))
    im = ax.imshow(acc, vmin=0, vmax=100, cmap="viridis")
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            if not np.isnan(acc[i, j]):
                ax.text(j, i, f"{acc[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if acc[i, j] < 60 else "black")
    ax.set_xticks(range(acc.shape[1]), [f"T{j + 1}" for j in range(acc.shape[1])])
    ax.set_yticks(range(acc.shape[0]), [f"after T{i + 1}" for i in range(acc.shape[0])])
    ax.set_xlabel("evaluated task")
    ax.set_title(f"{label}\naccuracy matrix (mean final {metrics.get('mean_final_acc', 0):.2f}%)", fontsize=10)
    fig.colorbar(im, ax=ax, label="%")
    _save(fig, path)


def magnitude_histogram(counts: list[int], lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Fold a histogram of W_h over [lo, hi] (lo = -hi, an even number of bins) into one of |W_h|."""
    c = np.asarray(counts, dtype=float)
    if lo != -hi or len(c) % 2:
        raise ValueError(f"histogram over [{lo}, {hi}] with {len(c)} bins is not symmetric about 0")
    half = len(c) // 2
    return c[half:] + c[:half][::-1], np.linspace(0.0, hi, half + 1)


def plot_histograms(metrics: dict[str, Any], path: Path, label: str = "",
                    config: dict[str, Any] | None = None) -> None:
    """|W_h| per layer after each task: consolidation moves weights away from zero."""
    hists = metrics["hidden_hist"]
    keys, names = _layers(metrics, "hidden_hist", config)
    lo, hi = metrics["hist_range"]
    n = max(len(keys), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, key, name in zip(axes[0], keys, names):
        for t, h in enumerate(hists):
            counts, edges = magnitude_histogram(h[key], lo, hi)
            ax.stairs(counts, edges, label=f"after T{t + 1}")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"|W_h| (last bin: >= {hi:g})")
    axes[0][0].set_ylabel("hidden weights")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{label}: magnitude of the hidden weights after each task", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def plot_flips(metrics: dict[str, Any], path: Path, label: str = "", config: dict[str, Any] | None = None) -> None:
    flips = metrics["flips"]
    keys, names = _layers(metrics, "flips", config)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / max(len(keys), 1)
    for k, (key, name) in enumerate(zip(keys, names)):
        xs = np.arange(len(flips)) + k * width
        ax.bar(xs, [100 * f[key] for f in flips], width=width, label=name)
    ax.set_xticks(np.arange(len(flips)) + 0.4 - width / 2, [f"T{t + 1}" for t in range(len(flips))])
    ax.set_xlabel("task during which the weights flipped")
    ax.set_ylabel("binary weights flipped (%)")
    ax.set_title(f"{label}: sign flips of the binary weights during each task", fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, path)


def read_run_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's config.json, or None: plots only use it for names and titles."""
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def write_plots(run_dir: Path, metrics: dict[str, Any], config: dict[str, Any] | None = None) -> list[Path]:
    """Draw every plot into ``run_dir/plots``; ``config`` defaults to the run's config.json."""
    config = read_run_config(run_dir) if config is None else config
    label = run_label(run_dir, config)
    out = run_dir / "plots"
    if not metrics.get("acc"):
        return []
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PLOTS:
        path = out / f"{name}.png"
        if name == "accuracy_curves":
            plot_curves(metrics, path, label)
        elif name == "accuracy_matrix":
            plot_accuracy_matrix(metrics, path, label)
        elif name == "hidden_weight_histograms":
            plot_histograms(metrics, path, label, config)
        else:
            plot_flips(metrics, path, label, config)
        paths.append(path)
    return paths


def _check_metrics(m: Any) -> dict[str, Any]:
    """``m`` if it has the shape write_plots reads, else ValueError naming what is wrong."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    need(isinstance(m, dict), "not a JSON object")
    tasks, acc = m.get("tasks"), m.get("acc")
    need(isinstance(tasks, list) and all(isinstance(t, str) for t in tasks), "'tasks' is not a list of names")
    need(isinstance(acc, list) and all(isinstance(r, list) and len(r) == len(tasks)
                                       and all(a is None or number(a) for a in r) for r in acc),
         "'acc' is not a matrix with one column per task")
    curves = m.get("curves")
    need(isinstance(curves, dict) and isinstance(curves.get("epoch"), list) and isinstance(curves.get("acc"), list)
         and len(curves["epoch"]) == len(curves["acc"])
         and all(isinstance(r, list) and len(r) == len(tasks) for r in curves["acc"]), "'curves' is malformed")
    need(_is_int(m.get("epochs_per_task")), "'epochs_per_task' is not an integer")
    rng = m.get("hist_range")
    need(isinstance(rng, list) and len(rng) == 2 and all(number(v) for v in rng), "'hist_range' is malformed")
    for key in ("flips", "hidden_hist"):
        rows = m.get(key)
        need(isinstance(rows, list) and len(rows) == len(acc) and all(isinstance(r, dict) for r in rows)
             and all(list(r) == list(rows[0]) for r in rows), f"'{key}' is not one entry per finished task")
    need(all(number(v) for r in m["flips"] for v in r.values()), "'flips' holds non-numbers")
    need(all(isinstance(h, list) and all(number(c) for c in h) for r in m["hidden_hist"] for h in r.values()),
         "'hidden_hist' holds non-counts")
    return m


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def plots_metrics(run_dir: Path) -> dict[str, Any]:
    """What ``metabnn plots`` draws: metrics.json, or the copy in the (verified) checkpoint if it is damaged."""
    import sys

    from metabnn.errors import MetabnnError
    from metabnn.train.rundir import CHECKPOINT

    run_dir = Path(run_dir)
    fix = "give a RUN_DIR made by 'metabnn train'"
    if not run_dir.is_dir():
        raise MetabnnError(f"'{run_dir}' is {'a file' if run_dir.exists() else 'missing'}, not a run directory; {fix}")
    path = run_dir / "metrics.json"
    try:
        return summarize(_check_metrics(json.loads(path.read_text())))
    except FileNotFoundError:
        why = "missing"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = f"damaged: {e}" if isinstance(e, ValueError) and not isinstance(e, json.JSONDecodeError) else \
            f"unreadable ({type(e).__name__})"
    if not (run_dir / CHECKPOINT).is_file():
        raise MetabnnError(f"'{path}' is {why}; {fix}")
    from metabnn.train.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir)
    try:
        metrics = summarize(_check_metrics(dict(state["metrics"])))
    except (KeyError, TypeError, ValueError) as e:
        raise MetabnnError(f"'{path}' is {why}, and the checkpoint's copy is too ({e}); train the run again") from None
    print(f"metabnn: warning: '{path}' is {why}; plotting the metrics saved in {CHECKPOINT}", file=sys.stderr)
    return metrics


def require_writable_plots(run_dir: Path) -> None:
    """Refuse, before drawing anything, a run whose plots/ cannot be written."""
    from metabnn.atomic import ensure_writable
    from metabnn.errors import MetabnnError

    target = Path(run_dir) / "plots"
    try:
        ensure_writable(target if target.exists() else Path(run_dir), "RUN_DIR")
    except MetabnnError as e:
        raise MetabnnError(f"{str(e).split('; choose', 1)[0]}; make it writable, or copy the run somewhere "
                           "writable and plot that") from None

