"""``metabnn infer | learn | status``: argument parsing and printing for the host runtime.

The main CLI adds these with one call: ``add_runtime_parsers(subparsers)``; each parser sets
``func`` to its ``cmd_*`` (the main CLI calls ``args.func(args)``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from metabnn.errors import MetabnnError

BACKENDS = ("reference", "sim", "pynq")


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "bitfile", None):
        if args.backend != "pynq":
            raise MetabnnError("--bitfile is for --backend pynq (the board); add --backend pynq or leave --bitfile "
                               "out")
        opts["bitfile"] = args.bitfile
    if getattr(args, "build_dir", None):
        if args.backend != "sim":
            raise MetabnnError("--build-dir is for --backend sim (the simulated RTL); add --backend sim or leave "
                               "--build-dir out")
        opts["build_dir"] = args.build_dir
    for flag, key, value in (("--download", "download", getattr(args, "download", False) or None),
                             ("--timeout", "timeout_s", getattr(args, "timeout", None))):
        if value is not None:
            if args.backend != "pynq":
                raise MetabnnError(f"{flag} is for --backend pynq (the board); add --backend pynq or leave {flag} "
                                   "out")
            opts[key] = value
    return opts


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text}: give a number of seconds greater than zero")
    return value


def _progress(args: argparse.Namespace) -> Callable[[str], None]:
    if getattr(args, "no_progress", False):
        return lambda s: None
    return lambda s: print(s, file=sys.stderr, flush=True)


def _positive(args: argparse.Namespace, name: str, what: str) -> None:
    value = getattr(args, name)
    if value is not None and value < 1:
        raise MetabnnError(f"--{name.replace('_', '-')} {value}: give a positive number of {what}")


def load_images(path: str, dim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 [N, dim] images (and labels, if any) from .npy, or .npz with 'images' [+ 'labels']."""
    p = Path(path)
    if p.is_dir():
        raise MetabnnError(f"--images '{p}' is a directory; give a .npy file or a .npz file with an 'images' array")
    try:
        if p.suffix == ".npz" or (p.is_file() and p.read_bytes()[:4] == b"PK\x03\x04"):
            with np.load(p, allow_pickle=False) as z:
                if "images" not in z.files:
                    raise MetabnnError(f"--images '{p}' has no 'images' array (it has {', '.join(z.files) or 'none'});"
                                       " save it with np.savez(F, images=X, labels=Y)")
                x, y = z["images"], (z["labels"] if "labels" in z.files else None)
        else:
            x, y = np.load(p, allow_pickle=False), None
    except FileNotFoundError:
        raise MetabnnError(f"--images '{p}' does not exist; give a .npy or .npz file") from None
    except PermissionError:
        raise MetabnnError(f"--images '{p}' cannot be read (permission denied); make it readable") from None
    except MetabnnError:
        raise
    except Exception as e:  # numpy and zipfile raise many types for a damaged file
        raise MetabnnError(f"--images '{p}' is not a readable .npy/.npz array file ({type(e).__name__}: damaged, "
                           "truncated or another format); save the images with numpy.save or numpy.savez") from None
    x = np.asarray(x)
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    if x.ndim != 2 or x.shape[1] != dim or not np.issubdtype(x.dtype, np.integer) or x.min(initial=0) < 0 \
            or x.max(initial=0) > 255:
        raise MetabnnError(f"--images must hold uint8 pixels [N, {dim}] (0..255), got {x.dtype} {list(x.shape)}; "
                           "save one row of 0..255 integer pixels per image")
    if len(x) == 0:
        raise MetabnnError(f"--images '{p}' holds no images; give at least one")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise MetabnnError(f"--images '{p}': 'labels' must be integers [{len(x)}], one per image, got {y.dtype} "
                               f"{list(y.shape)}; fix them or save the file without 'labels'")
    return x.astype(np.uint8), y


def _lock_and_open(args: argparse.Namespace, command: str) -> tuple[Any, Any]:
    """(held shared lock, checked package) of DEPLOY_DIR; the lock is released on failure."""
    from metabnn.runtime.lock import PackageLock
    from metabnn.runtime.package import open_package, resolve_deploy_dir

    root = resolve_deploy_dir(args.deploy_dir)
    if not root.is_dir():
        raise MetabnnError(f"'{root}' is not a directory; give the DEPLOY_DIR (BUILD_DIR/deploy) of a metabnn build")
    lock = PackageLock(root, command).shared()
    try:
        return lock, open_package(root, lock=lock, command=command)
    except BaseException:
        lock.release()
        raise


