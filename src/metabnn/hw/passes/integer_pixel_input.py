"""IntegerPixelInput: the accelerator takes raw uint8 pixels instead of ``pixels / 255``."""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import RemoveUnusedTensors
from qonnx.transformation.infer_shapes import InferShapes

PIXEL_SCALE = np.float32(1.0 / 255.0)


def _is_uint8_grid_quant(model: ModelWrapper, node) -> bool:
    """Quant(scale 1/255, zero point 0, 8 bit, unsigned): the identity on ``p / 255`` grids."""
    if node.op_type != "Quant":
        return False
    scale, zp, bits = (model.get_initializer(n) for n in node.input[1:4])
    if scale is None or zp is None or bits is None:
        return False
    attrs = {a.name: a.i for a in node.attribute}
    return (np.allclose(scale, PIXEL_SCALE, rtol=0, atol=1e-9) and np.all(zp == 0) and np.all(bits == 8)
            and attrs.get("signed", 1) == 0 and attrs.get("narrow", 0) == 0)


class IntegerPixelInput(Transformation):
    """Make the graph input UINT8 pixels: scale by 1/255 inside, drop an on-grid 8-bit input Quant."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        iname = model.graph.input[0].name
        if model.get_tensor_datatype(iname) == DataType["UINT8"]:
            return model, False
        consumers = model.find_consumers(iname)
        scaled = model.make_new_valueinfo_name()
        mul = helper.make_node("Mul", [iname, "metabnn_pixel_scale"], [scaled], name="PixelScale")
        model.set_initializer("metabnn_pixel_scale", PIXEL_SCALE)
        for c in consumers:
            if _is_uint8_grid_quant(model, c):
                # Quant(p/255) == p/255 for integer p, so the Quant is the identity here; keeping
                # it would become a 255-step Thresholding layer in front of the first MVAU.
                mul.output[0] = c.output[0]
                model.graph.node.remove(c)
            else:
                c.input[list(c.input).index(iname)] = scaled
        model.graph.node.insert(0, mul)
        model.set_tensor_datatype(iname, DataType["UINT8"])
        model = model.transform(RemoveUnusedTensors()).transform(InferShapes())
        return model, False
