"""Accuracy of the pmnist-cpu presets: metaplastic vs m = 0, 6 permuted-MNIST tasks.

Trains each preset into RUNS_DIR (skipped when its run is already complete) and prints the
two accuracy matrices as Markdown, with wall time and the task-1 retention.

    .venv/bin/python benchmarks/pmnist_cpu.py [--runs-dir runs] [--presets pmnist-cpu ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def matrix_markdown(metrics: dict) -> str:
    acc = metrics["acc"]
    head = "| after \\ task | " + " | ".join(f"T{j + 1}" for j in range(len(acc[0]))) + " |"
    rule = "|---" * (len(acc[0]) + 1) + "|"
    rows = [f"| T{i + 1} | " + " | ".join(f"{a:.2f}" for a in row) + " |" for i, row in enumerate(acc)]
    return "\n".join([head, rule, *rows])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--presets", nargs="+", default=["pmnist-cpu", "pmnist-cpu-nometa"])
    args = ap.parse_args()
    summary = {}
    for preset in args.presets:
        run = args.runs_dir / preset
        metrics_path = run / "metrics.json"
        done = metrics_path.exists() and len(json.loads(metrics_path.read_text())["acc"]) == 6
        wall = None
        if not done:
            cmd = [sys.executable, "-m", "metabnn.cli", "train", "--no-progress"]
            cmd += ["--resume", str(run)] if (run / "checkpoint.pt").exists() else ["--preset", preset, "--out", str(run)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t0
        m = json.loads(metrics_path.read_text())
        summary[preset] = {
            "mean_final_acc": m["mean_final_acc"], "bwt": m["bwt"],
            "task1_after_last": m["acc"][-1][0], "samples_per_s": m["samples_per_s"],
            "wall_s_this_invocation": wall, "acc": m["acc"],
            "flips": m["flips"],
        }
        print(f"\n## {preset}: mean final {m['mean_final_acc']:.2f}%, task 1 after task 6 "
              f"{m['acc'][-1][0]:.2f}%, BWT {m['bwt']:+.2f}, {m['samples_per_s']:.0f} samples/s"
              + (f", wall {wall / 60:.1f} min" if wall else ""))
        print(matrix_markdown(m))
    (args.runs_dir / "pmnist_cpu_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