def cmd_infer(args: argparse.Namespace) -> None:
    from metabnn.atomic import ensure_writable
    from metabnn.runtime.package import parse_task

    if (args.images is None) == (args.dataset is None):
        raise MetabnnError("give exactly one of --images FILE or --dataset NAME")
    _positive(args, "limit", "images (or leave --limit out for all)")
    _positive(args, "batch_size", "images per batch")
    options = _backend_options(args)
    if args.out:  # refused before any work, not after it
        if Path(args.out).is_dir():
            raise MetabnnError(f"--out '{args.out}' is a directory; give a file name, e.g. "
                               f"{Path(args.out) / 'outputs.npz'}")
        ensure_writable(args.out, "--out")
    lock, pkg = _lock_and_open(args, "infer")
    with lock:
        if pkg.repaired:
            print(f"repaired: {pkg.repaired}", file=sys.stderr)
        task = pkg.live_tasks[0] if args.task is None else parse_task(args.task, pkg.tasks)
        dim = int(pkg.manifest["network"]["widths"][0])
        if args.images is not None:
            x, y = load_images(args.images, dim)
        else:
            x, y = _dataset_images(pkg, task, args, dim)
        if args.limit is not None:
            x, y = x[:args.limit], (None if y is None else y[:args.limit])
        with _open_device(args, pkg, task, lock, options) as acc:
            res = acc.infer(x, batch_size=args.batch_size)
        s = res.stats
        print(f"{pkg.label(task)} on {acc.backend.name}: {s['images']} images, "
              f"{s['images_per_s']:,.0f} images/s, batch latency {s['batch_latency_ms']['mean']:.2f} ms "
              f"(batch {s['batch_size']})")
        if y is not None:
            print(f"accuracy {100.0 * float((res.classes == y).mean()):.2f}%")
        print("classes:", " ".join(str(int(c)) for c in res.classes[:20]) + (" ..." if len(x) > 20 else ""))
        if args.out:
            from metabnn.atomic import atomic_write
            atomic_write(args.out, lambda f: np.savez(f, classes=res.classes, raw=res.raw, logits=res.logits))
            print(f"outputs: {args.out}")


