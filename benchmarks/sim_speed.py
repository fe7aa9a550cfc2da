"""Verilator simulation of a BUILD dir over every task's test set: speed and agreement.

    .venv/bin/python benchmarks/sim_speed.py BUILD_DIR [--n N] [--stalls] [--jobs J]

Runs ``metabnn.sim.simulate_all`` over every task of the build (N test images each,
default all; one Verilator process per task, ``--jobs`` at a time, default one per CPU),
and prints one JSON object: per task agreement with the PyTorch-verified reference,
accuracy (%), cycles/image against FINN's estimate, FPS at the build clock, simulated
cycles/s per process; plus the Verilator build time and the wall time of all tasks
together (the issue's target: 60,000 pmnist images in under 2 minutes after the build).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    from metabnn.sim import simulate, simulate_all

    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--stalls", action="store_true")
    ap.add_argument("--jobs", type=int, default=None, help="simulations at once (default: one per CPU)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    simulate(args.build_dir, 0, 1, progress=False)  # compiles (or finds the cached model)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = simulate_all(args.build_dir, args.n, stalls=args.stalls, progress=False, jobs=args.jobs)
    wall = time.perf_counter() - t0
    tasks = [{key: t[key] for key in ("task", "name", "images", "agree", "accuracy", "cycles_per_image",
                                       "estimate_cycles_per_image", "latency_cycles", "fps",
                                       "sim_cycles_per_s", "sim_seconds")} for t in r["tasks"]]
    for t in tasks:
        print(f"T{t['task'] + 1} ({t['name']}): {t['agree']}/{t['images']} agree, accuracy {t['accuracy']:.2f}%, "
              f"{t['sim_seconds']:.1f} s", file=sys.stderr)
    out = {
        "build_dir": str(args.build_dir), "first_call_seconds_incl_compile": round(build_s, 2),
        "images": r["images"], "agree": r["agree"], "jobs": r["jobs"], "wall_seconds": round(wall, 2),
        "images_per_s_simulated": round(r["images"] / wall, 1),
        "sim_cycles_per_s_per_process": round(r["sim_cycles_per_s"]),
        "accuracy_per_task": r["accuracy_per_task"],
        "tasks": tasks,
    }
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0 if out["agree"] == out["images"] else 1


if __name__ == "__main__":
    sys.exit(main())
