"""The ``metabnn`` command: parses arguments, calls one stage, prints its summary."""

from __future__ import annotations

import argparse
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
             compare=not args.no_compare, report=_after_training)


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


def build_parser() -> argparse.ArgumentParser:
    from metabnn import __version__

    parser = argparse.ArgumentParser(prog="metabnn", description=__doc__)
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
    d.set_defaults(func=cmd_demo)

    p = sub.add_parser("plots", help="redraw a run's PNG plots from its metrics.json")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_plots)

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