def _dataset_images(pkg: Any, task: int, args: argparse.Namespace, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The test set of ``--dataset``: 'task' (the selected task's own test set) or a dataset name."""
    from metabnn.data import load_dataset, task_from_spec

    if args.dataset == "task":
        rel = pkg.manifest.get("host", {}).get("tasks")
        try:
            specs = json.loads((pkg.root / rel).read_text())["tasks"] if rel else None
            spec = specs[task]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            spec = None
        if spec is None:
            raise MetabnnError(f"'{pkg.root}' holds no definition of {pkg.label(task)} (host/tasks.json) to rebuild "
                               "its test set; give --images FILE instead")
        t = task_from_spec(spec, args.data_dir)
        x, y = t.test_x.numpy(), t.test_y.numpy()
    else:
        ds = load_dataset(args.dataset, args.data_dir)
        x, y = ds.test_x.reshape(len(ds.test_x), -1).numpy().astype(np.uint8), ds.test_y.numpy()
    if x.shape[1] != dim:
        raise MetabnnError(f"--dataset {args.dataset}: its images have {x.shape[1]} pixels, the deployed network "
                           f"takes {dim}; give a dataset of that shape, or --images FILE")
    return x, y


def print_learn(entry: dict[str, Any], log: dict[str, Any]) -> None:
    label = f"T{entry['task'] + 1} ({entry['name']})"
    names = log["tasks"]
    if not entry.get("measured", True):
        print(f"learned {label} on the {entry['backend']} accelerator ({sum(entry['bits_flipped'].values())} weight "
              "bits flipped); it is live, but the learn was interrupted before its accuracy was measured; "
              f"learn log: {Path(log['_path'])}")
        return
    print(f"learned {label} on the {entry['backend']} accelerator: update {entry['update_s'] * 1e3:.1f} ms, "
          f"{sum(entry['words_written'].values())} words written, {sum(entry['bits_flipped'].values())} weight "
          f"bits flipped")
    print("  bits flipped per layer: " + ", ".join(f"{k} {v}" for k, v in entry["bits_flipped"].items()))
    print("  words written per layer: " + ", ".join(f"{k} {v}" for k, v in entry["words_written"].items()))
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

    def phase(message: str) -> None:
        args.interrupted = message  # what main prints on Ctrl-C from here on

    entry = learn(args.deploy_dir, args.task, args.backend, epochs=args.epochs, data_dir=args.data_dir,
                  log=_progress(args), progress=not args.no_progress, on_phase=phase, remote=_remote_device(args),
                  **_backend_options(args))
    path = resolve_deploy_dir(args.deploy_dir) / LEARN_LOG
    log = json.loads(path.read_text())
    log["_path"] = str(path)
    print_learn(entry, log)
    _print_remote_update(entry)


def cmd_status(args: argparse.Namespace) -> None:
    from metabnn.runtime.learn import read_log
    from metabnn.runtime.package import LEARN_LOG

    options = _backend_options(args)
    lock, pkg = _lock_and_open(args, "status")
    with lock:
        m = pkg.manifest
        out: dict[str, Any] = {"deploy_dir": str(pkg.root), "generation": m["generation"], "board": m.get("board"),
                               "widths": m["network"]["widths"], "files_checked": len(m["files"]),
                               "repaired": pkg.repaired,
                               "tasks": [{"task": t["task"], "name": t["name"], "live": t.get("live", False)}
                                         for t in pkg.tasks]}
        if args.backend:
            from metabnn.runtime import Accelerator
            with Accelerator.open(pkg, args.backend, task="device", lock=lock, log=_progress(args),
                                  **options) as acc:
                out["device"] = acc.status()
        if (pkg.root / LEARN_LOG).exists():
            updates = read_log(pkg.root)["updates"]
            out["learned_on_device"] = [u["name"] for u in updates]
            out["not_measured"] = [u["name"] for u in updates if not u.get("measured", True)]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{pkg.root}: generation {out['generation']}, board {out['board']}, network "
          f"{'-'.join(map(str, out['widths']))}, {out['files_checked']} files checked (sha256 ok)")
    if pkg.repaired:
        print(f"repaired: {pkg.repaired}")
    print("tasks: " + ", ".join(f"{pkg.label(t['task'])}{'' if t['live'] else ' (not live)'}" for t in out["tasks"]))
    if "learned_on_device" in out:
        print("learned on the device: " + ", ".join(
            n + (" (live, accuracy not measured: the learn was interrupted)" if n in out["not_measured"] else "")
            for n in out["learned_on_device"]))
    if "device" in out:
        d = out["device"]
        print(f"device ({args.backend}): {pkg.label(d['task'])} loaded, memories consistent: {d['consistent']}, "
              f"words rewritten on open: {sum(d['last_sync_words'].values())}")
        b = d["backend"]
        if b.get("bitstream"):
            print(f"bitstream: {b['bitstream']} ({b['bitfile']})"
                  + (f", replacing {b['replaced']}" if b.get("replaced") else "")
                  + (f"; clock {b['clock_mhz']:g} MHz" if b.get("clock_mhz") else "")
                  + f"; timeout {b['timeout_s']:g} s")


def add_runtime_parsers(sub: Any) -> None:
    """Add ``infer``, ``learn`` and ``status`` to the main CLI's subparsers."""
    def backend(p: argparse.ArgumentParser, default: str | None = "reference") -> None:
        p.add_argument("--backend", choices=BACKENDS, default=default,
                       help="reference (numpy, bit-exact), sim (Verilator), pynq (the board)")
        p.add_argument("--bitfile", help="pynq: the .bit file (default: DEPLOY_DIR/bitfile/*.bit)")
        p.add_argument("--build-dir", help="sim: the BUILD_DIR the package came from (default: the directory "
                                           "holding DEPLOY_DIR)")
        p.add_argument("--download", action="store_true",
                       help="pynq: program the bitstream even if the PL already holds it (default: attach to it, "
                            "keeping its live memories; download only when another or none is loaded)")
        p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                       help="pynq: how long one batch may take before it is called hung (default 10)")
        p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")

    i = sub.add_parser("infer", help="classify images on a deployed accelerator")
    i.add_argument("deploy_dir", metavar="DEPLOY_DIR")
    i.add_argument("--task", default=None, help="task number from 1 (as printed: T1, T2, ...) or its name "
                                               "(default: the first live task)")
    i.add_argument("--images", help=".npy uint8 [N, D] or .npz with 'images' (and 'labels')")
    i.add_argument("--dataset", help="'task' (the task's own test set) or a dataset name (its test set)")
    i.add_argument("--data-dir")
    i.add_argument("--limit", type=int, help="only the first N images")
    i.add_argument("--batch-size", type=int, default=1000)
    i.add_argument("--out", help="write classes, raw outputs and logits to this .npz")
    backend(i)
    i.set_defaults(func=cmd_infer, interrupted="interrupted; no outputs were written (--out is written only once every "
                                               "image is done)")

    l = sub.add_parser("learn", help="learn one more task on a deployed accelerator (hidden weights on the host)")
    l.add_argument("deploy_dir", metavar="DEPLOY_DIR")
    l.add_argument("--task", default="next", help="'next' (the stream's next task) or a JSON task spec file")
    l.add_argument("--epochs", type=int, help="epochs for the new task (default: the run's)")
    l.add_argument("--data-dir")
    backend(l)
    l.set_defaults(func=cmd_learn, interrupted="interrupted; the package and the device are unchanged (the "
                                               "update was not sealed; run learn again)")

    s = sub.add_parser("status", help="check a deployment package (and optionally its device)")
    s.add_argument("deploy_dir", metavar="DEPLOY_DIR")
    s.add_argument("--json", action="store_true")
    backend(s, default=None)
    s.set_defaults(func=cmd_status, interrupted="interrupted; the package is as it was, or a repair under "
                                                "way finishes on the next 'metabnn status'")

    add_remote_options(i, "reference")
    add_remote_options(l, "reference")
    add_remote_options(s, None)
    add_serve_parser(sub, backend)


