"""Binarized and full-precision MLPs as plain ``nn.Sequential`` stacks.

The models are flat sequences (quant input, then Linear, BatchNorm, activation, ...) so
that per-task BatchNorm statistics can be computed layer by layer and the export stage
can hand the network to Brevitas' QONNX exporter unchanged.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from brevitas.nn import QuantIdentity, QuantLinear

from metabnn.errors import MetabnnError
from metabnn.train.quantizers import BinaryActivation, BinaryInput, BinaryWeight, Uint8Input

INIT_RANGE = 0.05  # reference code: W_h ~ U(-0.05, 0.05)


def check_widths(widths: Sequence[int]) -> list[int]:
    widths = [int(w) for w in widths]
    if len(widths) < 2:
        raise MetabnnError(
            f"model widths {widths} need at least an input and an output size; "
            "set e.g. model.widths=[784,1024,1024,10]"
        )
    if any(w < 1 for w in widths):
        raise MetabnnError(f"model widths {widths} must all be positive integers")
    return widths


class CenteredInput(nn.Module):
    """Maps pixels in [0, 1] to [-0.5, 0.5] so a 1-bit sign input splits at mid-grey."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - 0.5


class BinaryMLP(nn.Sequential):
    """784-...-10 BNN: binary weights and activations, BatchNorm after every layer.

    ``input_bits`` is 8 (real-valued pixels into the first layer, as in the paper) or 1.
    """

    def __init__(self, widths: Sequence[int], input_bits: int = 8, bn_affine: bool = True):
        widths = check_widths(widths)
        if input_bits not in (1, 8):
            raise MetabnnError(f"model.input_bits={input_bits} is not supported; use 8 or 1")
        layers: list[nn.Module] = []
        if input_bits == 8:
            layers.append(QuantIdentity(act_quant=Uint8Input, return_quant_tensor=False))
        else:
            layers += [CenteredInput(), QuantIdentity(act_quant=BinaryInput)]
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            linear = QuantLinear(n_in, n_out, bias=False, weight_quant=BinaryWeight)
            nn.init.uniform_(linear.weight, -INIT_RANGE, INIT_RANGE)
            layers += [linear, nn.BatchNorm1d(n_out, affine=bn_affine)]
            if i < len(widths) - 2:
                layers.append(QuantIdentity(act_quant=BinaryActivation))
        super().__init__(*layers)
        self.widths = widths
        self.input_bits = input_bits

    def hidden_weights(self) -> list[tuple[str, nn.Parameter]]:
        """The float weights behind the binary ones, in layer order."""
        return [(f"{name}.weight", m.weight) for name, m in self.named_children()
                if isinstance(m, QuantLinear)]


class FloatMLP(nn.Sequential):
    """The full-precision comparison network: same shape, ReLU, BatchNorm after every layer."""

    def __init__(self, widths: Sequence[int]):
        widths = check_widths(widths)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            linear = nn.Linear(n_in, n_out, bias=False)
            layers += [linear, nn.BatchNorm1d(n_out)]
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)
        self.widths = widths
        self.input_bits = 32

    def hidden_weights(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"{name}.weight", m.weight) for name, m in self.named_children()
                if isinstance(m, nn.Linear)]


def build_model(kind: str, widths: Sequence[int], input_bits: int = 8) -> nn.Sequential:
    if kind == "bnn":
        return BinaryMLP(widths, input_bits=input_bits)
    if kind == "float":
        return FloatMLP(widths)
    raise MetabnnError(f"unknown model.kind '{kind}'; use 'bnn' or 'float'")


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm1d]]:
    return [(n, m) for n, m in model.named_children() if isinstance(m, nn.BatchNorm1d)]
