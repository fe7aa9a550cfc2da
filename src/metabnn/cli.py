"""The ``metabnn`` command: parses arguments, calls one stage, prints its summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from metabnn.errors import MetabnnError


def _print_matrix(metrics: dict[str, Any]) -> None:
    acc = metrics["acc"]
    print("accuracy matrix (%), row i = after training task i, column j = task j:")
    print("          " + " ".join(f"{'T' + str(j + 1):>6}" for j in range(len(acc[0]))))
    for i, row in enumerate(acc):
        print(f"after T{i + 1:<2} " + " ".join("     -" if a is None else f"{a:6.2f}" for a in row))
    print(f"mean final accuracy {metrics['mean_final_acc']:.2f}%  BWT {metrics['bwt']:+.2f}  "
          f"training {metrics['samples_per_s']:.0f} samples/s")


def _after_training(run_dir: Path, metrics: dict[str, Any]) -> None:
    from metabnn.train.plots import write_plots

    _print_matrix(metrics)
    plots = write_plots(run_dir, metrics)
    print(f"metrics: {run_dir / 'metrics.json'}")
    print(f"plots:   {', '.join(str(p) for p in plots)}")


def _report_complete(run_dir: Path, metrics: dict[str, Any]) -> None:
    """A finished run asked to resume: its results again, nothing written."""
    from metabnn.train.plots import PLOTS

    _print_matrix(metrics)
    print(f"metrics: {run_dir / 'metrics.json'}")
    if all((run_dir / "plots" / f"{name}.png").is_file() for name in PLOTS):
        print(f"plots:   {run_dir / 'plots'}")
    else:
        print(f"plots:   missing; draw them with: metabnn plots {run_dir}")


def _resume_message(run_dir: Path) -> str:
    return (f"interrupted; '{run_dir}' keeps every completed epoch: continue with "
            f"'metabnn train --resume {run_dir}'")


def cmd_train(args: argparse.Namespace) -> None:
    # Every check that needs no torch comes first, so that bad input is refused at once.
    from metabnn.train.config import resolve_config
    from metabnn.train.rundir import check_has_checkpoint, prepare_run_dir

    progress = not args.no_progress
    if args.resume is not None:
        given = [flag for flag, v in (("--preset", args.preset), ("--config", args.config), ("--set", args.set),
                                      ("--out", args.out), ("--device", args.device),
                                      ("--data-dir", args.data_dir)) if v]
        if given:
            raise MetabnnError(f"--resume takes only the RUN_DIR (and --no-progress), not {', '.join(given)}; the "
                               "run's own config is reused: drop them, or train a new run with --out")
        run_dir = Path(args.resume)
        prepare_run_dir(run_dir, resume=True)
        check_has_checkpoint(run_dir)
        from metabnn.train import continual

        args.interrupted = _resume_message(run_dir)
        continual.resume(run_dir, progress=progress, on_done=_after_training, on_complete=_report_complete)
        return
    if args.out is None:
        raise MetabnnError("--out RUN_DIR is required (where the checkpoint, metrics and plots go)")
    if (args.preset is None) == (args.config is None):
        raise MetabnnError("give exactly one of --preset NAME or --config FILE")
    overrides = list(args.set or [])
    if args.device:
        overrides.append(f"device={args.device}")
    if args.data_dir:
        overrides.append(f"data.dir={json.dumps(args.data_dir)}")
    config = resolve_config(args.preset, args.config, overrides)
    prepare_run_dir(Path(args.out), resume=False)
    from metabnn.train import continual

    args.interrupted = "interrupted before the run directory was created; nothing was written"

    def started(run_dir: Path) -> None:
        args.interrupted = _resume_message(run_dir)

    continual.train(config, Path(args.out), progress=progress, on_done=_after_training, on_started=started)


def cmd_demo(args: argparse.Namespace) -> None:
    from metabnn.demo import run_demo

    out = Path(args.out)
    args.interrupted = (f"interrupted; every finished stage and completed training epoch in '{out}' is kept: "
                        f"run 'metabnn demo --out {out}' again to continue")
    run_demo(out, args.device, progress=not args.no_progress, compare=not args.no_compare,
             report=_after_training, hardware=not args.no_hardware, report_complete=_report_complete)


def cmd_plots(args: argparse.Namespace) -> None:
    from metabnn.train.plots import plots_metrics, require_writable_plots, write_plots

    run_dir = Path(args.run_dir)
    metrics = plots_metrics(run_dir)
    require_writable_plots(run_dir)
    paths = write_plots(run_dir, metrics)
    if not paths:
        print(f"'{run_dir}' has not finished a task yet; there is nothing to plot")
    for p in paths:
        print(p)


def cmd_data(args: argparse.Namespace) -> None:
    from metabnn.data.catalog import dataset_spec

    for name in args.names:
        dataset_spec(name)  # every name checked before anything is fetched
    from metabnn.data import fetch_dataset

    for name in args.names:
        print(f"{name}: {fetch_dataset(name, args.data_dir)}")


def cmd_export(args: argparse.Namespace) -> None:
    from metabnn.export.request import check_export_request

    check_export_request(Path(args.run_dir), Path(args.out), args.data_dir, args.limit)
    from metabnn.export import export_run
    from metabnn.export.verify import summary_lines

    manifest = export_run(Path(args.run_dir), Path(args.out), data_dir=args.data_dir,
                          progress=not args.no_progress, limit=args.limit)
    print("\n".join(summary_lines(json.loads((Path(args.out) / "verify.json").read_text()))))
    print(f"export: {args.out} ({len(manifest['tasks'])} task threshold sets, "
          f"widths {'-'.join(map(str, manifest['widths']))}, {manifest['export_seconds']:.1f} s)")
    if not manifest["source"]["run_complete"]:
        print(f"note: the run has not finished all its tasks; the export holds the {len(manifest['tasks'])} "
              "finished ones")


def _existing_dir(text: str) -> str:
    if not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is not a directory; give the directory holding the dataset "
                                         "files, or leave --data-dir out to use the cache")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of test images per task")
    return value


def _device(text: str) -> str:
    import re

    if text not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a device; use cpu, cuda, cuda:N or auto")
    return text


def _positive_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number; give a number greater than zero") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number; give a number greater than zero")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than zero")
    return value


def cmd_build(args: argparse.Namespace) -> None:
    from metabnn.hw.build import build
    from metabnn.hw.report import table

    report = build(Path(args.export_dir), Path(args.out), args.board, args.target_fps, args.clock_ns,
                   progress=not args.no_progress, verify_limit=args.verify_limit, oversize=args.oversize,
                   on_interrupt=lambda message: setattr(args, "interrupted", message))
    print(table(report))
    print(report["vivado_message"])
    print(f"build: {args.out} (report.json, report.txt, report.png, deploy/; FINN's own output in build.log)")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes get the same single 'metabnn: error:' line and exit code 2 as bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"metabnn: error: {message} (see {self.prog} --help)\n")


def _task_or_all(text: str) -> str:
    """``--task`` as typed: 'all', a number as printed (1 = T1) or a name; checked against the build."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("give a task number (1 = T1), a task name or 'all'")
    return "all" if text.lower() == "all" else text


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give 1 or more")
    return value