# ---- learning from a workstation: ``metabnn serve`` and ``--remote`` (runtime/server.py, remote.py) ----

def add_remote_options(p: argparse.ArgumentParser, local_backend: str | None) -> None:
    """``--remote URL`` and ``--token-file F`` on infer/learn/status; with --remote the board's
    ``metabnn serve`` owns the device, so the local device options are refused."""
    p.add_argument("--remote", metavar="URL", help="use the accelerator that 'metabnn serve' serves at URL "
                                                  "(http://HOST:PORT) instead of a local backend")
    p.add_argument("--token-file", metavar="F", help="--remote: the server's token (default: "
                                                     "DEPLOY_DIR/server-token)")
    p.set_defaults(backend=None, local_func=p.get_default("func"), local_backend=local_backend, func=_local_or_remote)


def _local_or_remote(args: argparse.Namespace) -> None:
    if args.remote is None:
        if args.token_file:
            raise MetabnnError("--token-file is for --remote URL; add --remote or leave --token-file out")
        if args.backend is None:
            args.backend = args.local_backend
        return args.local_func(args)
    for flag in ("backend", "bitfile", "build_dir", "download", "timeout"):
        if getattr(args, flag, None):
            name = "--" + flag.replace("_", "-")
            raise MetabnnError(f"{name} is the board's choice with --remote ('metabnn serve DEPLOY_DIR --backend B' "
                               f"there); leave {name} out")
    from metabnn.runtime.remote import parse_url

    parse_url(args.remote)  # a malformed URL is refused before any work
    if args.local_func is cmd_status:
        return _cmd_status_remote(args)
    return args.local_func(args)


def _remote_parts(args: argparse.Namespace) -> tuple[str, str]:
    """(URL, token) of --remote, checked before any work."""
    from metabnn.runtime.package import resolve_deploy_dir
    from metabnn.runtime.remote import parse_url, token_for

    url = parse_url(args.remote)
    root = resolve_deploy_dir(args.deploy_dir)
    if not root.is_dir():
        raise MetabnnError(f"'{root}' is not a directory; give the DEPLOY_DIR (BUILD_DIR/deploy) of a metabnn build")
    return url, token_for(root, args.token_file)


def _open_device(args: argparse.Namespace, pkg: Any, task: int, lock: Any, options: dict[str, Any]) -> Any:
    if getattr(args, "remote", None):
        from metabnn.runtime.remote import RemoteAccelerator

        return RemoteAccelerator.open(*_remote_parts(args), pkg, task=task)
    from metabnn.runtime import Accelerator

    return Accelerator.open(pkg, args.backend, task=task, lock=lock, log=_progress(args), **options)


def _remote_device(args: argparse.Namespace) -> Any:
    """learn --remote: a factory ``(package) -> RemoteAccelerator``, or None for a local learn."""
    if not getattr(args, "remote", None):
        return None
    from metabnn.runtime.remote import RemoteAccelerator

    url, token = _remote_parts(args)
    return lambda pkg: RemoteAccelerator.open(url, token, pkg)


def _print_remote_update(entry: dict[str, Any]) -> None:
    if entry.get("remote") and entry.get("measured", True):
        print(f"  sent to {entry['remote']}: {entry['bytes_sent']:,} bytes ({entry['words_sent']:,} words in "
              f"{entry['files_sent']} files), request {entry['request_s'] * 1e3:.1f} ms (board: update "
              f"{entry['server_update_s'] * 1e3:.1f} ms, device write {entry['device_write_s'] * 1e3:.1f} ms)")


