"""``MVAUBinary_rtl``: FINN's MVAU (binary XNOR or integer x bipolar) as metabnn's RTL.

Stands in for ``MVAU_hls`` (the only binary MVAU FINN has, and it needs Vitis HLS): same
node attributes, folding, stream packing and cycle estimate; its own LUT and BRAM model
(``hw/rtl_resources.py``, fitted to yosys on this RTL: FINN's HLS model overstates its LUTs
two to four times and understates its true-dual-port BRAMs); Python execution (FINN's MVAU
model, also after specialization, unlike MVAU_hls), and the same runtime-weight .dat files. Its HDL is
``rtl/mvau_bin.sv`` with the weight memory inside (AXI-lite ``s_axilite`` when
``runtime_writeable_weights``), wrapped in a Verilog-2001 top for Vivado's IP integrator.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from finn.custom_op.fpgadataflow.matrixvectoractivation import MVAU
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend

from metabnn.errors import MetabnnError

RTL_DIR = Path(__file__).resolve().parents[1] / "rtl"
_OWN_RTL = ("mvau_bin.sv", "axil_mux.sv")

# The values of FINN's MVAU attributes that rtl/mvau_bin.sv implements; any other value would
# build hardware that computes something else, so it is refused by name (``unsupported``).
# Attributes not listed either take any value (PE, SIMD, MW, MH, numInputVectors,
# runtime_writeable_weights) or are unused with noActivation=1 (ActVal, ram_style_thresholds).
SUPPORTED = {
    "noActivation": (1,),  # thresholds live in their own runtime-writeable Thresholding layers
    "mem_mode": ("internal_decoupled",),  # the weight memory sits inside the module
    "ram_style": ("auto", "block", "distributed"),  # no UltraRAM in the resource model
    "resType": ("auto", "lut"),  # the datapath is LUTs and carry chains, no DSP variant
    "pumpedMemory": (0,),
    "TH": (1,),  # no tiling
}


def unsupported(inst) -> str | None:
    """Why metabnn's RTL cannot build MVAU node ``inst`` exactly as FINN defines it (None: it can)."""
    name = inst.onnx_node.name
    for attr, ok in SUPPORTED.items():
        value = inst.get_nodeattr(attr)
        if value not in ok:
            return (f"layer '{name}': {attr}={value} is not implemented by metabnn's binary MVAU RTL; "
                    f"it supports {attr}={' or '.join(map(str, ok))}")
    xnor = bool(inst.get_nodeattr("binaryXnorMode"))
    idt, wdt = inst.get_input_datatype(0).name, inst.get_input_datatype(1).name
    if xnor and (wdt, idt) != ("BINARY", "BINARY"):
        return (f"layer '{name}': binaryXnorMode=1 with inputDataType={idt}, weightDataType={wdt} is not "
                "supported; XNOR mode takes BINARY inputs and BINARY weights")
    if not xnor and wdt != "BIPOLAR":
        return (f"layer '{name}': weightDataType={wdt} with binaryXnorMode=0 is not supported; metabnn's binary "
                "MVAU takes BIPOLAR weights (or BINARY ones with binaryXnorMode=1)")
    if not xnor and idt == "BIPOLAR":
        # FINN computes the XNOR popcount for this pair; the RTL's integer mode would read each
        # input bit as a signed 1-bit integer (0 or -1), so every output would be wrong
        return (f"layer '{name}': inputDataType=BIPOLAR with binaryXnorMode=0 is not supported; give BIPOLAR x "
                "BIPOLAR products in XNOR mode (binaryXnorMode=1, BINARY inputs and weights, as qonnx's "
                "ConvertBipolarMatMulToXnorPopcount makes them)")
    if not xnor and not inst.get_input_datatype(0).is_integer():
        return (f"layer '{name}': inputDataType={idt} is not supported; metabnn's binary MVAU takes integer "
                "inputs (UINTn, INTn, BINARY)")
    return None


