"""CheckHWMapping: every node must be a FINN HW layer, or the build says which one is not."""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from metabnn.errors import MetabnnError

WHY = {
    "MatMul": "its weights are not binary (±1) or its input is not binary/8-bit integer",
    "Mul": "a scale that streamlining could not absorb into thresholds (e.g. a non-integer input)",
    "Add": "a bias that streamlining could not absorb into thresholds",
    "MultiThreshold": "an activation that is not a threshold over an integer accumulator",
    "BatchNormalization": "a BatchNorm that is not directly after a linear layer",
}


class CheckHWMapping(Transformation):
    """Raise a one-line MetabnnError naming the first node FINN could not map to a HW layer."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            if node.domain.startswith("finn.custom_op.fpgadataflow"):
                continue
            why = WHY.get(node.op_type, f"FINN has no HW layer for {node.op_type}")
            raise MetabnnError(
                f"layer '{node.name}' ({node.op_type}) cannot be mapped to FINN hardware: {why}; "
                "only binary MLPs trained by 'metabnn train' (8-bit or 1-bit input) can be built")
        return model, False
