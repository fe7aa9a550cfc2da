"""Brevitas quantizers for binarized networks, chosen so QONNX export gives FINN-mappable nodes.

- weights: sign(W_h) with scale 1 and a plain straight-through gradient; Brevitas' own
  ``SignedBinaryWeightPerTensorConst`` clamps the hidden weights in place, which would cap
  metaplastic consolidation (DESIGN.md), so we use the unclamped ``BinaryQuant``.
- activations: sign(x) with scale 1; the clamp before the sign zeroes the gradient where
  |x| > 1 (the hardtanh straight-through estimator of the reference code).
- input: unsigned 8-bit with scale 1/255, so a uint8 pixel p fed as p/255 is represented exactly.
"""

import torch
from torch import Tensor

from brevitas.core.quant import BinaryQuant, ClampedBinaryQuant
from brevitas.inject.enum import ScalingImplType
from brevitas.quant import Uint8ActPerTensorFloat
from brevitas.quant.base import SignedBinaryClampedConst
from brevitas.quant.binary import SignedBinaryActPerTensorConst
from brevitas.quant.solver import WeightQuantSolver


class _SignSte(torch.autograd.Function):
    """sign with 0 -> +1 (Brevitas' convention) and an identity gradient."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        # copysign is one vectorised pass (a comparison plus where is ten times slower here);
        # adding +0.0 turns -0.0 into +0.0 so that zero maps to +1 like x >= 0 does.
        return torch.copysign(torch.ones((), dtype=x.dtype, device=x.device), x + 0.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


class UnitBinaryQuant(BinaryQuant):
    """Brevitas' BinaryQuant for a unit scale, in one pass over the weights.

    The stock path (ge, cast, multiply, subtract, then multiply by the scale, and the scale
    again in the backward pass) walks the 4 MB weight tensor six times per step and cost a
    third of the training time; multiplying by a scale of exactly 1 changes nothing.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        scale = self.scaling_impl(x)
        return _SignSte.apply(x), scale, self.zero_point(), self.bit_width()


class _HardtanhSignSte(torch.autograd.Function):
    """sign (0 -> +1) with the hardtanh straight-through gradient: zero where |x| > 1."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.copysign(torch.ones((), dtype=x.dtype, device=x.device), x + 0.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1.0)


class UnitClampedBinaryQuant(ClampedBinaryQuant):
    """Brevitas' ClampedBinaryQuant for a unit scale as one autograd function.

    Same values and gradients as clamp(-1, 1) -> sign -> * 1, without the module calls
    that made each activation cost as much as a 100x1024 matrix product.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        scale = self.scaling_impl(x)
        return _HardtanhSignSte.apply(x), scale, self.zero_point(), self.bit_width()


class BinaryWeight(SignedBinaryClampedConst, WeightQuantSolver):
    """sign(W_h) in {-1, +1}, scale 1, identity straight-through gradient, no clipping."""

    tensor_quant = UnitBinaryQuant
    scaling_const = 1.0


class BinaryActivation(SignedBinaryActPerTensorConst):
    """sign(x) in {-1, +1}, scale 1, gradient zeroed where |x| > 1."""

    tensor_quant = UnitClampedBinaryQuant
    scaling_const = 1.0


class Uint8Input(Uint8ActPerTensorFloat):
    """Pixels in [0, 1] on the 8-bit grid k/255."""

    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 1.0
    max_val = 1.0


class BinaryInput(SignedBinaryActPerTensorConst):
    """1-bit input option: pixel p/255 becomes sign(p/255 - 0.5) via the model's offset."""

    tensor_quant = UnitClampedBinaryQuant
    scaling_const = 1.0
