"""``metabnn infer | learn | status``: argument parsing and printing for the host runtime.

The main CLI adds these with one call: ``add_runtime_parsers(subparsers)``; each parser sets
``func`` to its ``cmd_*`` (the main CLI calls ``args.func(args)``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError

BACKENDS = ("reference", "sim", "pynq")


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "bitfile", None):
        if args.backend != "pynq":
            raise MetabnnError("--bitfile is for --backend pynq")
        opts["bitfile"] = args.bitfile
    return opts


def load_images(path: str, dim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 [N, dim] images (and labels, if any) from .npy, or .npz with 'images' [+ 'labels']."""
    p = Path(path)
    try:
        if p.suffix == ".npz":
            with np.load(p) as z:
                if "images" not in z.files:
                    raise MetabnnError(f"'{p}' has no 'images' array (it has {', '.join(z.files)})")
                x, y = z["images"], (z["labels"] if "labels" in z.files else None)
        else:
            x, y = np.load(p, allow_pickle=False), None
    except FileNotFoundError:
        raise MetabnnError(f"--images '{p}' does not exist") from None
    except (OSError, ValueError) as e:
        raise MetabnnError(f"--images '{p}' is not a .npy/.npz array file ({type(e).__name__})") from None
    x = np.asarray(x)
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    if x.ndim != 2 or x.shape[1] != dim or not np.issubdtype(x.dtype, np.integer) or x.min(initial=0) < 0 \
            or x.max(initial=0) > 255:
        raise MetabnnError(f"--images must hold uint8 pixels [N, {dim}] (0..255), got {x.dtype} {list(x.shape)}")
    return x.astype(np.uint8), y


def cmd_infer(args: argparse.Namespace) -> None:
    from metabnn.runtime import Accelerator

    if (args.images is None) == (args.dataset is None):
        raise MetabnnError("give exactly one of --images FILE or --dataset NAME")
    with Accelerator.open(args.deploy_dir, args.backend, task=args.task, **_backend_options(args)) as acc:
        dim = int(acc.pkg.manifest["network"]["widths"][0])
        if args.images is not None:
            x, y = load_images(args.images, dim)
        else:
            x, y = _dataset_images(acc, args)
        if args.limit is not None:
            x, y = x[:args.limit], (None if y is None else y[:args.limit])
        res = acc.infer(x, batch_size=args.batch_size)
        s = res.stats
        print(f"task {acc.task} ({acc.pkg.tasks[acc.task]['name']}) on {acc.backend.name}: {s['images']} images, "
              f"{s['images_per_s']:,.0f} images/s, batch latency {s['batch_latency_ms']['mean']:.2f} ms "
              f"(batch {s['batch_size']})")
        if y is not None:
            print(f"accuracy {100.0 * float((res.classes == y).mean()):.2f}%")
        print("classes:", " ".join(str(int(c)) for c in res.classes[:20]) + (" ..." if len(x) > 20 else ""))
        if args.out:
            from metabnn.atomic import atomic_write
            atomic_write(args.out, lambda f: np.savez(f, classes=res.classes, raw=res.raw, logits=res.logits))
            print(f"outputs: {args.out}")


