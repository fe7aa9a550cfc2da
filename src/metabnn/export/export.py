"""``export_run``: RUN dir -> EXPORT dir (QONNX model, per-task parameters, verification)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from brevitas.nn import QuantLinear

import metabnn
from metabnn.atomic import StagedDir, atomic_write, atomic_write_json
from metabnn.errors import MetabnnError
from metabnn.export.manifest import (ARTIFACT, FORMAT_VERSION, MANIFEST, MODEL, PARAMETERS, TASKS, VERIFY,
                                     read_manifest, sha256_file)
from metabnn.export.request import check_export_request
from metabnn.export.qonnx_export import bn_nodes, export_qonnx_model, with_task_parameters
from metabnn.export.source import read_run
from metabnn.export.task_parameters import build_parameters
from metabnn.export.verify import check_report, float64_model, verify_task
from metabnn.train.models import batchnorm_layers

INPUT_CONVENTION = ("global_in: float32 [1, D] = uint8 pixels / 255 (permuted for permuted tasks); "
                    "global_out: float32 [1, C] logits; class = argmax, ties to the lowest index")
THRESHOLD_RULE = ("hidden layer l: a = x @ w{l}.T (x: uint8 pixels for the 8-bit input layer, else ±1); "
                  "activation = +1 if (a >= thr{l}[task]) XOR flip{l}[task] else -1; flip marks gamma < 0 "
                  "(the comparison a <= T written as not(a >= T+1)); a == T gives +1 (sign(0) = +1). "
                  "Binary-input layers: pc = (a + n_in) / 2 agreeing bits, a >= thr <=> pc >= thr{l}_popcount")
OUTPUT_RULE = "logits = out_scale[task] * a + out_bias[task] (float32, the host applies it); class = argmax"


def binary_weights(model: torch.nn.Module) -> list[np.ndarray]:
    """Each QuantLinear's weight exactly as the forward pass uses it (±1 int8 [out, in])."""
    out = []
    with torch.no_grad():
        for m in model.children():
            if isinstance(m, QuantLinear):
                w = m.quant_weight().value.detach().cpu().numpy()
                if not np.all(np.abs(w) == 1):
                    raise MetabnnError(f"layer {len(out) + 1}'s binary weights are not ±1 (non-finite hidden weights?); "
                                       "the run diverged or is damaged: retrain it")
                out.append(w.astype(np.int8))
    return out


