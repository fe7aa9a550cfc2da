"""Per-task BatchNorm state: exact population statistics and the affine parameters.

The reference code normalises with batch statistics at test time, which hardware cannot
do. Here each task keeps, per BatchNorm layer, the population mean/variance of that
task's training data (computed layer by layer, so every layer sees its inputs exactly as
in evaluation) and, optionally, a snapshot of gamma/beta. In hardware the pair folds into
that task's thresholds, so keeping them per task costs nothing on the accelerator.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

BNState = dict[str, dict[str, torch.Tensor]]  # layer name -> {mean, var, weight, bias}


def _bn_layers(model: nn.Sequential) -> dict[str, nn.BatchNorm1d]:
    return {n: m for n, m in model.named_children() if isinstance(m, nn.BatchNorm1d)}


@torch.no_grad()
def population_statistics(model: nn.Sequential, images: torch.Tensor,
                          chunk: int = 5000) -> BNState:
    """Mean and (biased) variance of every BN layer's input over ``images`` (uint8 [N, D]).

    Layers are walked in order: a BN layer's statistics are fixed before its output feeds
    the next layer, so deeper statistics are those of the deployed (evaluation) network.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    acts = [images[i:i + chunk].to(device=device, dtype=torch.float32).div_(255.0)
            for i in range(0, len(images), chunk)]
    state: BNState = {}
    for name, module in model.named_children():
        if isinstance(module, nn.BatchNorm1d):
            total = sum(a.shape[0] for a in acts)
            mean = sum(a.double().sum(0) for a in acts) / total
            var = sum(((a.double() - mean) ** 2).sum(0) for a in acts) / total
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
            state[name] = {"mean": mean.float().cpu(), "var": var.float().cpu()}
            if module.affine:
                state[name]["weight"] = module.weight.detach().clone().cpu()
                state[name]["bias"] = module.bias.detach().clone().cpu()
        acts = [module(a) for a in acts]
    model.train(was_training)
    return state


def live_affine(model: nn.Sequential, stats: BNState) -> BNState:
    """``stats`` with gamma/beta replaced by the model's current ones."""
    out: BNState = {}
    for name, module in _bn_layers(model).items():
        out[name] = dict(stats[name])
        if module.affine:
            out[name]["weight"] = module.weight.detach().clone().cpu()
            out[name]["bias"] = module.bias.detach().clone().cpu()
    return out


@contextlib.contextmanager
def using_bn_state(model: nn.Sequential, state: BNState) -> Iterator[None]:
    """Evaluate with ``state`` loaded into the BN layers; the live parameters come back after."""
    layers = _bn_layers(model)
    saved = {n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in layers.items()}
    try:
        with torch.no_grad():
            for name, module in layers.items():
                s = state[name]
                module.running_mean.copy_(s["mean"])
                module.running_var.copy_(s["var"])
                if module.affine and "weight" in s:
                    module.weight.copy_(s["weight"])
                    module.bias.copy_(s["bias"])
        yield
    finally:
        with torch.no_grad():
            for name, module in layers.items():
                module.load_state_dict(saved[name])
