"""SetRuntimeWriteable: weights and thresholds in decoupled memories with an AXI-lite port."""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation


class SetRuntimeWriteable(Transformation):
    """Make every MVAU's weights and every Thresholding's thresholds writeable at run time."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            inst = getCustomOp(node) if node.domain.startswith("finn.custom_op.fpgadataflow") else None
            if inst is None:
                continue
            if node.op_type.startswith("MVAU"):
                inst.set_nodeattr("mem_mode", "internal_decoupled")
                inst.set_nodeattr("runtime_writeable_weights", 1)
            elif node.op_type.startswith("Thresholding"):
                inst.set_nodeattr("runtime_writeable_weights", 1)
        return model, False
