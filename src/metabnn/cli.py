"""The ``metabnn`` command: parses arguments, calls one stage, prints its summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from metabnn.errors import MetabnnError


def _print_matrix(metrics: dict[str, Any]) -> None:
    acc = metrics["acc"]
    print("accuracy matrix (%), row i = after training task i, column j = task j:")
    print("          " + " ".join(f"{'T' + str(j + 1):>6}" for j in range(len(acc[0]))))
    for i, row in enumerate(acc):
        print(f"after T{i + 1:<2} " + " ".join(f"{a:6.2f}" for a in row))
    print(f"mean final accuracy {metrics['mean_final_acc']:.2f}%  BWT {metrics['bwt']:+.2f}  "
          f"training {metrics['samples_per_s']:.0f} samples/s")


def _after_training(run_dir: Path, metrics: dict[str, Any]) -> None:
    from metabnn.train.plots import write_plots

    _print_matrix(metrics)
    plots = write_plots(run_dir, metrics)
    print(f"metrics: {run_dir / 'metrics.json'}")
    print(f"plots:   {', '.join(str(p) for p in plots)}")


def cmd_train(args: argparse.Namespace) -> None:
    from metabnn.train.config import resolve_config
    from metabnn.train import continual

    progress = not args.no_progress
    if args.resume is not None:
        if args.preset or args.config or args.set or args.out:
            raise MetabnnError("--resume takes only the RUN_DIR; the run's own config is reused")
        continual.resume(Path(args.resume), progress=progress, on_done=_after_training)
        return
    if args.out is None:
        raise MetabnnError("--out RUN_DIR is required (where the checkpoint, metrics and plots go)")
    if (args.preset is None) == (args.config is None):
        raise MetabnnError("give exactly one of --preset NAME or --config FILE")
    overrides = list(args.set or [])
    if args.device:
        overrides.append(f"device={args.device}")
    if args.data_dir:
        overrides.append(f"data.dir={args.data_dir}")
    config = resolve_config(args.preset, args.config, overrides)
    continual.train(config, Path(args.out), progress=progress, on_done=_after_training)


def cmd_demo(args: argparse.Namespace) -> None:
    from metabnn.demo import run_demo

    run_demo(Path(args.out), args.device, progress=not args.no_progress,
             compare=not args.no_compare, report=_after_training, hardware=not args.no_hardware)


def cmd_plots(args: argparse.Namespace) -> None:
    import json

    from metabnn.train.metrics import summarize
    from metabnn.train.plots import write_plots

    path = Path(args.run_dir) / "metrics.json"
    try:
        metrics = summarize(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        raise MetabnnError(f"'{path}' is missing or unreadable; give a RUN_DIR made by metabnn train") from None
    for p in write_plots(Path(args.run_dir), metrics):
        print(p)


def cmd_data(args: argparse.Namespace) -> None:
    from metabnn.data import fetch_dataset

    for name in args.names:
        print(f"{name}: {fetch_dataset(name, args.data_dir)}")


def cmd_export(args: argparse.Namespace) -> None:
    from metabnn.export import export_run

    manifest = export_run(Path(args.run_dir), Path(args.out), data_dir=args.data_dir,
                          progress=not args.no_progress, limit=args.limit)
    from metabnn.export.verify import summary_lines

    print("\n".join(summary_lines(json.loads((Path(args.out) / "verify.json").read_text()))))
    print(f"export: {args.out} ({len(manifest['tasks'])} task threshold sets, "
          f"widths {'-'.join(map(str, manifest['widths']))}, {manifest['export_seconds']:.1f} s)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than zero")
    return value


def cmd_build(args: argparse.Namespace) -> None:
    from metabnn.hw.build import build
    from metabnn.hw.report import table

    report = build(Path(args.export_dir), Path(args.out), args.board, args.target_fps, args.clock_ns,
                   progress=not args.no_progress, verify_limit=args.verify_limit, oversize=args.oversize)
    print(table(report))
    print(report["vivado_message"])
    print(f"build: {args.out} (report.json, report.txt, report.png, deploy/)")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes get the same single 'metabnn: error:' line and exit code 2 as bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"metabnn: error: {message} (see {self.prog} --help)\n")


def _task_or_all(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a task index (0, 1, ...) or 'all'") from None


def cmd_sim(args: argparse.Namespace) -> None:
    from metabnn.sim import simulate, simulate_all

    if args.n is not None and args.n < 1:
        raise MetabnnError(f"--n {args.n}: give a positive number of test images (or leave it out for all)")
    progress = not args.no_progress
    if args.task == "all":
        out = simulate_all(Path(args.build_dir), args.n, args.stalls, progress, jobs=args.jobs)
        runs = out["tasks"]
    else:
        out = simulate(Path(args.build_dir), args.task, args.n, args.stalls, progress)
        runs = [out]
    for r in runs:
        print(f"task {r['task']}: {r['agree']}/{r['images']} images agree with PyTorch, accuracy "
              f"{100 * r['accuracy']:.2f}%")
    print(f"{out['cycles_per_image']:.1f} cycles/image (FINN estimate {out['estimate_cycles_per_image']}), "
          f"{out['fps']:,.0f} images/s at {1000 / out['clock_ns']:g} MHz, latency {out['latency_cycles']} cycles; "
          f"simulated {out['sim_cycles_per_s'] / 1e6:.2f} M cycles/s")
    print("layer initiation intervals (cycles/image): "
          + ", ".join(f"{l['name']} {l['ii']:g}" for l in out["layers"]))
    print(f"sim: {Path(args.build_dir) / 'sim.json'}")
    if out["agree"] != out["images"]:
        raise MetabnnError(f"the simulated accelerator disagrees with PyTorch on {out['images'] - out['agree']} "
                           "images (see sim.json mismatched_images): report this bug")


def cmd_synth(args: argparse.Namespace) -> None:
    from metabnn.hw.synth import synth

    out = synth(Path(args.build_dir), progress=not args.no_progress)
    w = max(24, *(len(l["name"]) for l in out["layers"]))
    print(f"{'layer':{w}s} {'source':8s} {'LUT':>8s} {'est. LUT':>9s} {'FINN LUT':>9s} {'FF':>8s} {'CARRY4':>7s} "
          f"{'BRAM18':>7s}")
    for l in out["layers"]:
        src = "yosys" if l["source"] == "yosys" else "estimate"
        print(f"{l['name']:{w}s} {src:8s} {l.get('LUT', 0):8d} {str(l.get('build_lut_estimate') or '-'):>9s} "
              f"{str(l.get('finn_lut_estimate') or '-'):>9s} {l.get('FF', 0):8d} {l.get('CARRY4', 0):7d} "
              f"{l.get('BRAM_18K', 0):7d}")
    t = out["totals"]
    print(f"{'total':{w}s} {'':8s} {t['LUT']:8d} {'':9s} {'':9s} {t['FF']:8d} {t['CARRY4']:7d} {t['BRAM_18K']:7d}"
          f"   fits: {'yes' if out['fits'] else 'NO'}")
    print(f"report: {Path(args.build_dir) / 'report.json'} (key 'synth')")


def build_parser() -> argparse.ArgumentParser:
    from metabnn import __version__

    parser = _Parser(prog="metabnn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"metabnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a binarized network on a sequence of tasks")
    t.add_argument("--preset", help="demo, pmnist-cpu, pmnist-cpu-nometa, pmnist-paper, "
                                    "mnist-fmnist, fmnist-stream")
    t.add_argument("--config", help="JSON config file (keys as in metabnn.train.config.DEFAULTS)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config key, e.g. --set optim.meta=1.35 (repeatable)")
    t.add_argument("--out", help="run directory to create")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument("--device", help="cpu, cuda or auto")
    t.add_argument("--data-dir", help="directory holding the dataset files")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("demo", help="train the demo preset end to end and show its plots")
    d.add_argument("--out", default="demo-run")
    d.add_argument("--device")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--no-compare", action="store_true",
                   help="skip the m = 0 twin run and the comparison plot")
    d.add_argument("--no-hardware", action="store_true", help="stop after training (no export and FINN build)")
    d.set_defaults(func=cmd_demo)

    p = sub.add_parser("plots", help="redraw a run's PNG plots from its metrics.json")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_plots)

    e = sub.add_parser("export", help="export a trained run to QONNX with per-task thresholds, verified")
    e.add_argument("run_dir", help="RUN_DIR made by metabnn train")
    e.add_argument("--out", required=True, help="EXPORT_DIR to create")
    e.add_argument("--data-dir", help="directory holding the dataset files")
    e.add_argument("--limit", type=int, help="verify only the first N test images of each task (default: all)")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_export)

    from metabnn.hw.boards import BOARDS

    b = sub.add_parser("build", help="compile an export with FINN for a PYNQ/Zynq board")
    b.add_argument("export_dir", help="EXPORT_DIR made by metabnn export")
    b.add_argument("--board", required=True, help=", ".join(BOARDS))
    b.add_argument("--target-fps", type=_positive_float, required=True, help="images per second to reach")
    b.add_argument("--clock-ns", type=_positive_float, default=10.0, help="clock period (default 10 = 100 MHz)")
    b.add_argument("--out", required=True, help="BUILD_DIR to create")
    b.add_argument("--verify-limit", type=int,
                   help="check only the first N test images of each task on the HW graph (default: all)")
    b.add_argument("--oversize", action="store_true",
                   help="build the folding for --target-fps even if it exceeds the board (for 'metabnn sim' "
                        "and 'metabnn synth' studies; no bitstream)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_build)

    m = sub.add_parser("sim", help="cycle-accurate Verilator simulation of a build's RTL on the test sets")
    m.add_argument("build_dir", help="BUILD_DIR made by metabnn build")
    m.add_argument("--task", type=_task_or_all, default=0, help="task index (from 0) or 'all' (default 0)")
    m.add_argument("--n", type=int, help="only the first N test images (default: all)")
    m.add_argument("--stalls", action="store_true", help="random stalls on input and output")
    m.add_argument("--jobs", type=int, help="with --task all: simulations at once (default: one per CPU)")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=cmd_sim)

    y = sub.add_parser("synth", help="yosys synth_xilinx of a build's RTL: LUT/FF/CARRY/BRAM into report.json")
    y.add_argument("build_dir", help="BUILD_DIR made by metabnn build")
    y.add_argument("--no-progress", action="store_true")
    y.set_defaults(func=cmd_synth)

    from metabnn.runtime.cli import add_runtime_parsers

    add_runtime_parsers(sub)

    g = sub.add_parser("data", help="dataset utilities")
    gsub = g.add_subparsers(dest="data_command", required=True)
    f = gsub.add_parser("fetch", help="put a dataset into the local cache (verified)")
    f.add_argument("names", nargs="+", help="mnist, fashion-mnist, cifar10, cifar100")
    f.add_argument("--data-dir")
    f.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MetabnnError as e:
        print(f"metabnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metabnn: interrupted; the last completed epoch is saved (resume with "
              "'metabnn train --resume RUN_DIR')", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
