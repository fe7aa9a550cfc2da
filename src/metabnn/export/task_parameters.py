"""Per-task parameters: BatchNorm statistics, hidden-layer thresholds, output affine.

The network's binary weights are shared by every task; only the BatchNorm state differs
(DESIGN.md, "BatchNorm and hardware"). For layer ``l`` the integer pre-activation is

    a = sum_i x_i * w_i        w_i in {-1, +1};  x_i in {0..255} (8-bit input layer)
                                                  or {-1, +1} (every other layer)

and the float network computes ``y = gamma * (s * a - mean) / sqrt(var + eps) + beta`` with
``s`` the input scale (1/255 for the 8-bit input layer, 1 otherwise).

Hidden layers: the sign activation gives +1 where ``y >= 0`` (sign(0) = +1, as in Brevitas
and QONNX's BipolarQuant) and -1 elsewhere. That equals one integer comparison per neuron:

    bit = (a >= thr) XOR flip          activation = +1 if bit else -1

- gamma > 0: ``y >= 0  <=>  a >= T`` with ``T = (mean - beta * sigma / gamma) / s``, so
  ``thr = ceil(T)``, ``flip = 0``. ``a == T`` exactly (y == 0) gives +1: inclusive.
- gamma < 0: the comparison turns around, ``y >= 0  <=>  a <= T``; again inclusive, so
  ``a <= floor(T)  <=>  not (a >= floor(T) + 1)``: ``thr = floor(T) + 1``, ``flip = 1``.
  The weights are shared by all tasks, so the sign of gamma can not be folded into the
  weight row (FINN's streamlining would do that); it is a per-task, per-neuron flag.
- gamma == 0: ``y = beta`` whatever ``a``: ``thr = a_min`` (always true), ``flip = beta < 0``.

Thresholds are clipped to ``[a_min, a_max + 1]`` (a_min/a_max: the reachable range of
``a``), which keeps every comparison's result and makes them fit a fixed integer width.
Layers whose input is binary also get popcount-domain thresholds: with ``pc`` the number
of agreeing (XNOR) bits of ``n`` inputs, ``a = 2 * pc - n`` and ``a >= thr <=>
pc >= ceil((thr + n) / 2)``, clipped to ``[0, n + 1]``.

Output layer: the host applies ``logit = out_scale * a + out_bias`` per class (per task)
and takes the argmax (ties: lowest index). ``out_scale = s * gamma / sqrt(var + eps)`` and
``out_bias = beta - mean * gamma / sqrt(var + eps)`` are computed in float32 the way
PyTorch's evaluation-mode BatchNorm folds them, so the host logits match PyTorch's to
float rounding.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from metabnn.errors import MetabnnError

INPUT_SCALE_8BIT = 1.0 / 255.0
FLOAT32_EXACT = 2 ** 24  # integer sums below this are exact in float32 matmuls


def layer_input(layer: int, input_bits: int) -> tuple[float, int, bool]:
    """(scale s, largest |x|, binary?) of layer ``layer``'s input."""
    if layer == 0 and input_bits == 8:
        return INPUT_SCALE_8BIT, 255, False
    return 1.0, 1, True


def preactivation_range(n_in: int, max_in: int) -> tuple[int, int]:
    """Reachable (a_min, a_max) of ``a = sum x_i w_i`` over ``n_in`` inputs."""
    return -n_in * max_in, n_in * max_in


