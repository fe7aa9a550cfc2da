"""The deployment package: ``BUILD_DIR/deploy/`` plus its ``manifest.json``.

Layout (FINN's driver files stay where finn-plus-driver expects them)::

  deploy/manifest.json             this module's index: every file's sha256, network, folding,
                                   data types, register map, tasks (and which are live)
  deploy/driver/settings.json      FINN's PYNQ driver settings
  deploy/driver/runtime_weights/   FINN's .dat memory images (task 0: what the driver loads)
  deploy/tasks/<k>/                task k: threshold .dat files (+ weight files that differ from
                                   driver/), host_affine.npz (output BatchNorm on the host), task.json
  deploy/host/                     host side: checkpoint.pt (hidden weights, optimizer, BN
                                   states), parameters.npz (integer reference), tasks.json (specs)
  deploy/bitfile/                  bitstream + .hwh (only when Vivado ran)
  deploy/learn.json                device-learning log (after ``metabnn learn``)

Reading needs numpy and json only (it runs on the board). Writing the manifest reads the
build's ONNX with ``onnx`` (no FINN) and copies the run's checkpoint beside it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import metabnn
from metabnn.atomic import atomic_write_json, file_digest
from metabnn.errors import MetabnnError
from metabnn.runtime import words as W

ARTIFACT = "metabnn-deploy"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
JOURNAL = "update.json"
STAGING = ".staging"
HOST = "host"
RUNTIME_DIR = "driver/runtime_weights"
_DAT = re.compile(r"^(\d+)_(\d+)_(.+)\.dat$")
LEARN_LOG = "learn.json"
TOKEN = "server-token"  # metabnn serve's secret (runtime.protocol): never listed, so it can be replaced
NOT_LISTED = {MANIFEST, JOURNAL, LEARN_LOG, TOKEN}  # learn.json is a log, rewritten after each commit


def sha256_file(path: Path) -> str:
    return file_digest(path)


def resolve_deploy_dir(path: str | Path) -> Path:
    """DEPLOY_DIR itself, or the ``deploy/`` of a BUILD_DIR."""
    p = Path(path)
    if (p / "deploy" / MANIFEST).is_file() or (not (p / MANIFEST).is_file() and (p / "deploy").is_dir()):
        return p / "deploy"
    return p


def listed_files(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every package file (not the manifest, journal or staging)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in NOT_LISTED and not rel.startswith(STAGING) \
                and not p.name.startswith("."):
            out[rel] = sha256_file(p)
    return out


# ---- writing the manifest (build side) ---------------------------------------------------

def _onnx_nodes(build_dir: Path) -> dict[str, dict[str, Any]]:
    import onnx
    from onnx import helper

    for name in ("hw_codegen.onnx", "folding.onnx", "estimates.onnx"):
        path = build_dir / "intermediate_models" / name
        if path.is_file():
            model = onnx.load(str(path), load_external_data=False)
            rows = {i.name: (i.dims[0] if i.dims else 1) for i in model.graph.initializer}
            out = {}
            for n in model.graph.node:
                attrs = {"threshold_rows": rows.get(n.input[1])} if len(n.input) > 1 else {}
                for a in n.attribute:
                    v = helper.get_attribute_value(a)
                    attrs[a.name] = v.decode() if isinstance(v, bytes) else v
                out[n.name] = {"op_type": n.op_type, **attrs}
            return out
    raise MetabnnError(f"'{build_dir}' has no intermediate_models/hw_codegen.onnx; give a BUILD_DIR made by "
                       "'metabnn build'")


def _acc_range(a: dict[str, Any]) -> list[int]:
    """Reachable accumulator range of an MVAU (as hw/passes/round_thresholds_to_accumulator)."""
    mw = int(a["MW"])
    if int(a.get("binaryXnorMode", 0)):
        return [0, mw]
    ilo, ihi = W.dtype_range(a["inputDataType"])
    wlo, whi = W.dtype_range(a["weightDataType"])
    corners = [x * y for x in (ilo, ihi) for y in (wlo, whi)]
    return [mw * min(corners), mw * max(corners)]


def _layer_entry(index: int, sdp: int, rt: int, name: str, a: dict[str, Any], net_layer: int | None,
                 dat: str) -> dict[str, Any]:
    kind = "mvau" if a["op_type"].startswith("MVAU") else "thresholding"
    e: dict[str, Any] = {"index": index, "name": name, "op_type": a["op_type"], "kind": kind,
                         "network_layer": net_layer, "pe": int(a["PE"]),
                         "input_dtype": a["inputDataType"], "weight_dtype": a["weightDataType"],
                         "output_dtype": a["outputDataType"]}
    if kind == "mvau":
        e.update(simd=int(a["SIMD"]), mw=int(a["MW"]), mh=int(a["MH"]),
                 xnor=bool(int(a.get("binaryXnorMode", 0))), mem_mode=a.get("mem_mode"),
                 ram_style=a.get("ram_style"), acc_range=_acc_range(a))
        lines, wpl, width = W.mvau_geometry(e)
        layout = (f"{lines} lines (line = neuron fold * {e['mw'] // e['simd']} + synapse fold) of {wpl} "
                  f"word(s), LS word first; bit p*SIMD+s = weight (1 = +1) of neuron fold*PE+p, input "
                  f"synapse fold*SIMD+s; {width} bits used")
    else:
        e.update(num_channels=int(a["NumChannels"]), num_steps=int(a["numSteps"]), act_val=int(a.get("ActVal", 0)))
        if a.get("threshold_rows") == 1 and e["num_channels"] > 1:
            # One threshold for every channel (the 1-bit input quantizer): FINN's RTL then holds
            # only PE channels' worth of memory and broadcasts it (thresholding_rtl.py).
            e.update(num_channels=e["pe"], broadcast_channels=int(a["NumChannels"]))
        folds, slots, wps = W.threshold_geometry(e)
        layout = (f"{folds} channel folds x {slots} PE slots x {wps} threshold word(s), channel = fold*PE+slot; "
                  f"{e['weight_dtype']} two's complement, zero-extended to 32 bits")
    n = W.memory_words(e)
    # FINN's driver (finn-plus-driver 1.6.1, FINNDMAOverlay.load_runtime_weights): the file
    # <sdp>_<rt>_<node>.dat goes to StreamingDataflowPartition_<sdp>.mmio with
    # write_mm(0, words.tobytes()), is read back from mmio.array[:n], then one dummy
    # execute_on_buffers() flushes stale weights out of the weight streamer FIFOs.
    e["memory"] = {"ip": f"StreamingDataflowPartition_{sdp}", "sdp": sdp, "rt_index": rt, "base": 0,
                   "words": n, "bytes": 4 * n, "file": dat, "layout": layout}
    return e


def write_deploy_manifest(build_dir: str | Path, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Index ``build_dir/deploy`` and put the hidden-weight checkpoint beside it.

    Runs on a finished BUILD_DIR (or on the build's work dir once report.json, build_config.json
    and manifest.json are written). ``run_dir`` defaults to the run the export came from; its
    checkpoint must still be the exported one.
    """
    from metabnn.hw.export_artifact import read_export

    build_dir = Path(build_dir)
    deploy = build_dir / "deploy"
    try:
        settings = json.loads((deploy / "driver" / "settings.json").read_text())
        report = json.loads((build_dir / "report.json").read_text())
        bman = json.loads((build_dir / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise MetabnnError(f"'{build_dir}' is not a finished metabnn build ({type(e).__name__}); "
                           "run 'metabnn build' first") from None
    art = read_export(Path(bman["source"]["export_dir"]))
    if art.manifest_sha256 != bman["source"]["export_manifest_sha256"]:
        raise MetabnnError(f"export '{art.export_dir}' changed since this build; build it again")
    run_dir = Path(run_dir or art.manifest["source"]["run_dir"])
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.is_file() or sha256_file(ckpt) != art.manifest["source"]["checkpoint_sha256"]:
        raise MetabnnError(f"'{ckpt}' is missing or is not the checkpoint the export was made from (the run "
                           "went on training?); export and build that run again")
    nodes = _onnx_nodes(build_dir)
    dats = []
    for p in (deploy / RUNTIME_DIR).glob("*.dat"):
        m = _DAT.match(p.name)
        if m:
            dats.append((int(m.group(1)), int(m.group(2)), m.group(3), p.name))
    layers, mvaus = [], 0
    for i, (sdp, rt, name, fname) in enumerate(sorted(dats)):
        if name not in nodes:
            raise MetabnnError(f"runtime weight file {fname} names a layer the build's graph lacks; rebuild")
        a = nodes[name]
        if a["op_type"].startswith("MVAU"):
            net = mvaus
            mvaus += 1
        else:
            net = mvaus - 1 if mvaus else None  # None: the 1-bit input quantizer
        layers.append(_layer_entry(i, sdp, rt, name, a, net, fname))
    if mvaus != art.n_layers:
        raise MetabnnError(f"the deploy package has {mvaus} MVAU memories for {art.n_layers} layers; rebuild")
    for e in layers:  # check every memory image against its declared size now, not on the board
        if read_dat(deploy / RUNTIME_DIR / e["memory"]["file"]).size != e["memory"]["words"]:
            raise MetabnnError(f"{e['memory']['file']} does not hold {e['memory']['words']} words; rebuild")

    host = deploy / HOST
    host.mkdir(exist_ok=True)
    shutil.copyfile(ckpt, host / "checkpoint.pt")
    shutil.copyfile(art.export_dir / "parameters.npz", host / "parameters.npz")
    atomic_write_json(host / "tasks.json", {"tasks": art.task_specs})
    tasks = []
    for k in range(art.n_tasks):
        tj = json.loads((deploy / "tasks" / str(k) / "task.json").read_text())
        tasks.append({"task": k, "name": tj.get("name", art.task_name(k)), "dir": f"tasks/{k}", "live": True,
                      "files": tj["files"], "host_affine": f"tasks/{k}/{tj['host_affine']}"})
    io = settings["driver_information"]["io_shape_dict"]
    last = [e for e in layers if e["kind"] == "mvau"][-1]
    manifest = {
        "artifact": ARTIFACT, "format_version": FORMAT_VERSION, "metabnn_version": metabnn.__version__,
        "generation": 0,
        "source": {"build_manifest_sha256": sha256_file(build_dir / "manifest.json"),
                   "export_dir": str(art.export_dir), "run_dir": str(run_dir),
                   "checkpoint_sha256": art.manifest["source"]["checkpoint_sha256"]},
        "board": report.get("board"), "part": report.get("part"), "clock_ns": report.get("clock_ns"),
        "fps_estimate": report.get("fps"),
        "network": {"widths": art.widths, "input_bits": art.input_bits,
                    "input": {"dtype": str(io["idt"][0]), "shape": io["ishape_normal"][0][1:],
                              "folded": io["ishape_folded"][0][1:], "packed_bytes": io["ishape_packed"][0][1:]},
                    "output": {"dtype": str(io["odt"][0]), "shape": io["oshape_normal"][0][1:],
                               "folded": io["oshape_folded"][0][1:], "packed_bytes": io["oshape_packed"][0][1:],
                               "meaning": ("popcount of agreeing bits pc; a = 2*pc - n_in" if last["xnor"]
                                           else "accumulator a"),
                               "n_in": last["mw"], "xnor": last["xnor"]},
                    "host_rule": "logits = out_scale[task] * a + out_bias[task]; class = argmax (ties: lowest)"},
        "folding": [{"name": l["name"], "pe": l["pe"], "simd": l.get("simd", 1)} for l in report.get("layers", [])],
        "driver": {"settings": "driver/settings.json", "platform": settings["driver_information"].get("platform"),
                   "idma_names": io.get("idma_names"), "odma_names": io.get("odma_names"),
                   "dma_registers": {"addr_lo": 0x10, "addr_hi": 0x14, "count": 0x1C, "ctrl": 0x00,
                                     "start": 1, "done_bit": 0x2, "idle_bit": 0x4}},
        "layers": layers,
        "tasks": tasks,
        "host": {"checkpoint": f"{HOST}/checkpoint.pt", "parameters": f"{HOST}/parameters.npz",
                 "tasks": f"{HOST}/tasks.json"},
    }
    manifest["files"] = listed_files(deploy)
    atomic_write_json(deploy / MANIFEST, manifest)
    from metabnn.runtime.lock import LOCK_FILE

    (deploy / LOCK_FILE).touch()  # exists from the start, so a read-only copy can still be locked shared
    from metabnn.runtime.protocol import write_token

    write_token(deploy)  # what 'metabnn serve' and '--remote' authenticate with (mode 0600)
    return manifest


def read_dat(path: Path) -> np.ndarray:
    return W.read_dat(path)


# ---- reading (runtime side) --------------------------------------------------------------

@dataclass
class Package:
    root: Path
    manifest: dict[str, Any]
    repaired: str | None = None  # what open_package repaired, if anything

    @property
    def layers(self) -> list[dict[str, Any]]:
        return self.manifest["layers"]

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return self.manifest["tasks"]

    @property
    def live_tasks(self) -> list[int]:
        return [t["task"] for t in self.tasks if t.get("live")]

    def task_entry(self, task: int) -> dict[str, Any]:
        for t in self.tasks:
            if t["task"] == task:
                if not t.get("live"):
                    raise MetabnnError(f"{self.label(task)} is not live in '{self.root}'; live tasks: "
                                       f"{', '.join(self.label(k) for k in self.live_tasks)}")
                return t
        raise MetabnnError(f"task {task} is not in '{self.root}'; it holds "
                           f"{', '.join(f'{k} = {self.label(k)}' for k in self.live_tasks)} (the Python API "
                           "numbers tasks from 0, the command line from 1)")

    def label(self, task: int) -> str:
        return task_label(self.tasks, task)

    def shared_image(self) -> list[np.ndarray]:
        return [read_dat(self.root / RUNTIME_DIR / l["memory"]["file"]) for l in self.layers]

    def image(self, task: int) -> list[np.ndarray]:
        """Every memory's words for ``task``: driver/ files overlaid by the task's own files."""
        entry = self.task_entry(task)
        own = {Path(f).name for f in entry["files"]}
        out = []
        for l in self.layers:
            f = l["memory"]["file"]
            base = self.root / entry["dir"] / "runtime_weights" if f in own else self.root / RUNTIME_DIR
            out.append(read_dat(base / f))
        return out

    def host_affine(self, task: int) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self.root / self.task_entry(task)["host_affine"]) as z:
            return np.asarray(z["out_scale"], np.float32), np.asarray(z["out_bias"], np.float32)


def _fail(root: Path, why: str) -> MetabnnError:
    return MetabnnError(f"deployment package '{root}' {why}")


def task_label(tasks: list[dict[str, Any]], task: int) -> str:
    """'T1 (pmnist-1)': a task as every printed line names it (numbered from 1)."""
    name = next((t["name"] for t in tasks if t["task"] == task), None)
    return f"T{task + 1}" + (f" ({name})" if name else "")


def parse_task(text: str, tasks: list[dict[str, Any]], flag: str = "--task") -> int:
    """The 0-based index of ``--task`` as the user typed it: a number from 1 (T1) or a task name."""
    live = [t for t in tasks if t.get("live")]
    valid = ", ".join(f"{t['task'] + 1} ({t['name']})" for t in live)
    text = str(text).strip()
    for t in live:
        if text == t["name"]:
            return int(t["task"])
    k = text[1:] if text[:1] in ("T", "t") else text
    if k.isdigit() and any(t["task"] == int(k) - 1 for t in live):
        return int(k) - 1
    why = ": tasks are numbered from 1" if k.isdigit() and int(k) == 0 else " is not a task of this package"
    raise MetabnnError(f"{flag} {text}{why}; give one of {valid} (the number or the name)")


def require_writable(root: Path, why: str, fix: str) -> None:
    """Refuse before any change when a directory of the package cannot take new files."""
    import errno
    import tempfile

    dirs = [root] + sorted(p for p in root.rglob("*") if p.is_dir()
                           and not any(part.startswith(".") for part in p.relative_to(root).parts))
    for d in dirs:
        try:
            with tempfile.TemporaryFile(dir=d, prefix=".metabnn-probe-"):
                pass
        except OSError as e:
            reason = "read-only" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else (e.strerror or str(e))
            where = "" if d == root else f" ('{d.relative_to(root)}')"
            raise MetabnnError(f"'{root}'{where} is {reason}, and {why}; {fix}") from None


def _check_manifest(root: Path, m: dict[str, Any]) -> None:
    """The fields every reader relies on; an older or damaged manifest gets one line, not a KeyError."""
    try:
        int(m["generation"])
        widths = [int(w) for w in m["network"]["widths"]]
        out = m["network"]["output"]
        int(out["n_in"]), bool(out["xnor"])
        assert len(widths) >= 2 and isinstance(m["layers"], list) and m["layers"]
        for i, l in enumerate(m["layers"]):
            assert int(l["index"]) == i and l["kind"] in ("mvau", "thresholding")
            str(l["name"]), str(l["memory"]["file"]), str(l["memory"]["ip"]), int(l["memory"]["words"])
            W.memory_words(l)
        assert isinstance(m["tasks"], list) and m["tasks"]
        for t in m["tasks"]:
            int(t["task"]), str(t["name"]), str(t["dir"]), str(t["host_affine"])
            assert isinstance(t["files"], list)
        assert isinstance(m["files"], dict) and isinstance(m.get("host", {}), dict)
        for rel in m["files"]:
            assert not Path(rel).is_absolute() and ".." not in Path(rel).parts
    except (KeyError, TypeError, ValueError, AssertionError, IndexError, AttributeError, MetabnnError) as e:
        what = f"lacks {e}" if isinstance(e, KeyError) else "has fields this metabnn cannot read"
        raise _fail(root, f"has a {MANIFEST} that {what} (damaged, or from another metabnn version); "
                          "rebuild the package with 'metabnn build'") from None


def open_package(path: str | Path, repair: bool = True, check_files: bool = True, lock: Any = None,
                 command: str = "status") -> Package:
    """The checked package; an interrupted update is finished or undone first (``repair``).

    ``lock``: a ``PackageLock`` the caller holds (shared or exclusive); without one, a shared
    lock is held while the package is read. ``command`` names the command in messages.
    """
    from metabnn.runtime import journal
    from metabnn.runtime.lock import PackageLock

    root = resolve_deploy_dir(path)
    if not root.is_dir():
        raise MetabnnError(f"'{root}' is not a directory; give the DEPLOY_DIR (BUILD_DIR/deploy) of a metabnn build")
    own = lock is None
    if own:
        lock = PackageLock(root, command).shared()
    try:
        repaired = None
        if journal.pending(root):
            if not repair:
                raise _fail(root, f"has an interrupted update; run 'metabnn status {root}' to finish or undo it")
            repaired = _repair(root, lock, command)
        return _read(root, check_files, repaired)
    finally:
        if own:
            lock.release()


def _repair(root: Path, lock: Any, command: str) -> str | None:
    """Finish or undo an update whose writer is gone: only under the exclusive lock, which proves it."""
    from metabnn.runtime import journal

    upgraded = lock.mode == "shared"
    if lock.mode != "none" and not lock.try_upgrade():
        raise _fail(root, f"has an interrupted update to repair, and {lock.holder()} is reading it; "
                          f"run 'metabnn {command}' again when it has finished")
    try:
        if not journal.pending(root):
            return None
        require_writable(root, "it holds an interrupted update that must be finished or undone before use",
                         f"make it writable (chmod -R u+w '{root}') and run 'metabnn {command}' again")
        from metabnn.runtime.accelerator import test_hook

        test_hook("before_repair")
        return journal.recover(root)
    finally:
        if upgraded:
            lock.downgrade()


def _read(root: Path, check_files: bool, repaired: str | None) -> Package:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise _fail(root, f"has no {MANIFEST}; give the deploy/ directory of a finished 'metabnn build' "
                          "(BUILD_DIR/deploy)") from None
    except (OSError, ValueError) as e:
        raise _fail(root, f"has an unreadable {MANIFEST} ({type(e).__name__}); restore it from the build "
                          "or rebuild the package with 'metabnn build'") from None
    if not isinstance(manifest, dict) or manifest.get("artifact") != ARTIFACT:
        raise _fail(root, f"is not a metabnn deployment ({MANIFEST} is foreign); give BUILD_DIR/deploy")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _fail(root, f"has format version {manifest.get('format_version')}, this metabnn reads "
                          f"{FORMAT_VERSION}; rebuild it with this metabnn ('metabnn build')")
    _check_manifest(root, manifest)
    if check_files:
        for rel, digest in manifest.get("files", {}).items():
            p = root / rel
            if not p.is_file():
                raise _fail(root, f"lacks {rel}; restore the package or rebuild it")
            if sha256_file(p) != digest:
                raise _fail(root, f"is corrupt: {rel} does not match its sha256 in {MANIFEST}; restore or rebuild it")
    pkg = Package(root, manifest, repaired)
    for l in pkg.layers:
        if l["memory"]["words"] != W.memory_words(l):
            raise _fail(root, f"declares {l['memory']['words']} words for {l['name']}, its shape needs "
                              f"{W.memory_words(l)}; the manifest does not match this metabnn")
    return pkg
