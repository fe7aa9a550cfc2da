"""Brevitas quantizers for binarized networks, chosen so QONNX export gives FINN-mappable nodes.

- weights: sign(W_h) with scale 1 and a plain straight-through gradient; Brevitas' own
  ``SignedBinaryWeightPerTensorConst`` clamps the hidden weights in place, which would cap
  metaplastic consolidation (DESIGN.md), so we use the unclamped ``BinaryQuant``.
- activations: sign(x) with scale 1; the clamp before the sign zeroes the gradient where
  |x| > 1 (the hardtanh straight-through estimator of the reference code).
- input: unsigned 8-bit with scale 1/255, so a uint8 pixel p fed as p/255 is represented exactly.
"""

from brevitas.core.quant import BinaryQuant
from brevitas.inject.enum import ScalingImplType
from brevitas.quant import Uint8ActPerTensorFloat
from brevitas.quant.base import SignedBinaryClampedConst
from brevitas.quant.binary import SignedBinaryActPerTensorConst
from brevitas.quant.solver import WeightQuantSolver


class BinaryWeight(SignedBinaryClampedConst, WeightQuantSolver):
    """sign(W_h) in {-1, +1}, scale 1, identity straight-through gradient, no clipping."""

    tensor_quant = BinaryQuant
    scaling_const = 1.0


class BinaryActivation(SignedBinaryActPerTensorConst):
    """sign(x) in {-1, +1}, scale 1, gradient zeroed where |x| > 1."""

    scaling_const = 1.0


class Uint8Input(Uint8ActPerTensorFloat):
    """Pixels in [0, 1] on the 8-bit grid k/255."""

    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 1.0
    max_val = 1.0


class BinaryInput(SignedBinaryActPerTensorConst):
    """1-bit input option: pixel p/255 becomes sign(p/255 - 0.5) via the model's offset."""

    scaling_const = 1.0