def bn_to_threshold(mean: np.ndarray, var: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                    eps: float, scale: float, a_min: int, a_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron (thr int64, flip bool) with ``sign(BN(scale * a)) == +1 <=> (a >= thr) ^ flip``.

    Computed in float64 from the stored float32 statistics (see the module docstring for
    the rule, the inclusive equality and gamma < 0).
    """
    mean, var, gamma, beta = (np.asarray(v, dtype=np.float64) for v in (mean, var, gamma, beta))
    sigma = np.sqrt(var + float(eps))
    thr = np.full(mean.shape, a_min, dtype=np.int64)
    flip = np.zeros(mean.shape, dtype=bool)
    pos, neg, zero = gamma > 0, gamma < 0, gamma == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean - beta * sigma / gamma) / float(scale)
    lo, hi = float(a_min), float(a_max + 1)
    thr[pos] = np.clip(np.ceil(t[pos]), lo, hi).astype(np.int64)
    thr[neg] = np.clip(np.floor(t[neg]) + 1, lo, hi).astype(np.int64)
    flip[neg] = True
    flip[zero] = beta[zero] < 0
    return thr, flip


def popcount_thresholds(thr: np.ndarray, n_in: int) -> np.ndarray:
    """``a >= thr  <=>  pc >= ceil((thr + n) / 2)`` for ±1 inputs, with ``a = 2 pc - n``."""
    # -((-x) // 2) is ceil(x / 2) for integers, without float rounding
    pc = -((-(thr.astype(np.int64) + n_in)) // 2)
    return np.clip(pc, 0, n_in + 1)


def output_affine(mean: np.ndarray, var: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                  eps: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(out_scale, out_bias), float32, with ``logit = out_scale * a + out_bias``."""
    f32 = lambda v: torch.as_tensor(np.asarray(v), dtype=torch.float32)  # noqa: E731
    invstd = 1.0 / torch.sqrt(f32(var) + eps)
    alpha = f32(gamma) * invstd
    bias = f32(beta) - f32(mean) * alpha
    out_scale = alpha if scale == 1.0 else alpha * scale
    return out_scale.numpy().astype(np.float32), bias.numpy().astype(np.float32)


def _bn_arrays(state: Mapping[str, Any], name: str, task: int) -> dict[str, np.ndarray]:
    if name not in state:
        raise MetabnnError(f"the BatchNorm state of task {task + 1} lacks layer '{name}'; "
                           "the run's checkpoint is damaged: retrain it")
    s = state[name]
    out = {"mean": s["mean"], "var": s["var"]}
    n = len(out["mean"])
    out["gamma"] = s.get("weight", torch.ones(n))
    out["beta"] = s.get("bias", torch.zeros(n))
    arrays = {k: np.asarray(torch.as_tensor(v).detach().cpu().float().numpy(), dtype=np.float32)
              for k, v in out.items()}
    for k, v in arrays.items():
        if not np.all(np.isfinite(v)):
            raise MetabnnError(f"task {task + 1}, BatchNorm layer '{name}': {k} is not finite; "
                               "the training diverged: retrain with a smaller learning rate")
    if np.any(arrays["var"] < 0):
        raise MetabnnError(f"task {task + 1}, BatchNorm layer '{name}' has a negative variance; "
                           "the run's checkpoint is damaged: retrain it")
    return arrays


def build_parameters(weights: Sequence[np.ndarray], bn_names: Sequence[str],
                     bn_states: Sequence[Mapping[str, Any]], eps: Sequence[float],
                     input_bits: int) -> dict[str, np.ndarray]:
    """The arrays of ``parameters.npz`` (see ``metabnn.export`` for the key list).

    ``weights[l]`` is layer ``l``'s binary weight matrix [out, in] in {-1, +1}.
    """
    n_layers = len(weights)
    if len(bn_names) != n_layers or len(eps) != n_layers:
        raise MetabnnError(f"the model has {n_layers} linear layers but {len(bn_names)} BatchNorm "
                           "layers; only BinaryMLP runs (model.kind=bnn) can be exported")
    p: dict[str, np.ndarray] = {
        "input_bits": np.array(input_bits, dtype=np.int64),
        "n_tasks": np.array(len(bn_states), dtype=np.int64),
        "widths": np.array([weights[0].shape[1]] + [w.shape[0] for w in weights], dtype=np.int64),
    }
    for l, (w, name) in enumerate(zip(weights, bn_names)):
        w = np.asarray(w)
        if not np.all(np.abs(w) == 1):
            raise MetabnnError(f"layer {l} weights are not binary (±1); only BinaryMLP runs can be exported")
        p[f"w{l}"] = w.astype(np.int8)
        scale, max_in, binary = layer_input(l, input_bits)
        n_in = w.shape[1]
        a_min, a_max = preactivation_range(n_in, max_in)
        per_task = [_bn_arrays(s, name, t) for t, s in enumerate(bn_states)]
        for k in ("mean", "var", "gamma", "beta"):
            p[f"bn{l}_{k}"] = np.stack([t[k] for t in per_task]).astype(np.float32)
        p[f"bn{l}_eps"] = np.array(float(eps[l]), dtype=np.float64)
        if l < n_layers - 1:
            thr, flip = zip(*(bn_to_threshold(t["mean"], t["var"], t["gamma"], t["beta"], eps[l],
                                              scale, a_min, a_max) for t in per_task))
            p[f"thr{l}"] = np.stack(thr)
            p[f"flip{l}"] = np.stack(flip)
            if binary:
                p[f"thr{l}_popcount"] = popcount_thresholds(p[f"thr{l}"], n_in)
        else:
            sc, bi = zip(*(output_affine(t["mean"], t["var"], t["gamma"], t["beta"], eps[l], scale)
                           for t in per_task))
            p["out_scale"] = np.stack(sc)
            p["out_bias"] = np.stack(bi)
    return p
