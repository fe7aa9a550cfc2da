"""Continual learning on a deployed accelerator (``metabnn learn``).

1. Open the accelerator (repairs an interrupted update, re-syncs the device).
2. Stage: the deployment's hidden-weight checkpoint learns the new task on the host with
   the run's own metaplastic optimizer (ContinualTrainer.append_tasks); new binary weights
   and the new task's thresholds become memory images and package files in deploy/.staging/.
3. Seal the journal (from here the update rolls forward), write only the changed words to
   the device, read every memory back, flush once.
4. Commit the package: the new manifest marks the new task live.
5. Measure the accuracy matrix on the accelerator, task by task; append to learn.json.
A failed read-back aborts the update and puts the old image back: all or nothing.
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
from metabnn.runtime.package import HOST, LEARN_LOG, Package, open_package, sha256_file
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
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MetabnnError(f"--task {spec!r} is neither 'next' nor an existing JSON task spec file") from None
    except (OSError, ValueError) as e:
        raise MetabnnError(f"task spec file '{path}' is not valid JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise MetabnnError(f"task spec file '{path}' must hold one JSON object (a task spec)")
    return data


def _same(path: Path, data: bytes) -> bool:
    if not path.is_file():
        return False
    if path.suffix == ".npz":  # zip timestamps differ; compare the arrays
        with np.load(path) as a, np.load(io.BytesIO(data)) as b:
            return set(a.files) == set(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    return path.read_bytes() == data


def _train(pkg: Package, staging: Path, spec_arg: str | dict[str, Any], epochs: int | None,
           data_dir: str | None, log: Log, progress: bool) -> tuple[Any, dict[str, Any], Any]:
    from metabnn.data import task_from_spec
    from metabnn.train import checkpoint as ckpt
    from metabnn.train.continual import ContinualTrainer

    run = staging / "run"
    run.mkdir()
    shutil.copyfile(pkg.root / pkg.manifest["host"]["checkpoint"], run / ckpt.CHECKPOINT)
    state = ckpt.load_checkpoint(run)
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
    new_task = task_from_spec(spec, config["data"]["dir"])
    if new_task.name in [t["name"] for t in pkg.tasks]:
        raise MetabnnError(f"the deployment already holds a task named {new_task.name!r}; give another task")
    old = [task_from_spec(s, config["data"]["dir"]) for s in state["task_specs"][:done]]
    trainer = ContinualTrainer(config, run, old, log=log, progress=progress)
    trainer.load_state_dict(state)
    trainer.append_tasks([new_task])
    ckpt.write_run_files(run, config, [t.spec for t in trainer.tasks])
    trainer.run()
    return trainer, config, run


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


def learn(deploy_dir: str | Path, task_spec: str | dict[str, Any] = "next", backend: str = "reference",
          epochs: int | None = None, data_dir: str | None = None, log: Log = print, progress: bool = False,
          **backend_options: Any) -> dict[str, Any]:
    """Learn one more task on the deployed accelerator; returns the learn.json entry of this update."""
    from metabnn.export.verify import float64_model, torch_predict
    from metabnn.runtime.hw_images import package_files, task_images

    acc = Accelerator.open(deploy_dir, backend, **backend_options)
    pkg, root = acc.pkg, acc.pkg.root
    if pkg.repaired:
        log(f"repaired: {pkg.repaired}")
    t_start = time.perf_counter()
    staging = journal.begin(root)
    try:
        trainer, config, run = _train(pkg, staging, task_spec, epochs, data_dir, log, progress)
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
        for rel, data in files.items():
            if not _same(root / rel, data):
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).write_bytes(data)
        (staging / HOST).mkdir(exist_ok=True)
        (staging / "host.ckpt.tmp").rename(staging / HOST / "checkpoint.pt")
        manifest = json.loads(json.dumps(pkg.manifest))
        manifest["generation"] = int(manifest["generation"]) + 1
        manifest["tasks"] = entries
        for p in sorted(staging.rglob("*")):
            if p.is_file():
                manifest["files"][p.relative_to(staging).as_posix()] = sha256_file(p)
        test_hook("before_seal")
        journal.seal(root, manifest, {"what": f"learn task {names[-1]}", "task": n - 1})
    except BaseException:
        journal.abort(root)  # nothing sealed: the package and the device are unchanged
        raise
    t_dev = time.perf_counter()
    try:
        written = acc.sync(images[n - 1], hook="device_write")
    except MetabnnError:
        journal.abort(root)
        acc.sync(pkg.image(acc.task))  # put the old weights back before anything runs
        raise
    device_s = time.perf_counter() - t_dev
    test_hook("before_commit")
    journal.commit(root)
    update_s = time.perf_counter() - t_dev
    acc.pkg = open_package(root, repair=False)
    acc.task, acc._affine = n - 1, acc.pkg.host_affine(n - 1)
    flipped = _bits_flipped(pkg, old_shared, images[0])
    log(f"device update: {sum(written.values())} words written, {sum(flipped.values())} weight bits flipped, "
        f"{update_s:.3f} s")

    row, torch_row, agree = [], [], {}
    # The golden model is float64 PyTorch, as in the export gate: a float32 forward pass can
    # land on the other side of a threshold that an exact integer pre-activation touches.
    golden = float64_model(src.model)
    for j, task in enumerate(trainer.tasks):
        acc.select_task(j)
        x, y = task.test_x.numpy(), task.test_y.numpy()
        res = acc.infer(x)
        row.append(_percent_correct(res.classes, y))
        torch_cls, _ = torch_predict(golden, src.bn_states[j], x)
        agree[names[j]] = int((torch_cls == res.classes).sum())
        torch_row.append(_percent_correct(torch_cls, y))
        if agree[names[j]] != len(y):
            log(f"WARNING: the accelerator disagrees with float64 PyTorch on {len(y) - agree[names[j]]} "
                f"test images of {names[j]}; the weights are live, but this is a defect: please report it")
    acc.select_task(n - 1)
    acc.close()
    entry = {"task": n - 1, "name": names[-1], "backend": acc.backend.name, "generation": manifest["generation"],
             "bits_flipped": flipped, "words_written": written, "update_s": update_s, "device_write_s": device_s,
             "train_s": t_trained - t_start, "acc": row, "torch_acc": torch_row,
             "torch_acc_float32": [float(v) for v in trainer.metrics["acc"][-1][:n]],
             "test_images": [int(len(t.test_x)) for t in trainer.tasks],
             "agreements_with_pytorch": agree, "meta": config["optim"]["meta"]}
    _append_log(root, names, entry)
    return entry


def _append_log(root: Path, names: list[str], entry: dict[str, Any]) -> None:
    path = root / LEARN_LOG
    log = json.loads(path.read_text()) if path.is_file() else {"updates": []}
    log["updates"] = [u for u in log["updates"] if u["generation"] < entry["generation"]] + [entry]
    n = len(names)
    log["tasks"] = names
    log["acc"] = [(u["acc"] + [None] * n)[:n] for u in log["updates"]]
    log["torch_acc"] = [(u["torch_acc"] + [None] * n)[:n] for u in log["updates"]]
    for key in ("bits_flipped", "words_written", "update_s"):
        log[key] = {u["name"]: u[key] for u in log["updates"]}
    log["note"] = ("acc[i][j]: accuracy (%) on task j measured on the accelerator after the i-th device update; "
                   "torch_acc: the same from PyTorch (float64, the golden model) on the same test images")
    atomic_write_json(path, log)
