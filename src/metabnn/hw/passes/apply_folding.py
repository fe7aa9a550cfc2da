"""ApplyFolding: set PE/SIMD (and memory style) per layer from the folding search's choice."""

from __future__ import annotations

from typing import Any, Mapping

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation


class ApplyFolding(Transformation):
    """Set the node attributes in ``folding`` ({node name: {attribute: value}}) on the graph."""

    def __init__(self, folding: Mapping[str, Mapping[str, Any]]):
        super().__init__()
        self.folding = folding

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            for attr, value in self.folding.get(node.name, {}).items():
                getCustomOp(node).set_nodeattr(attr, value)
        return model, False
