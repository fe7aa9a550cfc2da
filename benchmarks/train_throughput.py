"""Training throughput: metaplastic BNN vs a float MLP of the same shape, in the same run.

Both go through metabnn's own training loop (ContinualTrainer.train_epoch: uint8 batches
indexed from the whole dataset, forward, backward, optimizer step); the float MLP uses
``torch.optim.Adam``. Rounds alternate so both see the same machine load.

    .venv/bin/python benchmarks/train_throughput.py [--rounds 3] [--images 12000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from metabnn.data import build_tasks
from metabnn.train.config import resolve_config
from metabnn.train.continual import ContinualTrainer

WIDTHS = "[784,1024,1024,10]"


def trainer(kind: str, images: int) -> ContinualTrainer:
    sets = [f"model.widths={WIDTHS}", f"model.kind={kind}", "data.stream.n_tasks=1",
            f"train.train_subset={images}", "device=cpu", "train.batch_size=100"]
    sets.append("optim.meta=1.35" if kind == "bnn" else "optim.meta=0")
    config = resolve_config("pmnist-cpu", overrides=sets)
    t = ContinualTrainer(config, Path("/nonexistent"), build_tasks(config["data"]["stream"]),
                         log=lambda s: None, progress=False)
    if kind == "float":
        t.optimizer = torch.optim.Adam(t.model.parameters(), lr=0.005, weight_decay=1e-7)
    return t


def rate(t: ContinualTrainer, epoch: int) -> float:
    n0, s0 = t.metrics["train_samples"], t.metrics["train_seconds"]
    t.train_epoch(t.tasks[0], epoch)
    return (t.metrics["train_samples"] - n0) / (t.metrics["train_seconds"] - s0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=12000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    bnn, fp = trainer("bnn", args.images), trainer("float", args.images)
    t0 = time.perf_counter()
    rate(bnn, 0)  # warm-up: allocations and the one-off compilation of the fused step
    rate(fp, 0)
    warm = time.perf_counter() - t0
    rates: dict[str, list[float]] = {"bnn_metaplastic": [], "float_adam": []}
    for r in range(1, args.rounds + 1):
        rates["float_adam"].append(rate(fp, r))
        rates["bnn_metaplastic"].append(rate(bnn, r))
        print(f"round {r}: float MLP {rates['float_adam'][-1]:8.0f} samples/s   "
              f"metaplastic BNN {rates['bnn_metaplastic'][-1]:8.0f} samples/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "network": WIDTHS, "batch_size": 100, "threads": torch.get_num_threads(),
        "fused_step": bnn.optimizer.fused, "warmup_s": warm, "rounds": rates,
        "median_samples_per_s": med, "ratio": med["bnn_metaplastic"] / med["float_adam"],
    }
    print(f"median: float MLP {med['float_adam']:.0f}/s, metaplastic BNN "
          f"{med['bnn_metaplastic']:.0f}/s, ratio {result['ratio']:.2f} (target >= 0.70)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
