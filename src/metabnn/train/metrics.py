"""Continual-learning metrics: accuracy, the accuracy matrix summaries, flips, weight histograms."""

from __future__ import annotations


import torch
from torch import nn

from metabnn.train.summary import backward_transfer, mean_final_accuracy, summarize  # noqa: F401

HIST_RANGE = 4.0
HIST_BINS = 80


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 2000) -> float:
    """Top-1 accuracy in % of ``model`` (already in eval mode) on uint8 images [N, D]."""
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device=device, dtype=torch.float32).div_(255.0)
        pred = model(x).argmax(1).cpu()
        correct += int((pred == labels[i:i + batch_size]).sum())
    return 100.0 * correct / max(len(images), 1)


def binary_signs(model: nn.Module) -> dict[str, torch.Tensor]:
    """sign(W_h) as the binarizer sees it (0 maps to +1), one int8 tensor per layer."""
    return {name: torch.where(p.detach() >= 0, 1, -1).to(torch.int8).cpu()
            for name, p in model.hidden_weights()}  # type: ignore[operator]


def flip_fractions(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((before[name] != after[name]).float().mean()) for name in before}


def hidden_histograms(model: nn.Module) -> dict[str, list[int]]:
    """Counts of W_h over [-4, 4] (the edges clamp the tails), per layer."""
    out: dict[str, list[int]] = {}
    for name, p in model.hidden_weights():  # type: ignore[operator]
        w = p.detach().float().cpu().clamp(-HIST_RANGE, HIST_RANGE)
        out[name] = torch.histc(w, bins=HIST_BINS, min=-HIST_RANGE, max=HIST_RANGE).long().tolist()
    return out
