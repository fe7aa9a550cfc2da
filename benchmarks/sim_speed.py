"""Verilator simulation of a BUILD dir over every task's test set: speed and agreement.

    .venv/bin/python benchmarks/sim_speed.py BUILD_DIR [--n N] [--stalls]

Runs ``metabnn.sim.simulate`` for every task of the build (N test images each, default
all), and prints one JSON object: per task agreement with the PyTorch-verified reference,
accuracy, cycles/image against FINN's estimate, FPS at the build clock, simulated
cycles/s; plus the Verilator build time and the wall time of all tasks together (the
issue's target: 60,000 pmnist images in under 2 minutes after the build).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    from metabnn.sim import simulate

    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--stalls", action="store_true")
    args = ap.parse_args()
    report = json.loads((args.build_dir / "report.json").read_text())
    t0 = time.perf_counter()
    simulate(args.build_dir, 0, 1, progress=False)  # compiles (or finds the cached model)
    build_s = time.perf_counter() - t0
    tasks, t0 = [], time.perf_counter()
    for k in range(int(report["tasks"])):
        r = simulate(args.build_dir, k, args.n, stalls=args.stalls, progress=False)
        tasks.append({key: r[key] for key in ("task", "images", "agree", "accuracy", "cycles_per_image",
                                                "estimate_cycles_per_image", "latency_cycles", "fps",
                                                "sim_cycles_per_s", "sim_seconds")})
        print(f"task {k}: {r['agree']}/{r['images']} agree, {r['sim_seconds']:.1f} s", file=sys.stderr)
    wall = time.perf_counter() - t0
    images = sum(t["images"] for t in tasks)
    out = {
        "build_dir": str(args.build_dir), "first_call_seconds_incl_compile": round(build_s, 2),
        "images": images, "agree": sum(t["agree"] for t in tasks), "wall_seconds": round(wall, 2),
        "images_per_s_simulated": round(images / wall, 1),
        "mean_sim_cycles_per_s": round(sum(t["sim_cycles_per_s"] for t in tasks) / len(tasks)),
        "accuracy_per_task": [t["accuracy"] for t in tasks],
        "tasks": tasks,
    }
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0 if out["agree"] == images else 1


if __name__ == "__main__":
    sys.exit(main())
