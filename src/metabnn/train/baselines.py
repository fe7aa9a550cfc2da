"""Continual-learning baselines that regularise the hidden weights: EWC and Synaptic Intelligence.

Both add a quadratic pull toward earlier tasks' weights. The pull is added to the
gradients analytically (not through autograd), which keeps the training step as cheap
as plain training and gives SI the unregularised task gradient it needs.
EWC keeps only sum_k F_k and sum_k F_k * W_k, so its memory does not grow with tasks.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class NoBaseline:
    """Plain training (the metaplastic optimizer alone, or m = 0)."""

    def __init__(self, params: list[nn.Parameter]):
        self.params = params

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def start_task(self) -> None:
        pass

    def end_task(self, fisher_batches: Callable[[], Any] | None = None) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EWC(NoBaseline):
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017) with a diagonal empirical Fisher."""

    def __init__(self, params: list[nn.Parameter], lam: float, samples: int):
        super().__init__(params)
        self.lam, self.samples = lam, samples
        self.fisher_sum = [torch.zeros_like(p) for p in params]
        self.anchor_sum = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def before_step(self) -> None:
        for p, a, b in zip(self.params, self.fisher_sum, self.anchor_sum):
            # d/dW of lam/2 * sum_k F_k (W - W_k)^2
            p.grad.add_(torch.addcmul(-b, a, p), alpha=self.lam)

    def end_task(self, fisher_batches: Callable[[], Any] | None = None) -> None:
        if fisher_batches is None:
            return
        fisher = [torch.zeros_like(p) for p in self.params]
        n = 0
        for loss in fisher_batches():  # one-sample log-likelihoods, model in eval mode
            grads = torch.autograd.grad(loss, self.params)
            for f, g in zip(fisher, grads):
                f.addcmul_(g, g)
            n += 1
        with torch.no_grad():
            for p, f, a, b in zip(self.params, fisher, self.fisher_sum, self.anchor_sum):
                f.div_(max(n, 1))
                a.add_(f)
                b.addcmul_(f, p)

    def state_dict(self) -> dict[str, Any]:
        return {"fisher_sum": self.fisher_sum, "anchor_sum": self.anchor_sum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher_sum = [t.clone() for t in state["fisher_sum"]]
        self.anchor_sum = [t.clone() for t in state["anchor_sum"]]


class SynapticIntelligence(NoBaseline):
    """Synaptic Intelligence (Zenke et al. 2017): path-integral importance per weight."""

    def __init__(self, params: list[nn.Parameter], c: float, xi: float):
        super().__init__(params)
        self.c, self.xi = c, xi
        self.omega = [torch.zeros_like(p) for p in params]       # importance, summed over tasks
        self.anchor = [p.detach().clone() for p in params]       # weights at the last task end
        self.path = [torch.zeros_like(p) for p in params]        # running -g * dW in this task
        self.task_start = [p.detach().clone() for p in params]
        self._grad: list[torch.Tensor] = []
        self._before: list[torch.Tensor] = []

    @torch.no_grad()
    def before_step(self) -> None:
        self._grad = [p.grad.clone() for p in self.params]
        self._before = [p.detach().clone() for p in self.params]
        for p, o, a in zip(self.params, self.omega, self.anchor):
            p.grad.add_(o * (p - a), alpha=2 * self.c)

    @torch.no_grad()
    def after_step(self) -> None:
        for w, g, p, before in zip(self.path, self._grad, self.params, self._before):
            w.sub_(g * (p - before))

    @torch.no_grad()
    def start_task(self) -> None:
        self.task_start = [p.detach().clone() for p in self.params]
        for w in self.path:
            w.zero_()

    @torch.no_grad()
    def end_task(self, fisher_batches: Callable[[], Any] | None = None) -> None:
        for o, w, p, s in zip(self.omega, self.path, self.params, self.task_start):
            o.add_(w / ((p - s) ** 2 + self.xi)).clamp_(min=0)
        self.anchor = [p.detach().clone() for p in self.params]

    def state_dict(self) -> dict[str, Any]:
        return {"omega": self.omega, "anchor": self.anchor, "path": self.path,
                "task_start": self.task_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("omega", "anchor", "path", "task_start"):
            setattr(self, key, [t.clone() for t in state[key]])


def make_baseline(config: dict[str, Any], params: list[nn.Parameter]) -> NoBaseline:
    kind = config["kind"]
    if kind == "ewc":
        return EWC(params, float(config["ewc_lambda"]), int(config["ewc_samples"]))
    if kind == "si":
        return SynapticIntelligence(params, float(config["si_c"]), float(config["si_xi"]))
    return NoBaseline(params)
