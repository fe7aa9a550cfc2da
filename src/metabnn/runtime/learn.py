"""Continual learning on a deployed accelerator (``metabnn learn``).

0. Take the package's lock exclusively for the whole run (one writer; readers refused).
1. Open the package (repairs an interrupted update), check the new task, open the
   accelerator (re-syncs the device).
2. Stage: the deployment's hidden-weight checkpoint learns the new task on the host with
   the run's own metaplastic optimizer (ContinualTrainer.append_tasks); new binary weights
   and the new task's thresholds become memory images and package files in deploy/.staging/,
   with learn.json listing the update as not yet measured.
3. Seal the journal (from here the update rolls forward), write only the changed words to
   the device, read every memory back, flush once.
4. Commit the package: the new manifest marks the new task live (learn.json with it).
5. Measure the accuracy matrix on the accelerator, task by task; complete the learn.json entry.
A failed read-back aborts the update and puts the old image back: all or nothing.

``learn --remote`` runs the same steps with the board behind ``metabnn serve`` as the device:
steps 0-2 and 5 here, step 3 and the board's commit on the board (``write_device``, the same
function, via runtime/server.py), then this package's commit (runtime/remote.py).
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from metabnn.atomic import atomic_write_json
from metabnn.errors import MetabnnError
from metabnn.runtime import journal
from metabnn.runtime.accelerator import Accelerator, test_hook
from metabnn.runtime.package import HOST, LEARN_LOG, Package, open_package, read_dat, sha256_file
from metabnn.runtime.words import decode_mvau

Log = Callable[[str], None]


def next_task_spec(specs: list[dict[str, Any]], done: int) -> dict[str, Any]:
    """The task after the ``done`` finished ones: the stream's own next task, or the next permutation."""
    if len(specs) > done:
        return specs[done]
    last = specs[-1]
    if last.get("kind") != "permuted":
        raise MetabnnError(f"'next' extends permuted streams only (this one is {last.get('kind')!r}); "
                           "give --task a JSON task spec file")
    from metabnn.data.tasks import permutation

    seed = int(last["stream_seed"]) + done
    return {**last, "name": f"{last['name'].rsplit('-', 1)[0]}-{done + 1}", "index": done, "seed": seed,
            "permutation": permutation(seed, int(last["dim"])).tolist()}


def resolve_task_spec(spec: str | dict[str, Any], specs: list[dict[str, Any]], done: int) -> dict[str, Any]:
    if isinstance(spec, dict):
        return spec
    if spec == "next":
        return next_task_spec(specs, done)
    path = Path(spec)
    example = ('e.g. {"kind": "sequence", "dataset": "fashion-mnist", "name": "fmnist"}, or an entry of '
               "DEPLOY_DIR/host/tasks.json")
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise MetabnnError(f"--task '{spec}' is neither 'next' nor an existing file; give 'next' or a JSON task "
                           f"spec file ({example})") from None
    except (OSError, ValueError) as e:
        raise MetabnnError(f"--task '{path}' is not a readable JSON file ({type(e).__name__}); give a JSON task "
                           f"spec file ({example})") from None
    if not isinstance(data, dict):
        raise MetabnnError(f"--task '{path}' must hold one JSON object, a task spec ({example})")
    return data


