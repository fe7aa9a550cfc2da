"""Metaplastic Adam (Laborieux et al., Nat. Commun. 2021), the optimizer of the hidden weights.

Adam moments as usual; for a binary layer's hidden weights W_h, an update that would move
W_h toward a sign flip (sign(W_h) * m_t > 0) is attenuated by
``f_meta(W_h) = 1 - tanh^2(meta * |W_h|)``, so weights that grew large become hard to flip.
Updates away from zero are plain Adam. Every group carries its own ``meta`` (per layer);
``meta = 0`` makes f_meta exactly 1.0, and the step follows ``torch.optim.Adam``'s
single-tensor arithmetic operation for operation, so it reproduces Adam bit for bit.
BatchNorm parameters go in a group with ``meta = 0``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from metabnn.errors import MetabnnError

# Below this many hidden weights a fused kernel saves less than it costs to compile.
FUSE_MIN_NUMEL = 200_000


def metaplastic_factor(hidden: Tensor, meta: float) -> Tensor:
    """f_meta = 1 - tanh^2(meta |W_h|), computed as 4e / (1 + e)^2 with e = exp(-2 meta |W_h|).

    The two are the same function (sech^2); the exp form needs one transcendental instead
    of tanh's costlier one and stays accurate where tanh^2 rounds to 1.
    """
    e = hidden.abs().mul_(-2.0 * meta).exp_()
    return e.mul(4.0).div_(e.add(1.0).square_())


def metaplastic_adam_update(p: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                            step_size: Tensor, bias_correction2_sqrt: Tensor, eps: float,
                            meta: float, beta1: float, beta2: float, weight_decay: float) -> None:
    """One metaplastic Adam step on one tensor, written so torch.compile fuses it into one loop."""
    grad = grad + weight_decay * p
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
    # -step_size * m_t moves |W_h| toward 0 exactly when sign(W_h) * m_t > 0.
    toward_flip = torch.sign(p) * exp_avg > 0
    e = torch.exp(-2.0 * meta * p.abs())
    f_meta = 4.0 * e / ((1.0 + e) * (1.0 + e))
    update = torch.where(toward_flip, f_meta * exp_avg, exp_avg)
    p.sub_(step_size * update / denom)


_fused_update: Callable[..., None] | None = None


def _compiled_update() -> Callable[..., None]:
    global _fused_update
    if _fused_update is None:
        _fused_update = torch.compile(metaplastic_adam_update, dynamic=True, fullgraph=True)
    return _fused_update


class MetaplasticAdam(Optimizer):
    """Adam whose steps toward a sign flip of a hidden weight shrink by f_meta."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.005,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        meta: float = 0.0,
        fused: bool = False,
    ):
        if lr <= 0:
            raise MetabnnError(f"optim.lr={lr} must be positive")
        if weight_decay < 0:
            raise MetabnnError(f"optim.weight_decay={weight_decay} must be >= 0")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise MetabnnError(f"optim.betas={betas} must lie in [0, 1)")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, meta=meta)
        super().__init__(params, defaults)
        self.fused = fused
        for group in self.param_groups:
            if group["meta"] < 0:
                raise MetabnnError(
                    f"metaplasticity m={group['meta']} is negative; use m >= 0 (0 = plain Adam)"
                )

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd, meta = group["lr"], group["eps"], group["weight_decay"], group["meta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    # Same state layout as torch.optim.Adam, so state dicts read alike.
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                step = state["step"].item()
                if meta > 0 and self.fused:
                    self._fused_step(p, grad, exp_avg, exp_avg_sq, step, group)
                    continue
                if wd != 0:
                    grad = grad.add(p, alpha=wd)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
                if meta > 0:
                    # -step_size * m_t moves |W_h| toward 0 exactly when sign(W_h) * m_t > 0.
                    toward_flip = torch.sign(p).mul_(exp_avg) > 0
                    attenuated = metaplastic_factor(p, meta).mul_(exp_avg)
                    update = torch.where(toward_flip, attenuated, exp_avg)
                else:
                    update = exp_avg
                p.addcdiv_(update, denom, value=-step_size)
        return loss

    def _fused_step(self, p: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                    step: float, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        # Tensors, not floats, so that the compiled kernel is not rebuilt at every step.
        step_size = torch.tensor(group["lr"] / (1 - beta1**step), dtype=p.dtype, device=p.device)
        bc2_sqrt = torch.tensor((1 - beta2**step) ** 0.5, dtype=p.dtype, device=p.device)
        args = (p, grad, exp_avg, exp_avg_sq, step_size, bc2_sqrt, group["eps"], group["meta"],
                beta1, beta2, group["weight_decay"])
        try:
            _compiled_update()(*args)
        except Exception as e:  # no C++ compiler, unsupported platform: stay correct, go slower
            warnings.warn(f"fused metaplastic update unavailable ({type(e).__name__}); "
                          "using the unfused one", stacklevel=2)
            self.fused = False
            metaplastic_adam_update(*args)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   meta: float | list[float], betas=(0.9, 0.999), eps: float = 1e-8,
                   fused: bool | str = False) -> MetaplasticAdam:
    """One group per hidden-weight tensor (its own m), one plain-Adam group for the rest.

    ``fused="auto"`` compiles the metaplastic step when the network is large enough to gain.
    """
    hidden = [p for _, p in model.hidden_weights()]  # type: ignore[operator]
    metas = list(meta) if isinstance(meta, (list, tuple)) else [float(meta)] * len(hidden)
    if len(metas) != len(hidden):
        raise MetabnnError(
            f"optim.meta has {len(metas)} values but the model has {len(hidden)} layers; "
            "give one m or one per layer"
        )
    hidden_ids = {id(p) for p in hidden}
    others = [p for p in model.parameters() if id(p) not in hidden_ids]
    groups = [{"params": [p], "meta": float(m)} for p, m in zip(hidden, metas)]
    if others:
        groups.append({"params": others, "meta": 0.0})
    if fused == "auto":
        fused = sum(p.numel() for p in hidden) >= FUSE_MIN_NUMEL
    return MetaplasticAdam(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                           fused=bool(fused))
