"""SelectMetabnnMVAU: binary ``MVAU_hls`` nodes become metabnn's ``MVAUBinary_rtl``."""

from __future__ import annotations

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

DOMAIN = "finn.custom_op.fpgadataflow.rtl"


def selectable(node) -> bool:
    """An MVAU_hls our RTL implements: XNOR or integer x bipolar, no fused thresholds, weights inside."""
    if node.op_type != "MVAU_hls":
        return False
    inst = getCustomOp(node)
    xnor = bool(inst.get_nodeattr("binaryXnorMode"))
    return (inst.get_input_datatype(1).name == ("BINARY" if xnor else "BIPOLAR")
            and inst.get_nodeattr("noActivation") == 1
            and inst.get_nodeattr("mem_mode") == "internal_decoupled")


class SelectMetabnnMVAU(Transformation):
    """Replace every selectable ``MVAU_hls`` by ``MVAUBinary_rtl`` with the same attributes.

    Run after FINN's SpecializeLayers (and before or after folding: PE/SIMD carry over).
    Removes Vitis HLS from the path for these layers.
    """

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        import metabnn.hw.custom_op  # noqa: F401  (registers MVAUBinary_rtl)
        from metabnn.hw.custom_op.mvau_binary_rtl import MVAUBinary_rtl

        changed = False
        for i, node in enumerate(model.graph.node):
            if not selectable(node):
                continue
            new = helper.make_node("MVAUBinary_rtl", list(node.input), list(node.output),
                                   name=node.name.replace("MVAU_hls", "MVAUBinary_rtl"), domain=DOMAIN)
            types = MVAUBinary_rtl(new).get_nodeattr_types()
            # HLS-only attributes (HLS paths, cppsim) do not carry over; generated paths restart
            skip = {"code_gen_dir_ipgen", "ipgen_path", "ip_path", "gen_top_module"}
            new.attribute.extend(a for a in node.attribute if a.name in types and a.name not in skip)
            model.graph.node.remove(node)
            model.graph.node.insert(i, new)
            changed = True
        return model, changed