def _spec_summary(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "permutation"}


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def export_run(run_dir: Path, out_dir: Path, data_dir: str | Path | None = None, progress: bool = True,
               limit: int | None = None) -> dict[str, Any]:
    """Export the run in ``run_dir`` to ``out_dir`` and verify it; returns the manifest.

    ``limit`` verifies only the first ``limit`` test images of each task (None: all of them;
    the manifest records it). Nothing appears at ``out_dir`` unless everything succeeded.
    """
    from tqdm import tqdm

    from metabnn.data import task_from_spec

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_export_request(run_dir, out_dir, data_dir, limit)
    src = read_run(run_dir)
    start = time.perf_counter()
    model = src.model
    widths, input_bits = list(model.widths), int(model.input_bits)
    torch_bn = [name for name, _ in batchnorm_layers(model)]
    eps = [float(m.eps) for _, m in batchnorm_layers(model)]

    wrapper = export_qonnx_model(model, src.bn_states[0], widths[0])
    onnx_bn = bn_nodes(wrapper)
    if len(onnx_bn) != len(torch_bn):
        raise MetabnnError(f"the QONNX graph has {len(onnx_bn)} BatchNormalization nodes for {len(torch_bn)} "
                           "BatchNorm layers; the exporter changed the graph (reinstall with: make install)")
    for o, e in zip(onnx_bn, eps):
        if abs(o["epsilon"] - e) > 1e-6 * e:
            raise MetabnnError(f"QONNX node {o['node']} has BatchNorm epsilon {o['epsilon']}, the model {e}; "
                               "the exporter changed the graph (reinstall with: make install)")
    params = build_parameters(binary_weights(model), torch_bn, src.bn_states, eps, input_bits)
    layers = [{"layer": l, "torch_module": t, "onnx_node": o["node"], "epsilon": eps[l],
               "onnx_initializers": {"gamma": o["scale"], "beta": o["bias"], "mean": o["mean"], "var": o["var"]},
               "in_features": widths[l], "out_features": widths[l + 1],
               "kind": "hidden" if l < len(torch_bn) - 1 else "output"}
              for l, (t, o) in enumerate(zip(torch_bn, onnx_bn))]

    model64 = float64_model(model)
    reports = []
    bar = tqdm(total=len(src.bn_states), desc="verify", unit="task", disable=not progress,
               file=sys.stderr, leave=False)
    try:
        for k, (spec, state) in enumerate(zip(src.task_specs, src.bn_states)):
            bar.set_postfix_str(spec.get("name", str(k)))
            task = task_from_spec(spec, data_dir)
            n = len(task.test_x) if limit is None else min(limit, len(task.test_x))
            t0 = time.perf_counter()
            entry = verify_task(model, model64, wrapper, params, state, k, task.test_x[:n].numpy(),
                                task.test_y[:n].numpy())
            reports.append({"task": k, "name": spec.get("name", str(k)), "test_images_total": len(task.test_x),
                            **entry, "seconds": round(time.perf_counter() - t0, 3)})
            bar.update(1)
    finally:
        bar.close()
    check_report(reports)

    verify = {"limit": limit, "full_test_sets": limit is None or all(
        r["images"] == r["test_images_total"] for r in reports),
        "compared_against": ("PyTorch in float64 (same model and BatchNorm state, eval mode), argmax per "
                             "image; QONNX executed in float64; float32 agreements for information"),
        "tie_rule": "argmax ties go to the lowest class index (numpy and torch)", "tasks": reports}

    with StagedDir(out_dir, "export") as tmp:
        with_task_parameters(wrapper, params, 0, onnx_bn).save(str(tmp / MODEL))
        _write_npz(tmp / PARAMETERS, params)
        atomic_write_json(tmp / TASKS, {"tasks": src.task_specs})
        atomic_write_json(tmp / VERIFY, verify)
        files = {name: sha256_file(tmp / name) for name in (MODEL, PARAMETERS, TASKS, VERIFY)}
        manifest = {
            "artifact": ARTIFACT,
            "format_version": FORMAT_VERSION,
            "metabnn_version": metabnn.__version__,
            "source": {"run_dir": str(run_dir.resolve()), "checkpoint_sha256": src.checkpoint_sha256,
                       "run_complete": src.complete},
            "config": src.config,
            "widths": widths,
            "input_bits": input_bits,
            "input_convention": INPUT_CONVENTION,
            "threshold_rule": THRESHOLD_RULE,
            "output_rule": OUTPUT_RULE,
            "scenario": src.config.get("train", {}).get("scenario", "task"),
            "tasks": [_spec_summary(s) for s in src.task_specs],
            "layers": layers,
            "model_onnx_task": 0,
            "verified_images": sum(r["images"] for r in reports),
            "export_seconds": round(time.perf_counter() - start, 3),
            "files": files,
        }
        atomic_write_json(tmp / MANIFEST, manifest)
    return manifest


def load_parameters(export_dir: Path) -> dict[str, np.ndarray]:
    """``parameters.npz`` of a checked EXPORT dir, as a dict of arrays (see reference.py)."""
    read_manifest(export_dir)
    with np.load(Path(export_dir) / PARAMETERS) as z:
        return {k: z[k] for k in z.files}


def load_task_model(export_dir: Path, task: int):
    """The QONNX ModelWrapper of ``export_dir`` with task ``task``'s BatchNorm statistics."""
    from qonnx.core.modelwrapper import ModelWrapper

    manifest = read_manifest(export_dir)
    with np.load(Path(export_dir) / PARAMETERS) as z:
        params = {k: z[k] for k in z.files}
    wrapper = ModelWrapper(str(Path(export_dir) / MODEL))
    layers = [{"node": L["onnx_node"], "scale": L["onnx_initializers"]["gamma"],
               "bias": L["onnx_initializers"]["beta"], "mean": L["onnx_initializers"]["mean"],
               "var": L["onnx_initializers"]["var"]} for L in manifest["layers"]]
    return with_task_parameters(wrapper, params, task, layers)
