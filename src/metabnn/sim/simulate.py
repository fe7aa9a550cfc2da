"""``simulate``: a BUILD dir's whole accelerator, cycle by cycle, on a task's test images.

Loads the weights and the task's thresholds over AXI-lite exactly as FINN's board driver
does (every ``runtime_weights/*.dat`` file written word by word from its layer's base,
then read back and checked), streams the task's test images, applies the host-side output
affine + argmax, and compares image by image with the export's integer reference (which
the export and the build verified equal to PyTorch / FINN's Python execution).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.atomic import atomic_write_json
from metabnn.errors import MetabnnError
from metabnn.sim.builddir import (check_parts, check_writable, current_artifact, n_tasks, read_build, task_label,
                                  task_names)
from metabnn.sim.progress import Progress


def _steady_cycles(done: np.ndarray) -> float | None:
    """Cycles per image once the pipeline is full: the spacing of image completions after the fill
    (None for a single image, which has no spacing)."""
    if len(done) < 2:
        return None
    skip = min(len(done) // 4, 8)
    return float(done[-1] - done[skip]) / (len(done) - 1 - skip)


class Accelerator:
    """The compiled top of one BUILD dir and how to talk to it (files, stream formats)."""

    def __init__(self, build_dir: Path, cache_dir: Path | None = None, progress: Progress | None = None):
        from metabnn.hw.finn_env import finn_session
        from metabnn.sim import top, verilator

        progress = progress or Progress("sim", enabled=False)
        self.build_dir = Path(build_dir).resolve()
        self.manifest, self.report = read_build(self.build_dir)
        self.n_tasks = n_tasks(self.build_dir, self.report)
        self.names = task_names(self.build_dir, self.report)
        self._art = None
        verilator.verilator_root()  # fail early and clearly without Verilator
        with tempfile.TemporaryDirectory(prefix="metabnn-finn-") as fw, finn_session(Path(fw)):
            self.amap = top.generate(self.build_dir)
            self.in_elem, self.per_in, self.xnor_out, self.words_in_per_image = self._formats()
        self.layers = self.amap["layers"]
        self.in_bytes, self.out_bytes = self.amap["in_bits"] // 8, self.amap["out_bits"] // 8
        self.words_per_image = self.words_out_per_image = self.layers[-1]["nf"]
        # each runtime-writeable layer's byte address on the top's AXI-lite port, by node name
        self.axilite_base = {e["layer"]: e["base"] for e in self.amap["runtime"].values()}
        t0 = time.perf_counter()
        rtl = self.build_dir / "rtl"
        model = ([Path(s) for s in self.amap["sources"]], self.amap["top"], {"INIT_DIR": str(rtl)},
                 {"IN_BYTES": self.in_bytes, "OUT_BYTES": self.out_bytes, "NDBG": len(self.layers)}, cache_dir)
        if verilator.model_path(*model).is_file():
            self.exe = verilator.build(*model)
            progress("the accelerator's Verilator model is compiled already (cached)")
        else:
            with progress.step("compiling the accelerator with Verilator (once per build)"):
                self.exe = verilator.build(*model)
        self.build_seconds = time.perf_counter() - t0

    @property
    def art(self):
        """What the deploy files hold (test images, reference, host affine); loaded when needed."""
        if self._art is None:
            self._art = current_artifact(self.build_dir, self.manifest)
        return self._art

    def _formats(self) -> tuple[int, int, bool, int]:
        """(bits per input element, elements per input word, last MVAU outputs a popcount, words per image)."""
        from qonnx.core.datatype import DataType
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.custom_op.registry import getCustomOp

        path = self.build_dir / "intermediate_models" / "hw_codegen.onnx"
        try:
            model = ModelWrapper(str(path))
            first = getCustomOp(next(n for n in model.graph.node if n.name == self.amap["layers"][0]["name"]))
            mvau = first.onnx_node.op_type.startswith("MVAU")
            per = first.get_nodeattr("SIMD" if mvau else "PE")
            width = first.get_nodeattr("MW" if mvau else "NumChannels")
            last = getCustomOp([n for n in model.graph.node if n.op_type.startswith("MVAU")][-1])
            return (DataType[first.get_nodeattr("inputDataType")].bitwidth(), int(per),
                    bool(last.get_nodeattr("binaryXnorMode")), int(width) // int(per))
        except Exception:  # onnx/qonnx errors of a damaged or foreign graph have no common type
            raise MetabnnError(f"'{path}' is damaged or does not match the dataflow partition; rebuild "
                               f"'{self.build_dir}' with 'metabnn build'") from None

    def label(self, task: int) -> str:
        return task_label(task, self.names)

    def check_task(self, task: int) -> None:
        if not isinstance(task, int) or isinstance(task, bool) or not 0 <= task < self.n_tasks:
            raise MetabnnError(f"task index {task} is not in this build (it has {self.n_tasks} tasks, "
                               f"T1..T{self.n_tasks})")

    def runtime_files(self, task: int) -> dict[str, list[int]]:
        """{file stem: words} the driver writes for ``task``: the shared files, then the task's own."""
        self.check_task(task)
        deploy = self.build_dir / "deploy"
        files = {p.stem: p for p in sorted((deploy / "driver" / "runtime_weights").glob("*.dat"))}
        files.update({p.stem: p for p in sorted((deploy / "tasks" / str(task) / "runtime_weights").glob("*.dat"))})
        missing = sorted(set(self.amap["runtime"]) - set(files))
        if missing:
            raise MetabnnError(f"build '{self.build_dir}' lacks the runtime weight files {missing}; rebuild it "
                               "with 'metabnn build'")
        return {stem: _dat_words(files[stem]) for stem in self.amap["runtime"]}

    def load(self, sess, task: int, only_task_files: bool = False) -> list[int]:
        """Write ``task``'s weights/thresholds and read them back (checked by ``check_readback``)."""
        files = self.runtime_files(task)
        if only_task_files:  # what the board writes to switch tasks: deploy/tasks/<k>/ only
            own = {p.stem for p in (self.build_dir / "deploy" / "tasks" / str(task) / "runtime_weights").glob("*.dat")}
            files = {s: w for s, w in files.items() if s in own}
        for stem, words in files.items():
            sess.write_words(self.amap["runtime"][stem]["base"], words)
        for stem, words in files.items():
            sess.read_words(self.amap["runtime"][stem]["base"], len(words))
        return [w for words in files.values() for w in words]

    @staticmethod
    def check_readback(reads: list[tuple[int, int, int]], want: list[int]) -> None:
        if any(r != 0 for _, _, r in reads) or [d for _, d, _ in reads] != want:
            raise MetabnnError("AXI-lite read-back of the runtime weights differs from what was written; "
                               "report this bug")

    def pack(self, images: np.ndarray) -> bytes:
        from metabnn.hw.rtl_model import pack_stream

        return pack_stream(images.astype(np.int64), self.in_elem, self.per_in)

    pack_images = pack

    def unpack_outputs(self, out: bytes, n: int) -> np.ndarray:
        """The last layer's accumulators [n, classes] from the output stream bytes."""
        from metabnn.hw.rtl_model import unpack_stream

        last = self.layers[-1]
        return unpack_stream(out, last["out_w"], last["pe"], last["out_signed"]).reshape(n, -1)

    def predict(self, out: bytes, n: int, task: int) -> np.ndarray:
        from metabnn.hw.task_params import host_logits

        return host_logits(self.art, self.unpack_outputs(out, n), task, self.xnor_out).argmax(axis=1)