def _cmd_status_remote(args: argparse.Namespace) -> None:
    from metabnn.runtime import protocol as P
    from metabnn.runtime.remote import Client, RemoteAccelerator, out_of_step

    url, token = _remote_parts(args)
    lock, pkg = _lock_and_open(args, "status")
    with lock:
        server = Client(url, token).request("GET", "/status", what="status request")
        RemoteAccelerator(Client(url, token), pkg, server).check(server, states=False)
    mine, theirs = P.state(pkg.manifest), server["state"]
    out = {"deploy_dir": str(pkg.root), "remote": url, "server_deploy_dir": server["deploy_dir"],
           "in_step": mine == theirs, "generation": mine["generation"], "server_generation": theirs["generation"],
           "device": server["device"], "busy": server.get("busy"), "max_request_bytes": server["max_request_bytes"]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    d = server["device"]
    from metabnn.runtime.package import task_label

    print(f"{url}: metabnn serve of '{server['deploy_dir']}' on the {d['backend']['backend']} accelerator, "
          f"generation {theirs['generation']}, tasks {', '.join(task_label(server['tasks'], k) for k in d['live_tasks'])}")
    print(f"device: {task_label(server['tasks'], d['task'])} loaded, memories consistent: {d['consistent']}, "
          f"{d['images_inferred']} images inferred since serve started" + (f"; busy: {out['busy']}" if out["busy"] else ""))
    print(f"same build, register map and bitstream as '{pkg.root}': yes; in step with it: "
          + ("yes" if out["in_step"] else "NO: " + out_of_step(url, pkg.root, mine, theirs)))


def cmd_serve(args: argparse.Namespace) -> None:
    from metabnn.runtime import protocol as P
    from metabnn.runtime.package import ARTIFACT, MANIFEST, open_package, resolve_deploy_dir

    root = resolve_deploy_dir(args.deploy_dir)
    try:
        is_package = json.loads((root / MANIFEST).read_text()).get("artifact") == ARTIFACT
    except (OSError, ValueError, AttributeError):
        is_package = False
    if not is_package:
        open_package(root)  # one line saying what the directory is instead of a package
    if args.new_token:
        if (root / P.TOKEN_FILE).exists():
            raise MetabnnError(f"'{root / P.TOKEN_FILE}' already exists; delete it first to replace it (then copy the "
                               "new one to both sides)")
        from metabnn.atomic import ensure_writable

        ensure_writable(root / P.TOKEN_FILE, "DEPLOY_DIR")
        print(f"wrote {P.write_token(root)} (mode 0600); copy it into the other side's DEPLOY_DIR too")
        return
    if not 0 <= args.port <= 65535:
        raise MetabnnError(f"--port {args.port}: give a port from 1 to 65535 (0 picks a free one)")
    if not args.max_request_mb > 0:
        raise MetabnnError(f"--max-request-mb {args.max_request_mb}: give a positive size in MiB")
    from metabnn.runtime.server import serve

    def phase(message: str) -> None:
        args.interrupted = message

    serve(root, args.backend, host=args.host, port=args.port, token_file=args.token_file,
          max_request=int(args.max_request_mb * (1 << 20)), log=lambda s: print(s, file=sys.stderr, flush=True),
          progress=_progress(args), on_phase=phase, **_backend_options(args))


def add_serve_parser(sub: Any, backend: Callable[..., None]) -> None:
    from metabnn.runtime.protocol import DEFAULT_MAX_REQUEST, DEFAULT_PORT

    v = sub.add_parser("serve", help="serve a deployed accelerator to a workstation that learns "
                                     "(metabnn learn|infer|status --remote)")
    v.add_argument("deploy_dir", metavar="DEPLOY_DIR")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                       "only; 0.0.0.0: every interface)")
    v.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free one)")
    v.add_argument("--token-file", metavar="F", help="the token clients must send (default: DEPLOY_DIR/server-token, "
                                                     "written by the build)")
    v.add_argument("--max-request-mb", type=float, default=DEFAULT_MAX_REQUEST / (1 << 20),
                   help="largest request body taken, in MiB (default %(default)g)")
    v.add_argument("--new-token", action="store_true", help="write a new DEPLOY_DIR/server-token (mode 0600) for a "
                                                            "package built without one, and exit")
    backend(v, default="pynq")
    v.set_defaults(func=cmd_serve, interrupted="interrupted before serve listened; nothing was changed")
