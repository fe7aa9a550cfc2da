"""RoundThresholdsToAccumulator: the threshold-rounding fix, applied right after HW conversion.

FINN's order (minimize bit widths, then ``RoundAndClipThresholds``) asserts when a
BatchNorm maps below the smallest reachable accumulator value (a negative threshold on an
unsigned popcount). Rounding up and clipping to the accumulator's reachable range
``[lo, hi + 1]`` first keeps every comparison's result, and fixing the threshold type to
that range (not to the values of one task) leaves room for every task's thresholds.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation


def accumulator_range(model: ModelWrapper, mvau) -> tuple[int, int]:
    """Reachable (lo, hi) of an MVAU's accumulator for any weights of its type."""
    inst = getCustomOp(mvau)
    mw = int(inst.get_nodeattr("MW"))
    if inst.get_nodeattr("binaryXnorMode"):
        return 0, mw  # popcount of agreeing bits
    idt = inst.get_input_datatype(0)
    wdt = inst.get_input_datatype(1)
    corners = [a * b for a in (idt.min(), idt.max()) for b in (wdt.min(), wdt.max())]
    return int(mw * min(corners)), int(mw * max(corners))


def threshold_datatype(lo: int, hi: int) -> DataType:
    """The smallest integer type holding every threshold in ``[lo, hi + 1]``."""
    if lo >= 0:
        return DataType.get_smallest_possible(hi + 1)
    return DataType.get_smallest_possible(-max(-lo, hi + 2))


class RoundThresholdsToAccumulator(Transformation):
    """Ceil and clip Thresholding thresholds to the producing MVAU's reachable accumulator range."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            if not node.op_type.startswith("Thresholding"):
                continue
            producer = model.find_producer(node.input[0])
            if producer is not None and producer.op_type.startswith("MVAU"):
                lo, hi = accumulator_range(model, producer)
            else:  # an input quantizer (1-bit input: pixel >= 128): the range is the input type
                idt = model.get_tensor_datatype(node.input[0])
                if not idt.is_integer():
                    continue
                lo, hi = int(idt.min()), int(idt.max())
            thr = model.get_initializer(node.input[1])
            thr = np.clip(np.ceil(thr.astype(np.float64)), lo, hi + 1).astype(np.float32)
            model.set_initializer(node.input[1], thr)
            tdt = threshold_datatype(lo, hi)
            model.set_tensor_datatype(node.input[1], tdt)
            getCustomOp(node).set_nodeattr("weightDataType", tdt.name)
        return model, False
