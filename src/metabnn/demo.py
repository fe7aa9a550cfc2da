"""``metabnn demo``: the demo preset end to end, beside its non-metaplastic twin.

Training the same network with m = 0 next to the metaplastic one is what makes the effect
visible: the comparison plot shows the first task kept by one and forgotten by the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from metabnn.atomic import atomic_write
from metabnn.train import continual
from metabnn.train.checkpoint import CHECKPOINT
from metabnn.train.config import resolve_config
from metabnn.train.plots import read_run_config

Report = Callable[[Path, dict[str, Any]], None]


def _train_or_resume(config: dict[str, Any], out: Path, progress: bool, report: Report,
                     report_complete: Report | None) -> dict[str, Any]:
    if (out / CHECKPOINT).exists():
        print(f"'{out}' holds an earlier demo run; continuing it (delete it for a fresh run)")
        return continual.resume(out, progress=progress, on_done=report, on_complete=report_complete)
    return continual.train(config, out, progress=progress, on_done=report)


def plot_comparison(meta: dict[str, Any], nometa: dict[str, Any], path: Path, m: Any = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    first = "metaplastic" if m is None else f"metaplastic, m = {m:g}"
    for ax, metrics, title in ((axes[0], meta, first), (axes[1], nometa, "m = 0")):
        epochs = metrics["curves"]["epoch"]
        for j, name in enumerate(metrics["tasks"]):
            pts = [(e, row[j]) for e, row in zip(epochs, metrics["curves"]["acc"]) if row[j] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
        ax.set_title(f"{title}: mean final {metrics['mean_final_acc']:.1f}%")
        ax.set_xlabel("epoch (all tasks)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(0, 100)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{Path(path).resolve().parent.name}: every task's test accuracy, metaplastic vs m = 0", y=1.03)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


DEMO_BOARD = "pynq-z2"
DEMO_TARGET_FPS = 100_000


def export_and_build(run_dir: Path, out: Path, progress: bool) -> dict[str, Any]:
    """Export the demo run (every test image verified) and build it for the Pynq-Z2.

    A finished export or build from an earlier demo is reused: both are only ever renamed
    into place complete, so their presence means they are whole.
    """
    from metabnn.export import export_run
    from metabnn.export.verify import summary_lines
    from metabnn.hw.build import build
    from metabnn.hw.report import table

    export_dir, build_dir = out / "export", out / f"build-{DEMO_BOARD}"
    if not (export_dir / "manifest.json").is_file():
        print(f"\nexporting {run_dir} to QONNX with one threshold set per task (verified on every test image)")
        export_run(run_dir, export_dir, progress=progress)
    print("\n".join(summary_lines(json.loads((export_dir / "verify.json").read_text()))))
    if (build_dir / "report.json").is_file():
        report = json.loads((build_dir / "report.json").read_text())
    else:
        print(f"\nbuilding for {DEMO_BOARD} at {DEMO_TARGET_FPS:,} images/s with FINN")
        report = build(export_dir, build_dir, DEMO_BOARD, DEMO_TARGET_FPS, progress=progress)
    print(table(report))
    print(report["vivado_message"])
    print(f"export: {export_dir}\nbuild:  {build_dir} (report.json, report.png, deploy/)")
    return report


def run_demo(out: Path, device: str | None, progress: bool, compare: bool, report: Report,
             hardware: bool = True, report_complete: Report | None = None) -> None:
    """``report`` follows each training run; ``report_complete`` a run an earlier demo finished."""
    from metabnn.atomic import ensure_writable
    from metabnn.errors import MetabnnError

    overrides = [f"device={device}"] if device else []
    config = resolve_config("demo", None, overrides)
    if out.exists() and not out.is_dir():
        raise MetabnnError(f"--out '{out}' is a file; give a directory for the demo's runs, export and build")
    for d in (out, out / "metaplastic", out / "nometa"):
        if d.is_dir() or d == out:
            ensure_writable(d, "--out")
    widths, stream = config["model"]["widths"], config["data"]["stream"]
    print(f"metabnn demo: BNN {widths}, {stream['n_tasks']} permuted-MNIST tasks, "
          f"metaplasticity m={config['optim']['meta']}")
    meta = _train_or_resume(config, out / "metaplastic", progress, report, report_complete)
    if compare:
        _compare(meta, out, overrides, progress, report, report_complete)
    if hardware:
        export_and_build(out / "metaplastic", out, progress)
        learn_on_simulated_device(out / f"build-{DEMO_BOARD}" / "deploy", progress)


def learn_on_simulated_device(deploy: Path, progress: bool) -> None:
    """After deployment, the accelerator learns one more task: training on the host, only the
    changed words written into the Verilator-simulated accelerator, accuracy measured on it."""
    from metabnn.runtime.cli import print_learn
    from metabnn.runtime.learn import learn
    from metabnn.runtime.package import LEARN_LOG

    path = deploy / LEARN_LOG
    if path.is_file():
        log = json.loads(path.read_text())
        entry = log["updates"][-1]
    else:
        print("\nthe deployed accelerator (Verilator simulation of its RTL) learns one more task; "
              "the hidden weights stay on the host")
        entry = learn(deploy, "next", "sim", progress=progress)
        log = json.loads(path.read_text())
    log["_path"] = str(path)
    print_learn(entry, log)


def _compare(meta: dict[str, Any], out: Path, overrides: list[str], progress: bool,
             report: Report, report_complete: Report | None) -> None:
    print("\nthe same network without metaplasticity (m = 0), for comparison:")
    twin = resolve_config("demo", None, overrides + ["optim.meta=0"])
    nometa = _train_or_resume(twin, out / "nometa", progress, report, report_complete)
    path = out / "comparison.png"
    m = (read_run_config(out / "metaplastic") or {}).get("optim", {}).get("meta")
    plot_comparison(meta, nometa, path, m if isinstance(m, (int, float)) and not isinstance(m, bool) else None)
    first = [row[0] for row in meta["acc"]], [row[0] for row in nometa["acc"]]
    print(f"\ntask 1 accuracy after each task: metaplastic {', '.join(f'{a:.1f}' for a in first[0])}"
          f" | m = 0 {', '.join(f'{a:.1f}' for a in first[1])}")
    print(f"comparison plot: {path}")
