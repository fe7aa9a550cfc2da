"""Export: a RUN dir's BinaryMLP to QONNX, per-task thresholds, and verification.

EXPORT dir layout:

- ``manifest.json``: artifact "metabnn-export", versions, source run + checkpoint sha256,
  widths, input_bits, the rules (input convention, thresholds, output affine), ``layers``
  (for each BatchNorm layer: torch module, QONNX node name and the names of its
  gamma/beta/mean/var initializers), task summaries, sha256 of every file.
- ``model.onnx``: the cleaned QONNX graph (Brevitas' exporter), BatchNorm of task 0.
- ``parameters.npz``: ``widths``, ``input_bits``, ``n_tasks``; shared ``w{l}`` (int8 ±1
  [out, in]); per task (leading axis = task) ``bn{l}_mean/var/gamma/beta`` (+ scalar
  ``bn{l}_eps``), hidden ``thr{l}`` (int64), ``flip{l}`` (bool), ``thr{l}_popcount`` for
  binary-input layers, output ``out_scale``/``out_bias`` (float32).
- ``tasks.json``: the full task specs (permutations included) to rebuild the test sets.
- ``verify.json``: per task images, agreements and accuracy for QONNX execution and the
  integer reference, against PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: the checks of an export request (metabnn.export.request) need no torch.
_WHERE = {
    "export_run": "metabnn.export.export",
    "load_parameters": "metabnn.export.export",
    "load_task_model": "metabnn.export.export",
    "reference_predict": "metabnn.export.reference",
    "with_task_parameters": "metabnn.export.qonnx_export",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'metabnn.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
