"""DetachHostTail: cut the graph after the last MVAU; the host applies the output affine."""

from __future__ import annotations

from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

HW_OPS = ("MVAU", "Thresholding")


class DetachHostTail(Transformation):
    """Remove the nodes after the last MVAU (output BatchNorm as Mul/Add) and end the graph there."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        nodes = list(model.graph.node)
        last = max((i for i, n in enumerate(nodes) if n.op_type.startswith("MVAU")), default=None)
        if last is None or last == len(nodes) - 1:
            return model, False
        for n in nodes[last + 1:]:
            model.graph.node.remove(n)
        out = nodes[last].output[0]
        shape = model.get_tensor_shape(out)
        dtype = model.get_tensor_datatype(out)
        for vi in [v for v in model.graph.value_info if v.name == out]:
            model.graph.value_info.remove(vi)  # a graph output must not also be a value_info
        while len(model.graph.output):
            model.graph.output.pop()
        model.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, shape))
        model.set_tensor_datatype(out, dtype)
        return model, False
