"""Verification: QONNX execution and the integer reference against PyTorch, image by image.

The gate compares in float64: PyTorch runs a float64 copy of the model and qonnx executes
a float64 copy of the exported graph. In float32, the 8-bit input layer's values p/255
round (up to ~0.006 in integer pre-activation units for 784 inputs), so a neuron whose
threshold lies that close to an integer pre-activation may flip in one float32 executor
and not in another; no tie-breaking rule can make two float32 summation orders agree.
The float32 agreements (PyTorch float32 vs float64, qonnx float32 vs PyTorch float32) are
recorded for information. The integer reference is exact and must match float64 PyTorch.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from metabnn.errors import MetabnnError
from metabnn.export.qonnx_export import as_float64, float64_quant_execution, with_batch_size, with_task_parameters
from metabnn.export.reference import reference_predict
from metabnn.train.batchnorm_state import using_bn_state

CHUNK = 5000


def float64_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).double().eval()


@torch.no_grad()
def torch_predict(model: nn.Module, bn_state: Mapping[str, Any], images_uint8: np.ndarray,
                  chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(classes, logits) of ``model`` (in its dtype) in eval mode with ``bn_state`` loaded."""
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    logits = []
    try:
        with using_bn_state(model, bn_state):
            for i in range(0, len(images_uint8), chunk):
                x = torch.from_numpy(np.ascontiguousarray(images_uint8[i:i + chunk])).to(dtype).div_(255.0)
                logits.append(model(x).numpy())
    finally:
        model.train(was_training)
    out = np.concatenate(logits)
    return out.argmax(axis=1), out


def qonnx_predict(batched, images_uint8: np.ndarray, batch: int,
                  dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(classes, logits) from qonnx execution of ``batched`` (a graph taking ``batch`` images);
    the last chunk is padded with zero images, whose outputs are dropped."""
    from qonnx.core.onnx_exec import execute_onnx

    iname, oname = batched.graph.input[0].name, batched.graph.output[0].name
    logits = []
    for i in range(0, len(images_uint8), batch):
        part = images_uint8[i:i + batch]
        x = np.zeros((batch, images_uint8.shape[1]), dtype=dtype)
        x[:len(part)] = part.astype(dtype) / dtype(255.0)  # the model's input convention
        logits.append(np.asarray(execute_onnx(batched, {iname: x})[oname])[:len(part)])
    out = np.concatenate(logits)
    return out.argmax(axis=1), out


def _percent(pred: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy in % (as in metrics.json), by the trainer's formula (metrics.accuracy)."""
    return 100.0 * int((pred == labels).sum()) / max(len(labels), 1)


def _entry(pred: np.ndarray, logits: np.ndarray, gold: np.ndarray, gold_logits: np.ndarray,
           labels: np.ndarray) -> dict[str, Any]:
    agree = int((pred == gold).sum())
    return {
        "agreements": agree,
        "agreement": 100.0 * agree / len(gold),  # % of images, like every accuracy
        "accuracy": _percent(pred, labels),
        "max_abs_logit_diff": float(np.abs(logits.astype(np.float64) - gold_logits).max()),
        "mismatched_images": [int(i) for i in np.flatnonzero(pred != gold)[:20]],
    }


def verify_task(model: nn.Module, model64: nn.Module, wrapper, params: Mapping[str, np.ndarray],
                bn_state: Mapping[str, Any], task: int, images_uint8: np.ndarray, labels: np.ndarray,
                chunk: int = CHUNK, float32_checks: bool = True) -> dict[str, Any]:
    """One task's verify.json entry (see the module docstring)."""
    n = len(images_uint8)
    if n == 0:
        raise MetabnnError(f"task {task + 1} has no test images to verify with; check the dataset")
    labels = np.asarray(labels)
    gold, gold_logits = torch_predict(model64, bn_state, images_uint8, chunk)
    batch = min(chunk, n)
    graph = with_task_parameters(wrapper, params, task)
    with float64_quant_execution():
        q64, q64_logits = qonnx_predict(as_float64(with_batch_size(graph, batch)), images_uint8, batch, np.float64)
    ref, ref_logits = reference_predict(params, images_uint8, task)
    out = {
        "images": n,
        "pytorch": {"accuracy": _percent(gold, labels)},
        "qonnx": _entry(q64, q64_logits, gold, gold_logits, labels),
        "reference": _entry(ref, ref_logits, gold, gold_logits, labels),
    }
    if float32_checks:
        t32, t32_logits = torch_predict(model, bn_state, images_uint8, chunk)
        q32, _ = qonnx_predict(with_batch_size(graph, batch), images_uint8, batch)
        out["pytorch"].update(float32_accuracy=_percent(t32, labels),
                              float32_agreements_with_float64=int((t32 == gold).sum()))
        out["qonnx"].update(float32_accuracy=_percent(q32, labels),
                            float32_agreements_with_pytorch_float32=int((q32 == t32).sum()))
    return out


def check_report(tasks: Sequence[dict[str, Any]]) -> None:
    """MetabnnError naming the first task whose QONNX or reference agreement is below 100%."""
    for t in tasks:
        for kind in ("qonnx", "reference"):
            e = t[kind]
            if e["agreements"] != t["images"]:
                raise MetabnnError(
                    f"export verification failed: task {t['name']} {kind} predictions agree with PyTorch on "
                    f"{e['agreements']}/{t['images']} images (first mismatches {e['mismatched_images'][:5]}); "
                    "nothing was written: report this with the run directory")


def summary_lines(verify: Mapping[str, Any]) -> list[str]:
    """One line per task of a ``verify.json``: agreement of QONNX with PyTorch, and accuracy."""
    return [f"task {t['name']}: QONNX agrees with PyTorch on {t['qonnx']['agreements']}/{t['images']} test images, "
            f"accuracy {t['qonnx']['accuracy']:.2f}%" for t in verify["tasks"]]