def cmd_sim(args: argparse.Namespace) -> None:
    from metabnn.sim import procs, simulate, simulate_all
    from metabnn.sim.builddir import parse_task, read_build, task_label, task_names

    build_dir = Path(args.build_dir)
    progress = not args.no_progress
    with procs.terminate_as_interrupt():
        if args.task == "all":
            out = simulate_all(build_dir, args.n, args.stalls, progress, jobs=args.jobs)
            runs = out["tasks"]
        else:
            task = parse_task(build_dir, args.task)
            if args.jobs is not None:
                raise MetabnnError(f"--jobs runs several tasks at once, and --task {args.task} is one task; "
                                   "drop --jobs, or use --task all")
            out = simulate(build_dir, task, args.n, args.stalls, progress)
            runs = [out]
    names = task_names(build_dir, read_build(build_dir)[1])
    for r in runs:
        print(f"{task_label(r['task'], names)}: {r['agree']}/{r['images']} images agree with PyTorch, accuracy "
              f"{r['accuracy']:.2f}%")
    if out["cycles_per_image"] is None:
        print(f"one image: latency {out['latency_cycles']} cycles (cycles/image and images/s need --n 2 or more)")
    else:
        print(f"{out['cycles_per_image']:.1f} cycles/image (FINN estimate {out['estimate_cycles_per_image']}), "
              f"{out['fps']:,.0f} images/s at {1000 / out['clock_ns']:g} MHz, latency {out['latency_cycles']} "
              f"cycles; simulated {out['sim_cycles_per_s'] / 1e6:.2f} M cycles/s")
        print("layer initiation intervals (cycles/image): "
              + ", ".join(f"{l['name']} {l['ii']:g}" for l in out["layers"]))
    print(f"sim: {build_dir / 'sim.json'}")
    if out["agree"] != out["images"]:
        raise MetabnnError(f"the simulated accelerator disagrees with PyTorch on {out['images'] - out['agree']} "
                           "images (see sim.json mismatched_images): report this bug")


