"""Continual learning on a deployed accelerator, at full size, metaplastic against m = 0.

    .venv/bin/python benchmarks/device_learning.py OUT_DIR [--backend sim] [--fps 63775]
                     [--deployed 3] [--learn 3] [--variants meta,nometa]

For each variant (pmnist-cpu with m = 3, pmnist-cpu-nometa with m = 0): train the first
``--deployed`` permuted-MNIST tasks, export, build for pynq-z2 at ``--fps`` (63,775 img/s is
the fastest pmnist-cpu folding that fits the Z2, see the README), then learn ``--learn``
more tasks on the deployed accelerator with ``metabnn learn --backend sim``. Everything goes
through the CLI, as a user would run it; a step whose output exists is skipped, so an
interrupted run continues. Prints, per variant, the accuracy matrix measured on the
accelerator beside PyTorch's, bits flipped / words written per update, and, after the last
update, every test image through the sim and reference backends and float64 PyTorch; the
whole summary goes to OUT_DIR/summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PRESETS = {"meta": "pmnist-cpu", "nometa": "pmnist-cpu-nometa"}
METABNN = [sys.executable, "-m", "metabnn.cli"]


def step(name: str, done: Path | None, cmd: list[str], timings: dict[str, float]) -> None:
    """Run one CLI step, unless ``done`` (its output) exists; None: always run."""
    if done is not None and done.exists():
        print(f"[skip] {name}: {done} exists", flush=True)
        return
    print(f"[run ] {name}: {' '.join(cmd[2:])}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    timings[name] = round(time.perf_counter() - t0, 1)
    print(f"[done] {name} in {timings[name]:.1f} s", flush=True)


def run_variant(out: Path, variant: str, args: argparse.Namespace) -> dict:
    base = out / variant
    run, export, build = base / "run", base / "export", base / "build"
    deploy = build / "deploy"
    timings: dict[str, float] = {}
    step("train", run / "metrics.json", METABNN + [
        "train", "--preset", PRESETS[variant], "--set", f"data.stream.n_tasks={args.deployed}",
        "--no-progress", "--out", str(run)], timings)
    step("export", export / "verify.json", METABNN + ["export", str(run), "--out", str(export)], timings)
    step("build", build / "report.json", METABNN + [
        "build", str(export), "--board", "pynq-z2", "--target-fps", str(args.fps), "--no-progress",
        "--out", str(build)], timings)
    learned = 0
    log_path = deploy / "learn.json"
    if log_path.exists():
        learned = len(json.loads(log_path.read_text())["updates"])
    for i in range(learned, args.learn):
        step(f"learn task {args.deployed + i + 1}", None, METABNN + [
            "learn", str(deploy), "--task", "next", "--backend", args.backend, "--no-progress"], timings)
    log = json.loads(log_path.read_text())
    return {"timings_s": timings, "tasks": log["tasks"], "acc": log["acc"], "torch_acc": log["torch_acc"],
            "bits_flipped": log["bits_flipped"], "words_written": log["words_written"],
            "update_s": log["update_s"], "acc_equals_pytorch": log["acc"] == log["torch_acc"],
            "agreements_with_pytorch": [u["agreements_with_pytorch"] for u in log["updates"]],
            "test_images": [u["test_images"] for u in log["updates"]]}


def compare_backends(deploy: Path) -> dict:
    """Every test image of every task through the sim and reference backends, and float64
    PyTorch from the deployment's own hidden-weight checkpoint: raw outputs and classes."""
    import shutil
    import tempfile

    from metabnn.data import task_from_spec
    from metabnn.export.source import read_run
    from metabnn.export.verify import float64_model, torch_predict
    from metabnn.runtime.accelerator import Accelerator
    from metabnn.train import checkpoint as ckpt

    with tempfile.TemporaryDirectory() as tmp:  # the host checkpoint, read as a run directory
        run = Path(tmp)
        shutil.copyfile(deploy / "host" / ckpt.CHECKPOINT, run / ckpt.CHECKPOINT)
        recorded = json.loads((deploy / "manifest.json").read_text())["files"].get(f"host/{ckpt.CHECKPOINT}")
        state, digest = ckpt.load_checkpoint_verified(run, expected_sha256=recorded)
        ckpt.write_run_files(run, state["config"], state["task_specs"], checkpoint_sha256=digest)
        src = read_run(run)
    golden = float64_model(src.model)
    ref, sim = Accelerator.open(deploy, "reference"), Accelerator.open(deploy, "sim")
    out = {"images": 0, "raw_equal": 0, "classes_equal": 0, "equal_to_pytorch_f64": 0}
    try:
        for j, spec in enumerate(src.task_specs):
            x = task_from_spec(spec, None).test_x.numpy()
            ref.select_task(j)
            sim.select_task(j)
            a, b = ref.infer(x), sim.infer(x)
            gold, _ = torch_predict(golden, src.bn_states[j], x)
            out["images"] += len(x)
            out["raw_equal"] += int((a.raw == b.raw).all(axis=1).sum())
            out["classes_equal"] += int((a.classes == b.classes).sum())
            out["equal_to_pytorch_f64"] += int((b.classes == gold).sum())
    finally:
        sim.close()
    return out


def show(variant: str, s: dict) -> None:
    print(f"\n== {variant}: accuracy (%) measured on the accelerator; PyTorch in brackets ==")
    for i, (row, trow) in enumerate(zip(s["acc"], s["torch_acc"])):
        cells = " ".join(f"{a:6.2f}[{t:6.2f}]" for a, t in zip(row, trow) if a is not None)
        print(f"after update {i + 1}: {cells}")
    print(f"matrix equals PyTorch: {s['acc_equals_pytorch']}")
    c = s["sim_vs_reference"]
    print(f"sim vs reference backend, all tasks: raw outputs equal on {c['raw_equal']}/{c['images']} images, "
          f"classes on {c['classes_equal']}; sim equals float64 PyTorch on {c['equal_to_pytorch_f64']}")
    for name, layers in s["bits_flipped"].items():
        print(f"{name}: bits flipped {sum(layers.values()):7d} {layers} | words written "
              f"{sum(s['words_written'][name].values())} | update {s['update_s'][name]:.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--backend", default="sim", choices=["sim", "reference"])
    ap.add_argument("--fps", type=int, default=63775)
    ap.add_argument("--deployed", type=int, default=3)
    ap.add_argument("--learn", type=int, default=3)
    ap.add_argument("--variants", default="meta,nometa")
    args = ap.parse_args()
    summary = {}
    for variant in args.variants.split(","):
        summary[variant] = run_variant(args.out, variant, args)
        summary[variant]["sim_vs_reference"] = compare_backends(args.out / variant / "build" / "deploy")
        show(variant, summary[variant])
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
