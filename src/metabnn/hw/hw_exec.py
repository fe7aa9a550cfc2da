"""Running the HW-layer graph in FINN's Python execution mode, many images at a time.

FINN executes MVAU/Thresholding nodes in Python only before they are specialized to
HLS/RTL (after that it needs cppsim or Vivado's xsim), so the build keeps the generic HW
graph (``hw_layers.onnx``) for this and applies the same weights/thresholds as the
specialized one.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

CHUNK = 2000


def with_batch(model: ModelWrapper, batch: int) -> ModelWrapper:
    """A copy of ``model`` taking ``batch`` images: tensor shapes and numInputVectors changed."""
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    out = ModelWrapper(model.model.SerializeToString())
    out = out.transform(ChangeBatchSize(batch))
    for node in out.graph.node:
        if node.domain.startswith("finn.custom_op.fpgadataflow"):
            inst = getCustomOp(node)
            if "numInputVectors" in inst.get_nodeattr_types():
                inst.set_nodeattr("numInputVectors", [batch])
    return out.transform(InferShapes())


def execute_batched(model: ModelWrapper, images: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """The graph output for uint8 images [N, D], run ``chunk`` images per execution."""
    from finn.core.onnx_exec import execute_onnx

    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    outs, batched, size = [], None, 0
    for i in range(0, len(images), chunk):
        part = images[i:i + chunk]
        if batched is None or size != len(part):
            batched, size = with_batch(model, len(part)), len(part)
        outs.append(np.asarray(execute_onnx(batched, {iname: part.astype(np.float32)})[oname]))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
