"""Wall time of export and FINN build for a trained network, plus the pynq-z2 folding analysis.

    .venv/bin/python benchmarks/build_time.py RUN_DIR [--work DIR] [--board pynq-z2]
        [--target-fps 400000] [--clock-ns 10] [--run-1bit RUN_DIR_1BIT]

Exports RUN_DIR (full test sets verified), plans the target on the board (reachable rate,
best fit, the limiting layer/resource), builds at the target if it fits and else at the
best rate that fits, with the agreement check on every task's full test set, and prints
one JSON object. ``--run-1bit`` repeats the plan for a 1-bit-input run of the same shape.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path


def _timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, round(time.perf_counter() - t0, 2)


def main() -> int:
    from metabnn.export import export_run
    from metabnn.hw.build import build, plan

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--board", default="pynq-z2")
    ap.add_argument("--target-fps", type=float, default=400000)
    ap.add_argument("--clock-ns", type=float, default=10.0)
    ap.add_argument("--run-1bit", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="metabnn-bench-"))
    out: dict = {"board": args.board, "target_fps": args.target_fps, "clock_ns": args.clock_ns}

    _, out["export_seconds"] = _timed(export_run, args.run_dir, work / "export", progress=False)
    p, out["plan_seconds"] = _timed(plan, work / "export", args.board, args.target_fps, args.clock_ns)
    out["plan_8bit" if p["input_bits"] == 8 else "plan"] = p
    fits = p.get("at_target", {}).get("fits", False)
    # the best-fit rate, rounded down so the build's own search lands on the same folding
    fps = args.target_fps if fits else math.floor(p["best_fit_fps"])
    report, out["build_seconds"] = _timed(build, work / "export", work / "build", args.board, fps,
                                          args.clock_ns, progress=False)
    out["build"] = {k: report[k] for k in ("fps", "latency_us", "resources", "capacity", "fits", "layers",
                                           "agreement", "steps")}
    if args.run_1bit:
        _, t = _timed(export_run, args.run_1bit, work / "export_1bit", progress=False, limit=100)
        out["plan_1bit"], _ = _timed(plan, work / "export_1bit", args.board, args.target_fps, args.clock_ns)
    out["work_dir"] = str(work)
    json.dump(out, sys.stdout, indent=1, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
