"""SetTaskParameters: load one task's weights and thresholds into the HW graph."""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from metabnn.hw.export_artifact import ExportArtifact
from metabnn.hw.passes.round_thresholds_to_accumulator import accumulator_range
from metabnn.hw.task_params import layer_params


def _next_thresholding(model: ModelWrapper, node):
    """The Thresholding fed by ``node``, past width converters and FIFOs; None at the next MVAU."""
    consumer = model.find_consumer(node.output[0])
    while consumer is not None and not consumer.op_type.startswith(("Thresholding", "MVAU")):
        consumer = model.find_consumer(consumer.output[0])
    return consumer if consumer is not None and consumer.op_type.startswith("Thresholding") else None


def layer_nodes(model: ModelWrapper) -> list[tuple[object, object | None]]:
    """(MVAU, the Thresholding after it or None) per network layer, in order."""
    out = []
    for node in model.graph.node:
        if node.op_type.startswith("MVAU"):
            out.append((node, _next_thresholding(model, node)))
    return out


class SetTaskParameters(Transformation):
    """Write task ``task``'s per-layer weights and thresholds (from the export) into the graph."""

    def __init__(self, art: ExportArtifact, task: int):
        super().__init__()
        self.art, self.task = art, task
        self.own_weights: list[int] = []  # layers whose weights differ from the shared ones

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        layers = layer_nodes(model)
        if len(layers) != self.art.n_layers:
            raise AssertionError(f"HW graph has {len(layers)} MVAUs for {self.art.n_layers} layers")
        for l, (mvau, thr_node) in enumerate(layers):
            xnor = bool(getCustomOp(mvau).get_nodeattr("binaryXnorMode"))
            p = layer_params(self.art, l, self.task, xnor, accumulator_range(model, mvau))
            model.set_initializer(mvau.input[1], p.weights)
            if p.own_weights:
                self.own_weights.append(l)
            if p.thresholds is not None:
                if thr_node is None:
                    raise AssertionError(f"layer {l} ({mvau.name}) has no Thresholding node after it")
                model.set_initializer(thr_node.input[1], p.thresholds)
        return model, False
