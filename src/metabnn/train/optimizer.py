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

from typing import Any, Iterable

import torch
from torch.optim import Optimizer

from metabnn.errors import MetabnnError


def metaplastic_factor(hidden: torch.Tensor, meta: float) -> torch.Tensor:
    """f_meta = 1 - tanh^2(meta * |W_h|), in (0, 1]."""
    return torch.tanh(hidden.abs().mul_(meta)).square_().neg_().add_(1.0)


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
    ):
        if lr <= 0:
            raise MetabnnError(f"optim.lr={lr} must be positive")
        if weight_decay < 0:
            raise MetabnnError(f"optim.weight_decay={weight_decay} must be >= 0")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise MetabnnError(f"optim.betas={betas} must lie in [0, 1)")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, meta=meta)
        super().__init__(params, defaults)
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


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   meta: float | list[float], betas=(0.9, 0.999), eps: float = 1e-8
                   ) -> MetaplasticAdam:
    """One group per hidden-weight tensor (its own m), one plain-Adam group for the rest."""
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
    return MetaplasticAdam(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
