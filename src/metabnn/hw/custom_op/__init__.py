"""metabnn's FINN custom ops; importing this package registers them with qonnx/FINN.

``MVAUBinary_rtl`` (metabnn.hw.custom_op.mvau_binary_rtl) is registered under FINN's RTL
domain ``finn.custom_op.fpgadataflow.rtl``: FINN's passes (PrepareIP, stitched IP, DWC/FIFO
insertion, exec-mode selection) dispatch on that exact domain string, so an op in another
domain would be skipped by them. The class itself lives here, in metabnn.
"""

from qonnx.custom_op.registry import add_op_to_domain

from metabnn.hw.custom_op.mvau_binary_rtl import MVAUBinary_rtl

add_op_to_domain("finn.custom_op.fpgadataflow.rtl", MVAUBinary_rtl)

__all__ = ["MVAUBinary_rtl"]