def _same(path: Path, data: bytes) -> bool:
    if not path.is_file():
        return False
    if path.suffix == ".npz":  # zip timestamps differ; compare the arrays
        with np.load(path) as a, np.load(io.BytesIO(data)) as b:
            return set(a.files) == set(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    return path.read_bytes() == data


def _prepare(pkg: Package, staging: Path, spec_arg: str | dict[str, Any], epochs: int | None,
             data_dir: str | None) -> tuple[dict[str, Any], dict[str, Any], Path, Any, list[Any]]:
    """The host checkpoint as a run directory in the staging area, and the new task (validated)."""
    from metabnn.data import task_from_spec
    from metabnn.train import checkpoint as ckpt

    rel = pkg.manifest.get("host", {}).get("checkpoint")
    if not rel and pkg.manifest.get("host", {}).get("hidden_weights"):
        raise MetabnnError(f"'{pkg.root}' learns from a workstation (its hidden weights are there, not here); run "
                           "'metabnn learn DEPLOY_DIR --remote URL' on the workstation against 'metabnn serve' here")
    if not rel:
        raise MetabnnError(f"'{pkg.root}' holds no hidden-weight checkpoint (host/checkpoint.pt), which learn "
                           "trains from; rebuild the package with 'metabnn build' from the run's export")
    src = pkg.root / rel
    # Read from the package itself, so that any message names the file the user gave.
    # The package's manifest holds the checkpoint's sha256 (open_package checked it): the
    # verifying reader of metabnn.train.checkpoint takes that instead of a run manifest.
    if src.name != ckpt.CHECKPOINT:
        raise MetabnnError(f"'{pkg.root}' names '{rel}' as its checkpoint; rebuild the package with 'metabnn build'")
    state = ckpt.load_checkpoint(src.parent, expected_sha256=pkg.manifest["files"].get(rel) or sha256_file(src))
    run = staging / "run"
    run.mkdir()
    shutil.copyfile(src, run / ckpt.CHECKPOINT)
    config = state["config"]
    if epochs is not None:
        config["train"]["epochs"] = int(epochs)
    if data_dir is not None:
        config["data"]["dir"] = data_dir
    done = len(state["bn_states"])
    if done != len(pkg.tasks):
        raise MetabnnError(f"the package's checkpoint has {done} finished tasks, its manifest {len(pkg.tasks)}; "
                           "the package is inconsistent: rebuild it")
    spec = resolve_task_spec(spec_arg, state["task_specs"], done)
    where = "the next task" if spec_arg == "next" else f"--task '{spec_arg}'"
    try:
        new_task = task_from_spec(spec, config["data"]["dir"])
    except MetabnnError as e:
        raise MetabnnError(f"{where}: {e}") from None
    if new_task.name in [t["name"] for t in pkg.tasks]:
        raise MetabnnError(f"the deployment already holds a task named {new_task.name!r}; give --task a spec file "
                           "with another 'name'")
    dim, classes = int(pkg.manifest["network"]["widths"][0]), int(pkg.manifest["network"]["widths"][-1])
    if new_task.test_x.shape[1] != dim or new_task.num_classes != classes:
        raise MetabnnError(f"{where} ({new_task.name}) has {new_task.test_x.shape[1]} inputs and "
                           f"{new_task.num_classes} classes; the deployed network takes {dim} and {classes}: "
                           "give a task of the same shape")
    old = [task_from_spec(s, config["data"]["dir"]) for s in state["task_specs"][:done]]
    return state, config, run, new_task, old


def _train(state: dict[str, Any], config: dict[str, Any], run: Path, new_task: Any, old: list[Any],
           log: Log, progress: bool) -> Any:
    from metabnn.train import checkpoint as ckpt
    from metabnn.train.continual import ContinualTrainer

    trainer = ContinualTrainer(config, run, old, log=log, progress=progress)
    trainer.load_state_dict(state)
    trainer.append_tasks([new_task])
    ckpt.write_run_files(run, config, [t.spec for t in trainer.tasks])
    trainer.run()
    return trainer


def _derive(run: Path) -> tuple[dict[str, np.ndarray], Any]:
    from metabnn.export.export import binary_weights
    from metabnn.export.source import read_run
    from metabnn.export.task_parameters import build_parameters
    from metabnn.train.models import batchnorm_layers

    src = read_run(run)
    bn = batchnorm_layers(src.model)
    params = build_parameters(binary_weights(src.model), [n for n, _ in bn], src.bn_states,
                              [float(m.eps) for _, m in bn], int(src.model.input_bits))
    return params, src


def _percent_correct(classes: np.ndarray, labels: np.ndarray) -> float:
    # the trainer's formula (metrics.accuracy), so the rows compare exactly with its matrix
    return 100.0 * int((classes == labels).sum()) / max(len(labels), 1)


def _bits_flipped(pkg: Package, old: list[np.ndarray], new: list[np.ndarray]) -> dict[str, int]:
    return {l["name"]: int((decode_mvau(o, l) != decode_mvau(n, l)).sum())
            for l, o, n in zip(pkg.layers, old, new) if l["kind"] == "mvau"}


def _import_training_stack() -> None:
    """Import what training needs now, with Ctrl-C held back until the imports are done.

    torch imports its compiler lazily, at the first optimizer; a Ctrl-C that lands inside that
    import leaves torch half-imported (an AttributeError instead of a clean interruption, or the
    interruption lost). Held back, the Ctrl-C takes effect right after, as the user meant it.
    """
    import signal
    import threading

    def imports() -> None:
        import torch._dynamo  # noqa: F401

        import metabnn.data  # noqa: F401
        import metabnn.export.source  # noqa: F401
        import metabnn.export.verify  # noqa: F401
        import metabnn.train.continual  # noqa: F401

    if threading.current_thread() is not threading.main_thread():
        imports()
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.append(1))
    try:
        imports()
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def _stderr(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def stage_files(root: Path, staging: Path, files: dict[str, bytes]) -> None:
    """Stage every file of ``files`` ({relative path: bytes}) that differs from the package's."""
    for rel, data in files.items():
        if not _same(root / rel, data):
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(data)


def next_manifest(pkg: Package, staging: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of the next generation: ``entries`` as its tasks, the staged files' sha256."""
    manifest = json.loads(json.dumps(pkg.manifest))
    manifest["generation"] = int(manifest["generation"]) + 1
    manifest["tasks"] = entries
    for p in sorted(staging.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            manifest["files"][p.relative_to(staging).as_posix()] = sha256_file(p)
    return manifest


def staged_image(root: Path, manifest: dict[str, Any], task: int) -> list[np.ndarray]:
    """Every memory's words for ``task`` in the staged (sealed, not yet committed) update."""
    from metabnn.runtime.package import STAGING

    staging = root / STAGING
    pkg = Package(root, manifest)
    entry = pkg.task_entry(task)
    own = {Path(f).name for f in entry["files"]}
    out = []
    for l in pkg.layers:
        f = l["memory"]["file"]
        rel = f"{entry['dir']}/runtime_weights/{f}" if f in own else f"driver/runtime_weights/{f}"
        out.append(read_dat(staging / rel if (staging / rel).is_file() else root / rel))
    return out


def write_device(root: Path, acc: Accelerator, image: list[np.ndarray], phase: Log) -> tuple[dict[str, int], float]:
    """Write the sealed update's ``image`` into the device (changed words only, read back, one
    flush), then commit the package; returns (words written per layer, seconds of device write).

    A failed read-back drops the update and puts the old words back: all or nothing. Local
    learns and ``metabnn serve`` (for ``learn --remote``) both update through here.
    """
    t_dev = time.perf_counter()
    try:
        written = acc.sync(image, hook="device_write")
    except MetabnnError:
        journal.abort(root)
        phase("interrupted; the update was dropped (the device failed its read-back): the package is unchanged "
              "and the next open reloads the device")
        acc.sync(acc.pkg.image(acc.task))  # put the old weights back before anything runs
        raise
    device_s = time.perf_counter() - t_dev
    test_hook("before_commit")
    journal.commit(root)
    return written, device_s


def learn(deploy_dir: str | Path, task_spec: str | dict[str, Any] = "next", backend: str = "reference",
          epochs: int | None = None, data_dir: str | None = None, log: Log = print, progress: bool = False,
          on_phase: Log | None = None, warn: Log = _stderr, remote: Any = None,
          **backend_options: Any) -> dict[str, Any]:
    """Learn one more task on the deployed accelerator; returns the learn.json entry of this update.

    ``log`` gets progress lines, ``warn`` what must be seen anyway (a repair, a disagreement);
    ``on_phase`` is told, as the update advances, what an interruption would leave behind.
    ``remote``: a callable ``(pkg) -> RemoteAccelerator`` (``metabnn learn --remote``): the
    board behind ``metabnn serve`` is the device, this package keeps the hidden weights.
    """
    from metabnn.runtime.lock import PackageLock
    from metabnn.runtime.package import require_writable, resolve_deploy_dir

    if epochs is not None and (isinstance(epochs, bool) or int(epochs) < 1):
        raise MetabnnError(f"--epochs {epochs}: give a positive number of epochs (or leave it out for the run's own)")
    root = resolve_deploy_dir(deploy_dir)
    if not root.is_dir():
        raise MetabnnError(f"'{root}' is not a directory; give the DEPLOY_DIR (BUILD_DIR/deploy) of a metabnn build")
    phase = on_phase or (lambda s: None)
    require_writable(root, "learn writes the new task into it",
                     f"make it writable (chmod -R u+w '{root}') or learn on a writable copy; nothing was changed")
    _import_training_stack()
    with PackageLock(root, "learn").exclusive() as lock:
        pkg = open_package(root, lock=lock, command="learn")
        if pkg.repaired:
            warn(f"repaired: {pkg.repaired}")
        read_log(root)  # a damaged log is refused now, not after minutes of training
        return _learn(pkg, lock, task_spec, backend, epochs, data_dir, log, progress, phase, warn, backend_options,
                      remote)


def _learn(pkg: Package, lock: Any, task_spec: str | dict[str, Any], backend: str, epochs: int | None,
           data_dir: str | None, log: Log, progress: bool, phase: Log, warn: Log,
           backend_options: dict[str, Any], remote: Any = None) -> dict[str, Any]:
    from metabnn.export.verify import float64_model, torch_predict
    from metabnn.runtime.hw_images import package_files, task_images

    root = pkg.root
    t_start = time.perf_counter()
    staging = journal.begin(root)
    acc = None
    try:
        state, config, run, new_task, old = _prepare(pkg, staging, task_spec, epochs, data_dir)
        acc = remote(pkg) if remote else Accelerator.open(pkg, backend, lock=lock, log=log, **backend_options)
        log(f"training {new_task.name} on the host ({config['train']['epochs']} epochs) from the package's "
            "hidden weights")
        trainer = _train(state, config, run, new_task, old, log, progress)
        params, src = _derive(run)
        t_trained = time.perf_counter()
        n = len(trainer.tasks)
        names = [t.name for t in trainer.tasks]
        images = task_images(pkg, params)
        old_shared = pkg.shared_image()
        files, entries = package_files(pkg, images, params, names)
        shutil.copyfile(run / "checkpoint.pt", staging / "host.ckpt.tmp")
        buf = io.BytesIO()
        np.savez_compressed(buf, **params)
        files[f"{HOST}/parameters.npz"] = buf.getvalue()
        files[f"{HOST}/tasks.json"] = (json.dumps({"tasks": [t.spec for t in trainer.tasks]}) + "\n").encode()
        shutil.rmtree(run)
        stage_files(root, staging, files)
        (staging / HOST).mkdir(exist_ok=True)
        (staging / "host.ckpt.tmp").rename(staging / HOST / "checkpoint.pt")
        manifest = next_manifest(pkg, staging, entries)
        flipped = _bits_flipped(pkg, old_shared, images[0])
        label = f"T{n} ({names[-1]})"
        # The log entry travels with the update: whatever completes it (this process, or the repair
        # after a kill) makes it live together with the weights, so learn.json lists every live task.
        provisional = {"task": n - 1, "name": names[-1], "backend": acc.backend.name,
                       "generation": manifest["generation"], "bits_flipped": flipped, "words_written": None,
                       "update_s": None, "train_s": time.perf_counter() - t_start, "acc": None, "torch_acc": None,
                       "measured": False, "meta": config["optim"]["meta"],
                       "note": "live, but the learn was interrupted before the accuracy was measured on the "
                               "accelerator (words_written unknown: the next open wrote what was missing)"}
        atomic_write_json(staging / LEARN_LOG, _log_with(read_log(root), names, provisional))
        test_hook("before_seal")
        journal.seal(root, manifest, {"what": f"learn task {names[-1]}", "task": n - 1})
        if remote:
            phase(f"interrupted while the board applies the update of {label}; this package keeps it (sealed: "
                  f"the next 'metabnn status {root}' finishes it); if 'metabnn status {root} --remote URL' then "
                  "finds the board out of step, copy the package to the board again and restart 'metabnn serve'")
        else:
            phase(f"interrupted while writing the device; the update of {label} is sealed and is finished by the "
                  f"next 'metabnn status {root}' (or infer/learn), which also reloads the device")
    except BaseException:
        if acc is not None:
            acc.close()
        journal.abort(root)  # the device is not touched yet: dropping the update leaves everything as it was
        raise
    t_dev = time.perf_counter()
    try:
        if remote:  # the board runs write_device on its own copy of the package
            written, device_s = acc.apply_update(root, manifest, n - 1, phase)
        else:
            written, device_s = write_device(root, acc, staged_image(root, manifest, n - 1), phase)
    except MetabnnError:
        acc.close()
        raise
    update_s = time.perf_counter() - t_dev
    phase(f"interrupted while measuring the accuracy; {label} is learned and live (learn.json lists it as "
          "not measured)")
    test_hook("after_commit")
    acc.pkg = open_package(root, repair=False, lock=lock, command="learn")
    acc.task, acc._affine = n - 1, acc.pkg.host_affine(n - 1)
    log(f"device update: {sum(written.values())} words written, {sum(flipped.values())} weight bits flipped, "
        f"{update_s:.3f} s")

    row, torch_row, agree = [], [], {}
    # The golden model is float64 PyTorch, as in the export gate: a float32 forward pass can
    # land on the other side of a threshold that an exact integer pre-activation touches.
    golden = float64_model(src.model)
    try:
        for j, task in enumerate(trainer.tasks):
            t0 = time.perf_counter()
            log(f"measuring T{j + 1} ({names[j]}) on the {acc.backend.name} accelerator: {len(task.test_x)} test "
                "images")
            acc.select_task(j)
            x, y = task.test_x.numpy(), task.test_y.numpy()
            res = acc.infer(x)
            row.append(_percent_correct(res.classes, y))
            torch_cls, _ = torch_predict(golden, src.bn_states[j], x)
            agree[names[j]] = int((torch_cls == res.classes).sum())
            torch_row.append(_percent_correct(torch_cls, y))
            log(f"  T{j + 1} ({names[j]}): {row[-1]:.2f}% on the accelerator, PyTorch {torch_row[-1]:.2f}%, "
                f"{agree[names[j]]}/{len(y)} predictions equal ({time.perf_counter() - t0:.1f} s)")
            if agree[names[j]] != len(y):
                warn(f"WARNING: the accelerator disagrees with float64 PyTorch on {len(y) - agree[names[j]]} "
                     f"test images of T{j + 1} ({names[j]}); the weights are live, but this is a defect: "
                     "please report it")
        acc.select_task(n - 1)
    finally:
        acc.close()
    entry = {"task": n - 1, "name": names[-1], "backend": acc.backend.name, "generation": manifest["generation"],
             "bits_flipped": flipped, "words_written": written, "update_s": update_s, "device_write_s": device_s,
             "train_s": t_trained - t_start, "acc": row, "torch_acc": torch_row,
             "torch_acc_float32": [float(v) for v in trainer.metrics["acc"][-1][:n]],
             "test_images": [int(len(t.test_x)) for t in trainer.tasks],
             "agreements_with_pytorch": agree, "meta": config["optim"]["meta"], "measured": True}
    if remote:
        entry.update(acc.last_update, device_write_s=device_s)
    atomic_write_json(root / LEARN_LOG, _log_with(read_log(root), names, entry))
    return entry


def read_log(root: Path) -> dict[str, Any]:
    path = root / LEARN_LOG
    if not path.exists():
        return {"updates": []}
    try:
        log = json.loads(path.read_text())
        assert isinstance(log, dict) and isinstance(log["updates"], list)
        assert all(isinstance(u, dict) and isinstance(u["generation"], int) and isinstance(u["name"], str)
                   for u in log["updates"])
    except (OSError, ValueError, KeyError, AssertionError) as e:
        raise MetabnnError(f"'{path}' (the log of device updates) is damaged ({type(e).__name__}); move it away "
                           "(it is only a log: the package does not depend on it) and run again") from None
    return log


def _log_with(log: dict[str, Any], names: list[str], entry: dict[str, Any]) -> dict[str, Any]:
    """``log`` with ``entry`` as its last update (replacing an entry of the same generation)."""
    log = dict(log)
    log["updates"] = [u for u in log["updates"] if u["generation"] < entry["generation"]] + [entry]
    n = len(names)
    log["tasks"] = names
    log["acc"] = [(list(u.get("acc") or []) + [None] * n)[:n] for u in log["updates"]]
    log["torch_acc"] = [(list(u.get("torch_acc") or []) + [None] * n)[:n] for u in log["updates"]]
    for key in ("bits_flipped", "words_written", "update_s"):
        log[key] = {u["name"]: u.get(key) for u in log["updates"]}
    log["note"] = ("acc[i][j]: accuracy (%) on task j measured on the accelerator after the i-th device update; "
                   "torch_acc: the same from PyTorch (float64, the golden model) on the same test images; an "
                   "update with measured=false is live but was interrupted before it was measured")
    return log