def _dataset_images(acc: Any, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The test set of ``--dataset``: 'task' (the selected task's own test set) or a dataset name."""
    from metabnn.data import load_dataset, task_from_spec

    if args.dataset == "task":
        specs = json.loads((acc.pkg.root / acc.pkg.manifest["host"]["tasks"]).read_text())["tasks"]
        t = task_from_spec(specs[acc.task], args.data_dir)
        return t.test_x.numpy(), t.test_y.numpy()
    ds = load_dataset(args.dataset, args.data_dir)
    return ds.test_x.reshape(len(ds.test_x), -1).numpy().astype(np.uint8), ds.test_y.numpy()


def print_learn(entry: dict[str, Any], log: dict[str, Any]) -> None:
    print(f"learned {entry['name']} on the {entry['backend']} accelerator: update {entry['update_s'] * 1e3:.1f} ms, "
          f"{sum(entry['words_written'].values())} words written, {sum(entry['bits_flipped'].values())} weight "
          f"bits flipped")
    print("  bits flipped per layer: " + ", ".join(f"{k} {v}" for k, v in entry["bits_flipped"].items()))
    print("  words written per layer: " + ", ".join(f"{k} {v}" for k, v in entry["words_written"].items()))
    names = log["tasks"]
    print("accuracy matrix measured on the accelerator (%), row = after device update, column = task:")
    w = max(8, *(len(n) for n in names))
    print(" " * (w + 7) + " ".join(f"{n:>{w}}" for n in names))
    for u, row in zip(log["updates"], log["acc"]):
        print(f"after {u['name']:>{w}} " + " ".join(" " * (w - 1) + "-" if a is None else f"{a:{w}.2f}" for a in row))
    same = entry["acc"] == entry["torch_acc"]
    agree, images = sum(entry["agreements_with_pytorch"].values()), sum(entry["test_images"])
    print(f"PyTorch (float64) on the same images: accuracy {'identical' if same else 'DIFFERENT: ' + str(entry['torch_acc'])}, "
          f"{agree}/{images} predictions equal; learn log: {Path(log['_path'])}")


def cmd_learn(args: argparse.Namespace) -> None:
    from metabnn.runtime.learn import learn
    from metabnn.runtime.package import LEARN_LOG, resolve_deploy_dir

    entry = learn(args.deploy_dir, args.task, args.backend, epochs=args.epochs, data_dir=args.data_dir,
                  progress=not args.no_progress, **_backend_options(args))
    path = resolve_deploy_dir(args.deploy_dir) / LEARN_LOG
    log = json.loads(path.read_text())
    log["_path"] = str(path)
    print_learn(entry, log)


def cmd_status(args: argparse.Namespace) -> None:
    from metabnn.runtime.package import LEARN_LOG, open_package

    pkg = open_package(args.deploy_dir)
    m = pkg.manifest
    out: dict[str, Any] = {"deploy_dir": str(pkg.root), "generation": m["generation"], "board": m.get("board"),
                           "widths": m["network"]["widths"], "files_checked": len(m["files"]),
                           "repaired": pkg.repaired,
                           "tasks": [{"task": t["task"], "name": t["name"], "live": t["live"]} for t in pkg.tasks]}
    if args.backend:
        from metabnn.runtime import Accelerator
        with Accelerator.open(pkg.root, args.backend, **_backend_options(args)) as acc:
            out["device"] = acc.status()
    if (pkg.root / LEARN_LOG).is_file():
        log = json.loads((pkg.root / LEARN_LOG).read_text())
        out["learned_on_device"] = [u["name"] for u in log["updates"]]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{pkg.root}: generation {out['generation']}, board {out['board']}, network "
          f"{'-'.join(map(str, out['widths']))}, {out['files_checked']} files checked (sha256 ok)")
    if pkg.repaired:
        print(f"repaired: {pkg.repaired}")
    print("tasks: " + ", ".join(f"{t['task']}:{t['name']}{'' if t['live'] else ' (not live)'}" for t in out["tasks"]))
    if "learned_on_device" in out:
        print("learned on the device: " + ", ".join(out["learned_on_device"]))
    if "device" in out:
        d = out["device"]
        print(f"device ({args.backend}): task {d['task']} loaded, memories consistent: {d['consistent']}, "
              f"words rewritten on open: {sum(d['last_sync_words'].values())}")


def add_runtime_parsers(sub: Any) -> None:
    """Add ``infer``, ``learn`` and ``status`` to the main CLI's subparsers."""
    def backend(p: argparse.ArgumentParser, default: str | None = "reference") -> None:
        p.add_argument("--backend", choices=BACKENDS, default=default,
                       help="reference (numpy, bit-exact), sim (Verilator), pynq (the board)")
        p.add_argument("--bitfile", help="pynq: the .bit file (default: DEPLOY_DIR/bitfile/*.bit)")

    i = sub.add_parser("infer", help="classify images on a deployed accelerator")
    i.add_argument("deploy_dir", metavar="DEPLOY_DIR")
    i.add_argument("--task", type=int, default=None, help="task index (from 0; default: the first live task)")
    i.add_argument("--images", help=".npy uint8 [N, D] or .npz with 'images' (and 'labels')")
    i.add_argument("--dataset", help="'task' (the task's own test set) or a dataset name (its test set)")
    i.add_argument("--data-dir")
    i.add_argument("--limit", type=int, help="only the first N images")
    i.add_argument("--batch-size", type=int, default=1000)
    i.add_argument("--out", help="write classes, raw outputs and logits to this .npz")
    backend(i)
    i.set_defaults(func=cmd_infer)

    l = sub.add_parser("learn", help="learn one more task on a deployed accelerator (hidden weights on the host)")
    l.add_argument("deploy_dir", metavar="DEPLOY_DIR")
    l.add_argument("--task", default="next", help="'next' (the stream's next task) or a JSON task spec file")
    l.add_argument("--epochs", type=int, help="epochs for the new task (default: the run's)")
    l.add_argument("--data-dir")
    l.add_argument("--no-progress", action="store_true")
    backend(l)
    l.set_defaults(func=cmd_learn)

    s = sub.add_parser("status", help="check a deployment package (and optionally its device)")
    s.add_argument("deploy_dir", metavar="DEPLOY_DIR")
    s.add_argument("--json", action="store_true")
    backend(s, default=None)
    s.set_defaults(func=cmd_status)
