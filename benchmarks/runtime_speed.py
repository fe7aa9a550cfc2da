"""Reference-backend inference speed (target: >= 10,000 images/s) and device-update cost.

    python benchmarks/runtime_speed.py [DEPLOY_DIR] [--images N] [--batch B]

Without DEPLOY_DIR it measures a random package of the pmnist-cpu shape (784-1024-1024-10)
with a pynq-z2-like folding, built in numpy (no training needed).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from metabnn.runtime import Accelerator
from metabnn.runtime.synthetic import make_package


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("deploy_dir", nargs="?")
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.deploy_dir
        if path is None:
            path = f"{tmp}/deploy"
            make_package(path, (784, 1024, 1024, 10), [(16, 49), (32, 32), (10, 32)])
        t0 = time.perf_counter()
        acc = Accelerator.open(path)
        open_s = time.perf_counter() - t0
        d = acc.pkg.manifest["network"]["widths"][0]
        x = np.random.default_rng(0).integers(0, 256, (args.images, d)).astype(np.uint8)
        acc.infer(x[:args.batch], batch_size=args.batch)  # warm-up
        res = acc.infer(x, batch_size=args.batch)
        t0 = time.perf_counter()
        switch = acc.select_task(acc.pkg.live_tasks[-1])
        switch_s = time.perf_counter() - t0
        out = {"network": acc.pkg.manifest["network"]["widths"], "images": args.images, "batch": args.batch,
               "images_per_s": round(res.stats["images_per_s"]), "batch_latency_ms": res.stats["batch_latency_ms"],
               "open_s (verify package, write every word)": round(open_s, 3),
               "task_switch_s": round(switch_s, 4), "task_switch_words": sum(switch.values())}
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
