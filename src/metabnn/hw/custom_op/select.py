"""SelectMetabnnMVAU: binary ``MVAU_hls`` nodes become metabnn's ``MVAUBinary_rtl``."""

from __future__ import annotations

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from metabnn.errors import MetabnnError

DOMAIN = "finn.custom_op.fpgadataflow.rtl"


def is_binary_mvau(node) -> bool:
    """An ``MVAU_hls`` with 1-bit (BINARY or BIPOLAR) weights: metabnn's RTL is meant for it."""
    return node.op_type == "MVAU_hls" and getCustomOp(node).get_input_datatype(1).name in ("BINARY", "BIPOLAR")


def selectable(node) -> bool:
    """A binary ``MVAU_hls`` our RTL implements exactly (see ``mvau_binary_rtl.unsupported``)."""
    from metabnn.hw.custom_op.mvau_binary_rtl import unsupported

    return is_binary_mvau(node) and unsupported(getCustomOp(node)) is None


class SelectMetabnnMVAU(Transformation):
    """Replace every binary ``MVAU_hls`` by ``MVAUBinary_rtl`` with the same attributes.

    Run after FINN's SpecializeLayers (and before or after folding: PE/SIMD carry over).
    Removes Vitis HLS from the path for these layers. A binary MVAU with an attribute value
    the RTL does not implement is refused with a one-line MetabnnError naming the layer, the
    attribute and what is supported: left to FINN it would need Vitis HLS, and taken as it is
    it would compute something else. MVAUs with wider weights are not ours and stay.
    """

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        import metabnn.hw.custom_op  # noqa: F401  (registers MVAUBinary_rtl)
        from metabnn.hw.custom_op.mvau_binary_rtl import MVAUBinary_rtl, unsupported

        changed = False
        for i, node in enumerate(model.graph.node):
            if not is_binary_mvau(node):
                continue
            why = unsupported(getCustomOp(node))
            if why:
                raise MetabnnError(why)
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