class MVAUBinary_rtl(MVAU, RTLBackend):
    """Binary MVAU in metabnn's RTL (see rtl/mvau_bin.sv for the hardware)."""

    def get_nodeattr_types(self):
        # carried over from MVAU_hls by SelectMetabnnMVAU; this RTL has no DSP mode to choose
        attrs = {"resType": ("s", False, "lut", {"auto", "lut", "dsp"})}
        attrs.update(MVAU.get_nodeattr_types(self))
        attrs.update(RTLBackend.get_nodeattr_types(self))
        return attrs

    def lut_estimation(self, fpgapart):
        from metabnn.hw.rtl_resources import mvau_lut

        return mvau_lut(self.config(), self.get_nodeattr("ram_style"))

    def bram_estimation(self, fpgapart):
        from metabnn.hw.rtl_resources import weight_bram18

        return weight_bram18(self.config(), self.get_nodeattr("ram_style"))

    def uram_estimation(self, fpgapart):
        return 0

    def finn_hls_estimates(self, fpgapart: str) -> dict[str, float]:
        """FINN's own LUT/BRAM estimates for ``MVAU_hls`` at this folding, for comparison."""
        from finn.custom_op.fpgadataflow.hls.matrixvectoractivation_hls import MVAU_hls

        return {"lut": MVAU_hls.lut_estimation(self, fpgapart), "bram": MVAU.bram_estimation(self, fpgapart)}

    def dsp_estimation(self, fpgapart):
        return 0

    def execute_node(self, context, graph):
        mode = self.get_nodeattr("exec_mode")
        if mode not in ("", "cppsim", "python"):
            raise MetabnnError(f"{self.onnx_node.name}: rtlsim needs Vivado's xsim; "
                               "simulate the whole design with 'metabnn sim' instead")
        MVAU.execute_node(self, context, graph)

    def config(self):
        """The ``MvauConfig`` of this node (refuses what the RTL does not implement)."""
        from metabnn.hw.rtl_model import MvauConfig

        why = unsupported(self)
        if why:
            raise MetabnnError(why)
        xnor = bool(self.get_nodeattr("binaryXnorMode"))
        idt = self.get_input_datatype(0)
        acc = self.get_accumulator_datatype()
        return MvauConfig(self.get_nodeattr("MW"), self.get_nodeattr("MH"), self.get_nodeattr("PE"),
                          self.get_nodeattr("SIMD"), xnor, idt.bitwidth(), idt.signed() and not xnor,
                          acc_w=acc.bitwidth(), out_w=self.get_output_datatype().bitwidth())

    def get_rtl_file_list(self, abspath=False):
        from finn.util.basic import get_settings

        name = self.get_nodeattr("gen_top_module") or self.onnx_node.name
        if abspath:
            gen = self.get_nodeattr("code_gen_dir_ipgen") + "/"
            axi = str(Path(get_settings().finn_rtllib) / "axi" / "hdl") + "/"
        else:
            gen = axi = ""
        return [axi + "axilite.sv", *(gen + f for f in _OWN_RTL), gen + f"{name}.v"]

    def generate_hdl(self, model, fpgapart, clk):
        cfg = self.config()
        gen = Path(self.get_nodeattr("code_gen_dir_ipgen"))
        name = self.onnx_node.name
        for f in _OWN_RTL:
            shutil.copyfile(RTL_DIR / f, gen / f)
        weights = model.get_initializer(self.onnx_node.input[1])
        init = ""
        if weights is not None:  # the bitstream starts with these; the driver may rewrite them
            self.make_weight_file(weights, "decoupled_verilog_dat", str(gen / "memblock.dat"))
            init = str(gen / "memblock.dat")
        (gen / f"{name}.v").write_text(wrapper_verilog(name, cfg, init, self.get_nodeattr("ram_style")))
        self.set_nodeattr("gen_top_module", name)
        self.set_nodeattr("ipgen_path", str(gen))
        self.set_nodeattr("ip_path", str(gen))

    def code_generation_ipi(self):
        cmd = [f"add_files -norecurse {f}" for f in self.get_rtl_file_list(abspath=True)]
        cmd.append(f"create_bd_cell -type module -reference {self.get_nodeattr('gen_top_module')} "
                   f"{self.onnx_node.name}")
        return cmd

    def get_verilog_top_module_intf_names(self):
        intf = MVAU.get_verilog_top_module_intf_names(self)
        intf["axilite"] = ["s_axilite"] if self.get_nodeattr("runtime_writeable_weights") else []
        return intf


def wrapper_verilog(name: str, cfg, weight_init: str, ram_style: str) -> str:
    """A Verilog-2001 top (IP integrator module references cannot be SystemVerilog)."""
    aw, ib, ob = cfg.axi_addr_bits, cfg.in_bytes * 8, cfg.out_bytes * 8
    params = ", ".join(f".{k}({v})" for k, v in cfg.params().items())
    ports = ["s_axilite_AWVALID", "s_axilite_AWREADY", "s_axilite_AWADDR", "s_axilite_WVALID",
             "s_axilite_WREADY", "s_axilite_WDATA", "s_axilite_WSTRB", "s_axilite_BVALID", "s_axilite_BREADY",
             "s_axilite_BRESP", "s_axilite_ARVALID", "s_axilite_ARREADY", "s_axilite_ARADDR", "s_axilite_RVALID",
             "s_axilite_RREADY", "s_axilite_RDATA", "s_axilite_RRESP", "in0_V_TDATA", "in0_V_TVALID",
             "in0_V_TREADY", "out0_V_TDATA", "out0_V_TVALID", "out0_V_TREADY"]
    return f"""// Generated by metabnn (MVAUBinary_rtl): wraps rtl/mvau_bin.sv for FINN's IP integrator.
module {name} (
	(* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axilite:in0_V:out0_V, ASSOCIATED_RESET ap_rst_n" *)
	(* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 ap_clk CLK" *)
	input ap_clk,
	(* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)
	input ap_rst_n,
	input s_axilite_AWVALID, output s_axilite_AWREADY, input [{aw - 1}:0] s_axilite_AWADDR,
	input s_axilite_WVALID, output s_axilite_WREADY, input [31:0] s_axilite_WDATA, input [3:0] s_axilite_WSTRB,
	output s_axilite_BVALID, input s_axilite_BREADY, output [1:0] s_axilite_BRESP,
	input s_axilite_ARVALID, output s_axilite_ARREADY, input [{aw - 1}:0] s_axilite_ARADDR,
	output s_axilite_RVALID, input s_axilite_RREADY, output [31:0] s_axilite_RDATA, output [1:0] s_axilite_RRESP,
	input [{ib - 1}:0] in0_V_TDATA, input in0_V_TVALID, output in0_V_TREADY,
	output [{ob - 1}:0] out0_V_TDATA, output out0_V_TVALID, input out0_V_TREADY
);
	mvau_bin #({params}, .WEIGHT_INIT("{weight_init}"), .RAM_STYLE("{ram_style}")) core (
		.ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
		{", ".join(f".{p}({p})" for p in ports)}
	);
endmodule
"""