def cmd_synth(args: argparse.Namespace) -> None:
    from metabnn.hw.synth import synth
    from metabnn.sim import procs

    with procs.terminate_as_interrupt():
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
    t.add_argument("--device", type=_device, help="cpu, cuda, cuda:N or auto")
    t.add_argument("--data-dir", type=_existing_dir, help="directory holding the dataset files")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train, interrupted="interrupted; the last completed epoch is saved (resume with "
                                               "'metabnn train --resume RUN_DIR')")

    d = sub.add_parser("demo", help="train the demo preset end to end and show its plots")
    d.add_argument("--out", default="demo-run", help="directory for the demo's runs, export and build "
                                                      "(default demo-run; an earlier demo there is continued)")
    d.add_argument("--device", type=_device, help="cpu, cuda, cuda:N or auto")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--no-compare", action="store_true",
                   help="skip the m = 0 twin run and the comparison plot")
    d.add_argument("--no-hardware", action="store_true", help="stop after training (no export and FINN build)")
    d.set_defaults(func=cmd_demo, interrupted="interrupted; every finished stage and completed training epoch is "
                                              "kept: run 'metabnn demo' again with the same --out to continue")

    p = sub.add_parser("plots", help="redraw a run's PNG plots from its metrics.json")
    p.add_argument("run_dir", help="RUN_DIR made by metabnn train")
    p.set_defaults(func=cmd_plots, interrupted="interrupted; each plot is replaced whole, so every PNG is the old "
                                               "or the new one: run 'metabnn plots RUN_DIR' again")

    e = sub.add_parser("export", help="export a trained run to QONNX with per-task thresholds, verified")
    e.add_argument("run_dir", help="RUN_DIR made by metabnn train")
    e.add_argument("--out", required=True, help="EXPORT_DIR to create")
    e.add_argument("--data-dir", type=_existing_dir, help="directory holding the dataset files")
    e.add_argument("--limit", type=_positive_int,
                   help="verify only the first N test images of each task (default: all)")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_export, interrupted="interrupted; nothing was written to --out (an export appears "
                                                "there only when it is complete and verified)")

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
    b.set_defaults(func=cmd_build, interrupted="interrupted; nothing was written: the partial build was removed "
                                               "(run the same command again)")

    m = sub.add_parser("sim", help="cycle-accurate Verilator simulation of a build's RTL on the test sets")
    m.add_argument("build_dir", help="BUILD_DIR made by metabnn build")
    m.add_argument("--task", type=_task_or_all, default="1",
                   help="task number as printed (1 = T1), its name (e.g. pmnist-1) or 'all' (default 1)")
    m.add_argument("--n", type=_at_least_one, help="only the first N test images of each task (default: all)")
    m.add_argument("--stalls", action="store_true", help="random stalls on input and output")
    m.add_argument("--jobs", type=_at_least_one, help="with --task all: simulations at once (default: one per CPU)")
    m.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    m.set_defaults(func=cmd_sim, interrupted="sim interrupted; BUILD_DIR/sim.json is as it was (written only "
                                             "when a simulation completes), rtl/ is whole, no simulator left "
                                             "running")

    y = sub.add_parser("synth", help="yosys synth_xilinx of a build's RTL: LUT/FF/CARRY/BRAM into report.json")
    y.add_argument("build_dir", help="BUILD_DIR made by metabnn build")
    y.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    y.set_defaults(func=cmd_synth, interrupted="synth interrupted; BUILD_DIR/report.json is as it was (written "
                                               "only when every layer is done); the layers already synthesized "
                                               "are cached and not redone next time")

    from metabnn.runtime.cli import add_runtime_parsers

    add_runtime_parsers(sub)

    g = sub.add_parser("data", help="dataset utilities")
    g.set_defaults(interrupted="interrupted; the cache holds only complete, verified files: run "
                               "'metabnn data fetch' again to finish")
    gsub = g.add_subparsers(dest="data_command", required=True)
    f = gsub.add_parser("fetch", help="put a dataset into the local cache (verified)")
    f.add_argument("names", nargs="+", help="mnist, fashion-mnist, cifar10, cifar100, digits")
    f.add_argument("--data-dir", type=_existing_dir, help="directory holding the dataset files")
    f.set_defaults(func=cmd_data, interrupted="interrupted; the cache holds only complete, verified files: run "
                                              "'metabnn data fetch' again to finish")
    return parser


# What Ctrl-C leaves behind, per command; a command sets its own with set_defaults(interrupted=...).
_INTERRUPTED_DEFAULT = "interrupted; nothing was written"


def _os_error_line(e: OSError) -> str:
    """One line for a file-system failure (read-only, full disk, not a directory, ...)."""
    where = f" '{e.filename}'" if e.filename else ""
    reason = e.strerror or type(e).__name__
    return (f"cannot use{where}: {reason}; choose a writable location with enough space "
            "(e.g. another --out) and run again")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MetabnnError as e:
        print(f"metabnn: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"metabnn: error: {_os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metabnn: {getattr(args, 'interrupted', _INTERRUPTED_DEFAULT)}", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:  # a board install (numpy only) running a workstation command
        from metabnn.stack import missing_stack_line

        line = missing_stack_line(e, args.command)
        if line is None:
            return _internal_error(e)
        print(f"metabnn: error: {line}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: one line for the user, the traceback kept for the report
        return _internal_error(e)
    return 0


def _internal_error(e: Exception) -> int:
    """One line for a bug, its traceback saved for the report (raised with METABNN_TRACEBACK=1)."""
    if os.environ.get("METABNN_TRACEBACK"):
        raise e
    print(f"metabnn: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
          f"(a bug in metabnn; the traceback is in {_save_traceback()}: please report it)", file=sys.stderr)
    return 1


def _save_traceback() -> str:
    """Write the current exception's traceback to a file and return its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="metabnn-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"metabnn {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    return path


if __name__ == "__main__":
    sys.exit(main())
