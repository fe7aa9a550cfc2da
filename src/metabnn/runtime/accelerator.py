"""``Accelerator``: one API over the reference model, the Verilator simulation and the board.

    acc = Accelerator.open(DEPLOY_DIR, backend="reference", task=0)
    res = acc.infer(images)            # classes, raw outputs, logits, throughput/latency
    acc.select_task(1)                 # that task's thresholds (+ its own weights) and host affine
    acc.read_layer("MVAUBinary_rtl_1"); acc.write_layer("MVAUBinary_rtl_1", words)
    acc.status()

Opening repairs an interrupted package update, then reads back every memory and rewrites
what differs from the package's image of the selected task (a fresh board or a fresh
reference model gets every word, as FINN's driver writes at start-up; a board whose PL still
holds this bitstream is attached to, not reprogrammed, so it gets only the words that differ
from its live memories: none when the task is already there, only the wrong ones after half
an update). Inference is refused while memories are
being changed or after a failed read-back, so no result ever comes from mixed weights.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError
from metabnn.runtime.backends import make_backend
from metabnn.runtime.backends.base import Backend
from metabnn.runtime.lock import PackageLock
from metabnn.runtime.package import Package, open_package

MERGE_GAP = 4  # unchanged words between two changed runs cheaper to rewrite than a second burst


def test_hook(point: str) -> None:
    """Signal this process at a named point (tests of interrupted updates).

    METABNN_TEST_KILL=point[:N[:INT]]: SIGKILL (or SIGINT, a Ctrl-C) at the N-th pass through ``point``.
    """
    spec = os.environ.get("METABNN_TEST_KILL")
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != point:
        return
    n, _, sig = rest.partition(":")
    count = _HOOK_COUNTS.get(point, 0) + 1
    _HOOK_COUNTS[point] = count
    if count == int(n or 1):
        os.kill(os.getpid(), signal.SIGINT if sig == "INT" else signal.SIGKILL)


_HOOK_COUNTS: dict[str, int] = {}


def changed_runs(old: np.ndarray, new: np.ndarray, gap: int = MERGE_GAP) -> list[tuple[int, int]]:
    """[(start, stop)) word ranges covering every difference, nearby runs merged."""
    idx = np.flatnonzero(old != new)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    stops = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), stops.tolist()))


@dataclass
class InferResult:
    classes: np.ndarray  # int64 [N]
    raw: np.ndarray  # int64 [N, C]: the accelerator's output (popcount for an XNOR output layer)
    logits: np.ndarray  # float32 [N, C]: the host's per-task affine of the raw output
    stats: dict[str, Any] = field(default_factory=dict)


def check_images(manifest: dict[str, Any], x: np.ndarray, batch_size: int) -> None:
    """Refuse images that are not uint8 [N, input width], or a batch size below 1."""
    d = int(manifest["network"]["widths"][0])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != d:
        raise MetabnnError(f"images must be uint8 [N, {d}], got {x.dtype} {list(x.shape)}")
    if batch_size < 1:
        raise MetabnnError(f"--batch-size {batch_size}: give a positive number of images per batch")


class Accelerator:
    def __init__(self, pkg: Package, backend: Backend):
        self.pkg, self.backend = pkg, backend
        self.task: int | None = None
        self.consistent = False  # device memories == the package image of self.task, flushed
        self.modified: set[str] = set()  # layers changed by write_layer since the last sync
        self.images = 0
        self.last_sync: dict[str, int] = {}
        self._affine: tuple[np.ndarray, np.ndarray] | None = None
        self._flushed = False
        self._lock: PackageLock | None = None

    @classmethod
    def open(cls, deploy_dir: str | Path | Package, backend: str | Backend = "reference",
             task: int | str | None = None, repair: bool = True, lock: PackageLock | None = None,
             log: Any = None, **options: Any) -> "Accelerator":
        """Open the package's accelerator with ``task`` (0-based; default: the first live task) loaded.

        ``task="device"``: the live task whose image the device already holds (a board attached
        to keeps its task, nothing is written), else the first live task.

        Without ``lock`` the accelerator holds a shared package lock until ``close()``: no
        ``metabnn learn`` can change the package or the device meanwhile (and it refuses to
        open while one does). ``deploy_dir`` may be a ``Package`` already opened under ``lock``.
        ``log`` gets progress lines (the sim backend's Verilator compile; whether the pynq backend attached
        to the loaded bitstream or downloaded it).
        """
        own, acc = None, None
        if isinstance(deploy_dir, Package):
            pkg = deploy_dir
        else:
            from metabnn.runtime.package import resolve_deploy_dir

            if lock is None:
                root = resolve_deploy_dir(deploy_dir)
                if not root.is_dir():
                    raise MetabnnError(f"'{root}' is not a directory; give the DEPLOY_DIR (BUILD_DIR/deploy) of a "
                                       "metabnn build")
                own = lock = PackageLock(root, "infer").shared()
        try:
            if not isinstance(deploy_dir, Package):
                pkg = open_package(deploy_dir, repair=repair, lock=lock)
            if backend in ("sim", "pynq") and log is not None:  # sim: its compile; pynq: attach or download
                options.setdefault("log", log)
            be = backend if isinstance(backend, Backend) else make_backend(backend, **options)
            be.open(pkg)
            acc = cls(pkg, be)
            acc._lock = own
            live = pkg.live_tasks
            if not live:
                raise MetabnnError(f"'{pkg.root}' has no live task; rebuild the package with 'metabnn build'")
            if task == "device":  # keep what the device holds, if it is a live task
                task = acc.device_task()
            acc.select_task(live[0] if task is None else int(task))
        except BaseException:
            if acc is not None:
                acc.backend.close()
            if own is not None:
                own.release()
            raise
        return acc

    # ---- memories ----------------------------------------------------------------------
    def _mem(self, layer: int | str) -> int:
        for l in self.pkg.layers:
            if layer in (l["index"], l["name"]):
                return int(l["index"])
        raise MetabnnError(f"no runtime memory {layer!r}; the accelerator has "
                           f"{', '.join(l['name'] for l in self.pkg.layers)}")

    def read_layer(self, layer: int | str, offset: int = 0, n: int | None = None) -> np.ndarray:
        m = self._mem(layer)
        size = self.pkg.layers[m]["memory"]["words"]
        return self.backend.read_words(m, offset, size - offset if n is None else n)

    def write_layer(self, layer: int | str, words: np.ndarray, offset: int = 0, verify: bool = True,
                    flush: bool = True) -> int:
        """Write words into one memory (read back and flushed by default); returns words written."""
        m = self._mem(layer)
        words = np.asarray(words, dtype=np.uint32).reshape(-1)
        self.consistent = False
        self.backend.write_words(m, offset, words)
        if verify and not np.array_equal(self.backend.read_words(m, offset, words.size), words):
            raise MetabnnError(f"read-back of {self.pkg.layers[m]['name']} differs from what was written; "
                               "the device is in an unknown state: open it again")
        self.modified.add(self.pkg.layers[m]["name"])
        if flush:
            self.backend.flush()
            self._flushed, self.consistent = True, True
        return int(words.size)

    def sync(self, image: list[np.ndarray], hook: str | None = None) -> dict[str, int]:
        """Make the device hold ``image``: read back, write only differing words, verify, flush once.

        Returns words written per layer. Until it returns, inference is refused.
        """
        self.consistent = False
        written = {}
        for l, new in zip(self.pkg.layers, image):
            m = int(l["index"])
            cur = self.backend.read_words(m, 0, new.size)
            n = 0
            for a, b in changed_runs(cur, new):
                self.backend.write_words(m, a, new[a:b])
                n += b - a
                if hook:
                    test_hook(hook)
            written[l["name"]] = n
        for l, new in zip(self.pkg.layers, image):  # FINN's driver verifies every file it wrote
            if not np.array_equal(self.backend.read_words(int(l["index"]), 0, new.size), new):
                raise MetabnnError(f"read-back of {l['name']} differs from the package image; the device is "
                                   "in an unknown state and serves no inference: run the command again (it rewrites "
                                   "every differing word; on the board, --download reprograms it), and if it persists, "
                                   "check that the bitstream is this build's")
        if any(written.values()) or not self._flushed:  # FINN flushes once after loading at start-up too
            self.backend.flush()
            self._flushed = True
        self.consistent, self.modified, self.last_sync = True, set(), written
        return written

    # ---- tasks and inference -----------------------------------------------------------
    def device_task(self) -> int | None:
        """The live task whose every memory word the device holds now (read back), or None."""
        now = [self.backend.read_words(int(l["index"]), 0, int(l["memory"]["words"])) for l in self.pkg.layers]
        for t in self.pkg.live_tasks:
            if all(np.array_equal(a, b) for a, b in zip(now, self.pkg.image(t))):
                return t
        return None

    def select_task(self, task: int) -> dict[str, int]:
        """Load task ``task``'s memories (only words that differ) and its host affine."""
        image = self.pkg.image(task)
        affine = self.pkg.host_affine(task)
        written = self.sync(image)
        self.task, self._affine = int(task), affine
        return written

    def infer(self, images: np.ndarray, batch_size: int = 1000) -> InferResult:
        if not self.consistent:
            raise MetabnnError("the accelerator's memories are being changed or failed their read-back; "
                               "no inference until it is opened (or a task selected) again")
        x = np.asarray(images)
        check_images(self.pkg.manifest, x, batch_size)
        out = self.pkg.manifest["network"]["output"]
        scale, bias = self._affine
        raws, lat = [], []
        t0 = time.perf_counter()
        for i in range(0, len(x), batch_size):
            s = time.perf_counter()
            raws.append(self.backend.run(x[i:i + batch_size]))
            lat.append(time.perf_counter() - s)
            test_hook("infer_batch")
        total = time.perf_counter() - t0
        raw = np.concatenate(raws) if raws else np.zeros((0, len(bias)), dtype=np.int64)
        a = 2 * raw - int(out["n_in"]) if out["xnor"] else raw
        logits = (a.astype(np.float32) * scale + bias).astype(np.float32)
        self.images += len(x)
        lat_ms = np.array(lat) * 1e3
        stats = {"images": int(len(x)), "seconds": total, "images_per_s": len(x) / total if total > 0 else 0.0,
                 "batches": len(lat), "batch_size": int(batch_size),
                 "batch_latency_ms": {"mean": float(lat_ms.mean()) if lat else 0.0,
                                      "p50": float(np.median(lat_ms)) if lat else 0.0,
                                      "max": float(lat_ms.max()) if lat else 0.0},
                 "backend": self.backend.name, "task": self.task}
        return InferResult(np.argmax(logits, axis=1), raw, logits, stats)

    def status(self) -> dict[str, Any]:
        m = self.pkg.manifest
        return {"deploy_dir": str(self.pkg.root), "backend": self.backend.info(), "generation": m["generation"],
                "board": m.get("board"), "widths": m["network"]["widths"], "task": self.task,
                "live_tasks": self.pkg.live_tasks, "tasks": [t["name"] for t in m["tasks"]],
                "consistent": self.consistent, "modified_layers": sorted(self.modified),
                "repaired": self.pkg.repaired, "images_inferred": self.images,
                "last_sync_words": self.last_sync,
                "layers": [{"name": l["name"], "words": l["memory"]["words"], "ip": l["memory"]["ip"]}
                           for l in self.pkg.layers]}

    def close(self) -> None:
        self.backend.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "Accelerator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
