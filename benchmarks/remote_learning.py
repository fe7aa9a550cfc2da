"""Learning through ``metabnn serve`` against learning locally, task by task.

    .venv/bin/python benchmarks/remote_learning.py BUILD_DIR OUT_DIR [--backend sim] [--learn 3]
                     [--epochs N]

BUILD_DIR is copied three ways into OUT_DIR: ``board/`` (the build, served by ``metabnn serve
--backend B`` on 127.0.0.1, as a board would serve it), ``ws/`` (the deploy package alone: the
workstation, which keeps the hidden weights and trains) and ``local/`` (the build, learning
with ``metabnn learn --backend B`` on the accelerator directly). Then ``--learn`` tasks are
learned one by one on both, through the CLI as a user runs it (``learn --remote`` against
the server). Prints, per update, the accuracy matrix of each path and whether they are equal,
the words written by each, what travelled (bytes of the update request, words sent) and the
update times (the workstation's request, the board's update, its device write; the local
update); everything goes to OUT_DIR/summary.json. For the README's numbers: the pmnist-cpu
build of benchmarks/device_learning.py (``OUT_DIR/meta/build``), ``--learn 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

METABNN = [sys.executable, "-m", "metabnn.cli"]


def start_server(board: Path, backend: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*METABNN, "serve", str(board), "--backend", backend, "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stderr is not None
    for line in proc.stderr:
        print(f"  [serve] {line.rstrip()}", flush=True)
        if " at http://" in line:
            # keep reading its log, so that a full pipe never stalls the server
            threading.Thread(target=lambda: [print(f"  [serve] {s.rstrip()}", flush=True) for s in proc.stderr],
                             daemon=True).start()
            return proc, line.split(" at ", 1)[1].split()[0]
    raise SystemExit(f"metabnn serve did not start (exit {proc.wait()})")


def learn(deploy: Path, extra: list[str]) -> dict:
    t0 = time.perf_counter()
    subprocess.run([*METABNN, "learn", str(deploy), "--no-progress", *extra], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    log = json.loads((deploy / "learn.json").read_text())
    return {**log["updates"][-1], "wall_s": wall, "matrix": log["acc"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--backend", default="sim", choices=("sim", "reference"))
    ap.add_argument("--learn", type=int, default=3, help="tasks to learn after the deployed ones")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per new task (default: the run's)")
    args = ap.parse_args()
    out = args.out_dir
    if out.exists():
        raise SystemExit(f"{out} exists; give a new OUT_DIR")
    shutil.copytree(args.build_dir, out / "board")
    shutil.copytree(args.build_dir / "deploy", out / "ws")
    shutil.copytree(args.build_dir, out / "local")
    board, ws, local = out / "board" / "deploy", out / "ws", out / "local" / "deploy"
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    rows = []
    proc, url = start_server(board, args.backend)
    try:
        for _ in range(args.learn):
            r = learn(ws, ["--remote", url, *extra])
            lo = learn(local, ["--backend", args.backend, *extra])
            row = {"task": r["name"], "matrix_remote": r["matrix"], "matrix_local": lo["matrix"],
                   "matrices_equal": r["matrix"] == lo["matrix"],
                   "words_written_remote": sum(r["words_written"].values()),
                   "words_written_local": sum(lo["words_written"].values()),
                   "words_written_equal": r["words_written"] == lo["words_written"],
                   "bytes_sent": r["bytes_sent"], "words_sent": r["words_sent"], "files_sent": r["files_sent"],
                   "remote_update_s": r["update_s"], "remote_request_s": r["request_s"],
                   "board_update_s": r["server_update_s"], "board_device_write_s": r["device_write_s"],
                   "local_update_s": lo["update_s"], "local_device_write_s": lo["device_write_s"],
                   "remote_learn_wall_s": r["wall_s"], "local_learn_wall_s": lo["wall_s"]}
            rows.append(row)
            print(f"{row['task']}: accuracy matrices equal: {row['matrices_equal']} (last row remote "
                  f"{r['matrix'][-1]}, local {lo['matrix'][-1]}); words written {row['words_written_remote']:,} "
                  f"remote / {row['words_written_local']:,} local (equal: {row['words_written_equal']}); sent "
                  f"{row['bytes_sent']:,} bytes ({row['words_sent']:,} words in {row['files_sent']} files); update "
                  f"{1e3 * row['remote_update_s']:.1f} ms remote (board {1e3 * row['board_update_s']:.1f} ms, device "
                  f"write {1e3 * row['board_device_write_s']:.1f} ms) / {1e3 * row['local_update_s']:.1f} ms local",
                  flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    summary = {"build_dir": str(args.build_dir), "backend": args.backend, "updates": rows,
               "all_equal": all(r["matrices_equal"] and r["words_written_equal"] for r in rows)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("backend", "all_equal")}))
    return 0 if summary["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
