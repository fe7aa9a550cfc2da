"""``build``: EXPORT dir -> BUILD dir through the FINN steps in ``metabnn.hw.steps``.

BUILD dir layout:
  report.json, report.txt, report.png   folding, cycles, FPS, resources, fit, agreement
  build_config.json, folding_config.json, manifest.json
  intermediate_models/<step>.onnx       the graph after every step (hw_layers.onnx: Python-executable)
  hw_codegen/<layer>/                   HLS C++ / filled RTL / memory init files per layer
  deploy/driver/                        FINN PYNQ driver settings.json + runtime_weights/ (task 0, shared)
  deploy/tasks/<k>/                     per task: threshold .dat files, host_affine.npz, task.json
  deploy/bitfile/                       bitstream + .hwh (only with Vivado)
The build runs in a temp dir beside BUILD_DIR and is renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import metabnn
from metabnn.atomic import atomic_write_bytes, atomic_write_json
from metabnn.errors import MetabnnError
from metabnn.hw.config import make_config
from metabnn.hw.export_artifact import read_export
from metabnn.hw.finn_env import finn_session

ARTIFACT = "metabnn-build"


def check_out_dir(out_dir: Path) -> None:
    """Refuse an existing BUILD_DIR: a previous build (of any export) or foreign files."""
    if not out_dir.exists():
        return
    if (out_dir / "manifest.json").is_file():
        try:
            m = json.loads((out_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            m = {}
        src = m.get("source", {}).get("export_dir") if isinstance(m, dict) else None
        raise MetabnnError(f"'{out_dir}' already holds a build{f' of {src}' if src else ''}; "
                           "choose another --out or delete it to build again")
    if not out_dir.is_dir() or any(out_dir.iterdir()):
        raise MetabnnError(f"'{out_dir}' exists and is not an empty directory; choose a new --out")


def _relocate_partition(tmp: Path, out_dir: Path) -> None:
    """Point the saved partition model's sub-model paths at BUILD_DIR, where they will live."""
    path = tmp / "intermediate_models" / "dataflow_partition.onnx"
    if not path.is_file():
        return
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    model = ModelWrapper(str(path))
    for node in model.get_nodes_by_op_type("StreamingDataflowPartition"):
        inst = getCustomOp(node)
        inst.set_nodeattr("model", inst.get_nodeattr("model").replace(str(tmp), str(out_dir.resolve())))
    model.save(str(path))


def build(export_dir: Path, out_dir: Path, board: str, target_fps: float, clock_ns: float = 10.0,
          progress: bool = True, verify_limit: int | None = None, oversize: bool = False) -> dict[str, Any]:
    """Build ``export_dir`` for ``board`` at ``target_fps``; returns the report (also report.json)."""
    from metabnn.hw.steps import STEPS, BuildContext
    from metabnn.hw import report as rep

    export_dir, out_dir = Path(export_dir), Path(out_dir)
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        cfg = make_config(export_dir, out_dir, tmp, board, target_fps, clock_ns, verify_limit, progress, oversize)
        art = read_export(export_dir)
        log = (lambda s: print(s, file=sys.stderr, flush=True)) if progress else (lambda s: None)
        ctx = BuildContext(cfg, art, log=log)
        ctx.report.update({"board": cfg.board.name, "part": cfg.board.part, "clock_ns": cfg.clock_ns,
                           "target_fps": cfg.target_fps, "widths": art.widths, "input_bits": art.input_bits,
                           "tasks": art.n_tasks, "steps": []})
        start = time.perf_counter()
        with finn_session(tmp / "finn_work"):
            for name, step in STEPS:
                t0 = time.perf_counter()
                log(f"[build] {name}")
                step(ctx)
                if ctx.model is not None and name not in ("driver_and_tasks", "vivado"):
                    ctx.save(name)
                if name == "convert_to_hw":
                    ctx.hw_model.save(str(tmp / "intermediate_models" / "hw_layers.onnx"))
                ctx.report["steps"].append({"name": name, "seconds": round(time.perf_counter() - t0, 2)})
        ctx.report["build_seconds"] = round(time.perf_counter() - start, 2)
        report = ctx.report
        shutil.rmtree(tmp / "finn_work", ignore_errors=True)  # copied into hw_codegen/ and deploy/
        _relocate_partition(tmp, out_dir)
        atomic_write_json(tmp / "build_config.json", cfg.to_json() | {"out_dir": str(out_dir)})
        atomic_write_json(tmp / "report.json", report)
        atomic_write_bytes(tmp / "report.txt", (rep.table(report) + "\n").encode())
        rep.plot(report, tmp / "report.png")
        atomic_write_json(tmp / "manifest.json", {
            "artifact": ARTIFACT, "metabnn_version": metabnn.__version__,
            "source": {"export_dir": str(export_dir.resolve()), "export_manifest_sha256": art.manifest_sha256},
            "board": cfg.board.name, "target_fps": cfg.target_fps, "clock_ns": cfg.clock_ns})
        from metabnn.runtime.package import write_deploy_manifest

        # deploy/ is what goes to the board: index it (checksums, register map) and put the
        # hidden-weight checkpoint beside it, so on-device learning starts from this build.
        write_deploy_manifest(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above): give way to the finished build
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def plan(export_dir: Path, board: str, target_fps: float, clock_ns: float = 10.0) -> dict[str, Any]:
    """The folding analysis alone (no BUILD dir): reachable rate, best fit and what limits it."""
    from metabnn.hw import folding
    from metabnn.hw.steps import BuildContext, step_convert_to_hw, step_qonnx_to_finn, step_specialize_layers, \
        step_streamline

    with tempfile.TemporaryDirectory(prefix="metabnn-plan-") as tmp:
        cfg = make_config(Path(export_dir), Path(tmp) / "out", Path(tmp), board, target_fps, clock_ns, None, False)
        ctx = BuildContext(cfg, read_export(Path(export_dir)), log=lambda s: None)
        with finn_session(Path(tmp) / "finn_work"):
            for step in (step_qonnx_to_finn, step_streamline, step_convert_to_hw, step_specialize_layers):
                step(ctx)
            layers = folding.layer_options(ctx.model, cfg.board.part)
        return {"board": cfg.board.name, "target_fps": cfg.target_fps, "clock_ns": cfg.clock_ns,
                "input_bits": ctx.art.input_bits, "widths": ctx.art.widths,
                **folding.analysis(layers, folding.budget(cfg.board), cfg.max_cycles, cfg.fclk_hz)}
