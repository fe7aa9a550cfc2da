"""One task's weights and thresholds in the HW graph's own form (accumulator domain).

The export gives, per hidden layer and task, ``+1 iff (a >= thr) XOR flip`` with shared
weights ``w`` (``flip`` marks gamma < 0). FINN's thresholds can only ask ``a >= t``, so a
flipped neuron uses the negated weight row: ``a < thr  <=>  -a >= 1 - thr``. Tasks
without flips (the usual case: gamma stays positive) keep the shared weights and differ
only in thresholds; a task with flips also gets its own weight file for that layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metabnn.hw.export_artifact import ExportArtifact


@dataclass
class LayerParams:
    weights: np.ndarray  # [MW, MH] as the MVAU holds them: ±1 (bipolar) or 0/1 (XNOR)
    thresholds: np.ndarray | None  # [MH, 1] in the accumulator domain, None for the output layer
    own_weights: bool  # weights differ from the shared ones (flipped rows)


def layer_params(art: ExportArtifact, layer: int, task: int, xnor: bool,
                 acc_range: tuple[int, int]) -> LayerParams:
    """Layer ``layer`` of task ``task`` for an MVAU in XNOR (popcount) or integer mode."""
    w = art.weights(layer).astype(np.int64)  # [out, in] ±1
    n_in = w.shape[1]
    thr = None
    sign = np.ones(w.shape[0], dtype=np.int64)
    if layer < art.n_layers - 1:
        t, flip = art.thresholds(layer, task)
        sign = np.where(flip, -1, 1)
        t = np.where(flip, 1 - t, t)  # a < t  <=>  -a >= 1 - t
        if xnor:
            t = -((-(t + n_in)) // 2)  # a = 2 pc - n: a >= t <=> pc >= ceil((t + n) / 2)
        lo, hi = acc_range
        thr = np.clip(t, lo, hi + 1).astype(np.float32)[:, None]
    w = (w * sign[:, None]).T
    weights = ((w + 1) // 2 if xnor else w).astype(np.float32)
    return LayerParams(weights, thr, bool(np.any(sign < 0)))


def host_logits(art: ExportArtifact, acc: np.ndarray, task: int, xnor: bool) -> np.ndarray:
    """The output layer's per-task affine on the last MVAU's accumulator (popcount if XNOR)."""
    a = acc.astype(np.int64)
    if xnor:
        a = 2 * a - art.widths[-2]
    scale, bias = art.output_affine(task)
    return (a.astype(np.float32) * scale + bias).astype(np.float32)
