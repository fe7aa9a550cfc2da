"""The golden model: the exported network as integer dot products, thresholds and a host affine.

This is what the hardware computes (and what the hardware stage must match bit for bit):

- input: uint8 pixels ``p`` [N, D] (already permuted for permuted tasks). An 8-bit model
  uses ``x = p`` (the float model sees ``p / 255``); a 1-bit model uses ``x = +1`` where
  ``p >= 128`` else ``-1`` (``sign(p / 255 - 0.5)`` with sign(0) = +1).
- hidden layer ``l``: ``a = x @ w{l}.T`` (exact integers), then
  ``x = +1 if (a >= thr{l}[task]) XOR flip{l}[task] else -1``.
- output layer: ``logits = out_scale[task] * a + out_bias[task]`` (float32),
  class = argmax with ties going to the lowest index (numpy's and torch's rule).

``params`` is the mapping stored in the EXPORT dir's ``parameters.npz`` (``np.load`` of it,
or the dict ``build_parameters`` returns).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from metabnn.errors import MetabnnError
from metabnn.export.task_parameters import FLOAT32_EXACT


def _int_matmul(x: np.ndarray, w: np.ndarray, max_in: int) -> np.ndarray:
    """Exact ``x @ w.T`` for small integers, through a float BLAS (every partial sum is an
    integer below 2**24 (float32) or 2**53 (float64), so no rounding happens)."""
    dtype = np.float32 if w.shape[1] * max_in < FLOAT32_EXACT else np.float64
    return (x.astype(dtype) @ w.T.astype(dtype)).astype(np.int64)


def preactivations(params: Mapping[str, np.ndarray], images_uint8: np.ndarray, task: int) -> list[np.ndarray]:
    """The integer pre-activation ``a`` of every layer (int64 [N, width])."""
    n_tasks = int(params["n_tasks"])
    if not 0 <= task < n_tasks:
        raise MetabnnError(f"task index {task} is outside 0..{n_tasks - 1}; the export holds {n_tasks} tasks")
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 2:
        raise MetabnnError(f"reference input must be uint8 [N, D] pixels, got {images.dtype} {list(images.shape)}")
    widths = [int(v) for v in params["widths"]]
    if images.shape[1] != widths[0]:
        raise MetabnnError(f"reference input has {images.shape[1]} values per image, the network takes {widths[0]}")
    if int(params["input_bits"]) == 8:
        x, max_in = images, 255
    else:
        x, max_in = np.where(images >= 128, 1, -1).astype(np.int8), 1
    out = []
    n_layers = len(widths) - 1
    for l in range(n_layers):
        a = _int_matmul(x, np.asarray(params[f"w{l}"]), max_in)
        out.append(a)
        if l < n_layers - 1:
            bit = (a >= params[f"thr{l}"][task]) ^ params[f"flip{l}"][task]
            x, max_in = np.where(bit, 1, -1).astype(np.int8), 1
    return out


def reference_predict(params: Mapping[str, np.ndarray], images_uint8: np.ndarray,
                      task: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes int64 [N], logits float32 [N, C]) of task ``task`` for uint8 images [N, D]."""
    a = preactivations(params, images_uint8, task)[-1]
    logits = a.astype(np.float32) * params["out_scale"][task] + params["out_bias"][task]
    return np.argmax(logits, axis=1), logits.astype(np.float32)