def runtime_top(build_dir: Path) -> Accelerator:
    """The compiled top of ``build_dir`` for the runtime's ``sim`` backend (same object as ``Accelerator``)."""
    return Accelerator(Path(build_dir))


def _dat_words(path: Path) -> list[int]:
    try:
        return [int(t, 16) for t in path.read_text().split()]
    except (OSError, ValueError):
        raise MetabnnError(f"runtime weight file '{path}' is unreadable or damaged; rebuild with "
                           "'metabnn build'") from None


def _prepare(build_dir: Path, n: int | None, progress: bool) -> tuple[Path, dict[str, Any], Progress]:
    """Every check that needs no compile, in the order a user fixes them; then the build's report."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise MetabnnError(f"--n {n}: give a positive number of test images (or leave it out for all)")
    build_dir = Path(build_dir)
    manifest, report = read_build(build_dir)
    check_parts(build_dir, report)
    check_writable(build_dir)
    current_artifact(build_dir, manifest)  # the export the test images and reference come from
    return build_dir, report, Progress("sim", progress)


def _run_task(accel: Accelerator, task: int, n: int | None, stalls: bool, log: Progress,
              live: bool) -> dict[str, Any]:
    """One task's images through one harness process; the sim.json entry of that task."""
    from metabnn.sim.session import Session

    label = accel.label(task)
    images, labels = accel.art.test_set(task, n)
    n = len(images)
    if n == 0:
        raise MetabnnError(f"{label} has no test images")
    data = accel.pack(images)
    sess = Session(accel.exe, accel.in_bytes, accel.out_bytes)
    sess.reset()
    written = accel.load(sess, task)
    # one image through the empty pipeline (latency), then all of them back to back
    sess.stream(data[:len(data) // n], accel.words_per_image)
    if stalls:
        sess.stalls(20260611 + task, 0.3, 0.3)
    sess.stream(data, accel.words_per_image * n)
    what = f"{label}: simulating {n} images{' with random stalls' if stalls else ''}"
    t0 = time.perf_counter()
    if live:
        with log.step(what) as step:
            res = sess.run()
            step.result = "finished"
    else:
        log(what)
        res = sess.run()
    sim_s = time.perf_counter() - t0
    accel.check_readback(res.reads, written)

    lat, full = res.streams
    pred = accel.predict(full.out, n, task)
    ref = accel.art.reference_predict(images, task)
    done = full.cycles[accel.words_per_image - 1::accel.words_per_image]
    span = full.end - full.first_in
    cpi = _steady_cycles(done)
    report = accel.report
    fclk = 1e9 / float(report["clock_ns"])
    est = {l["name"]: l["cycles"] for l in report.get("layers", [])
           if isinstance(l, dict) and "name" in l and isinstance(l.get("cycles"), (int, float))}
    out = {
        "task": task, "name": accel.names[task], "images": n, "agree": int((pred == ref).sum()),
        "accuracy": 100.0 * float((pred == labels).mean()),
        "reference": "export integer reference (verified equal to PyTorch and to FINN's Python execution)",
        "mismatched_images": [int(i) for i in np.flatnonzero(pred != ref)[:10]],
        "stalls": bool(stalls),
        "cycles": int(span),
        "cycles_per_image": cpi,
        "latency_cycles": int(lat.cycles[-1] - lat.first_in + 1),
        "layers": [{"name": l["name"], "op_type": l["op_type"], "ii": round((span - s - b) / n, 2),
                    "estimate_cycles": est.get(l["name"])}
                   for l, s, b in zip(accel.layers, full.starve, full.block)],
        "fps": fclk / cpi if cpi else None,
        "clock_ns": float(report["clock_ns"]),
        "estimate_cycles_per_image": max(est.values()) if est else None,
        "estimate_fps": report.get("fps"),
        "sim_cycles_per_s": res.cycles / sim_s,
        "sim_seconds": round(sim_s, 3),
        "verilator_build_seconds": round(accel.build_seconds, 2),
        "layer_ii_note": "per layer: cycles per image it was busy (neither starved of input nor blocked "
                         "on output) in the back-to-back stream; estimate_cycles: FINN's; cycles_per_image "
                         "and fps are null for a single image (no spacing to measure)",
    }
    cps = f"{cpi:.1f} cycles/image" if cpi else "cycles/image needs 2 or more images"
    log(f"{label}: {out['agree']}/{n} images agree, {cps} (FINN estimate {out['estimate_cycles_per_image']}), "
        f"{out['sim_cycles_per_s'] / 1e6:.2f} M cycles/s simulated")
    return out


def simulate(build_dir: Path, task: int = 0, n: int | None = None, stalls: bool = False,
             progress: bool = True, cache_dir: Path | None = None) -> dict[str, Any]:
    """Simulate ``n`` test images (all if None) of ``task`` (0-based index); writes and returns
    BUILD_DIR/sim.json, replaced as a whole at the end (an interrupted run leaves the previous one)."""
    build_dir, report, log = _prepare(build_dir, n, progress)
    count = n_tasks(build_dir, report)
    if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < count:
        raise MetabnnError(f"task index {task} is not in this build (it has {count} tasks, T1..T{count})")
    accel = Accelerator(build_dir, cache_dir, log)
    out = _run_task(accel, task, n, stalls, log, live=True)
    atomic_write_json(build_dir / "sim.json", out)
    return out


def simulate_all(build_dir: Path, n: int | None = None, stalls: bool = False,
                 progress: bool = True, cache_dir: Path | None = None, jobs: int | None = None) -> dict[str, Any]:
    """``simulate`` every task of the build, ``jobs`` simulations at a time (default: one per CPU);
    sim.json then holds all of them (``tasks``) and the totals."""
    from concurrent.futures import ThreadPoolExecutor

    from metabnn.sim import procs

    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise MetabnnError(f"--jobs {jobs}: give a positive number of simulations to run at once")
    build_dir, report, log = _prepare(build_dir, n, progress)
    count = n_tasks(build_dir, report)
    if count == 0:
        raise MetabnnError(f"build '{build_dir}' has no tasks; rebuild it from an export with 'metabnn build'")
    jobs = min(count, jobs or os.cpu_count() or 1)
    accel = Accelerator(build_dir, cache_dir, log)  # one compile, one rtl/: the tasks share them
    _ = accel.art  # loaded once, before the threads read it
    t0 = time.perf_counter()
    # each task is its own Verilator process (the threads only wait on them)
    pool = ThreadPoolExecutor(jobs)
    futures = [pool.submit(_run_task, accel, k, n, stalls, log, False) for k in range(count)]
    try:
        with log.step(f"simulating {count} tasks, {jobs} at a time"):
            runs = [f.result() for f in futures]
    except BaseException:
        # Ctrl-C or a failed task: the other harnesses stop too, including one a worker starts
        # between two sweeps, before the threads are joined
        pool.shutdown(wait=False, cancel_futures=True)
        while not all(f.done() for f in futures):
            procs.kill_all()
            time.sleep(0.05)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    wall = time.perf_counter() - t0
    keep = ("cycles_per_image", "latency_cycles", "layers", "fps", "clock_ns", "estimate_cycles_per_image",
            "estimate_fps", "stalls", "reference")
    out = {"images": sum(r["images"] for r in runs), "agree": sum(r["agree"] for r in runs),
           "accuracy": float(np.mean([r["accuracy"] for r in runs])),
           "accuracy_per_task": [r["accuracy"] for r in runs],
           "cycles": sum(r["cycles"] for r in runs),
           "sim_cycles_per_s": sum(r["cycles"] for r in runs) / sum(r["sim_seconds"] for r in runs),
           "sim_seconds": round(sum(r["sim_seconds"] for r in runs), 3),
           "wall_seconds": round(wall, 3), "jobs": jobs,
           **{k: runs[-1][k] for k in keep},
           "tasks": runs}
    atomic_write_json(build_dir / "sim.json", out)
    return out
