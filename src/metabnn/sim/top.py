"""Whole-accelerator top level: BUILD_DIR/rtl/metabnn_top.sv and its address map.

The layers are the dataflow partition's nodes in stream order (what FINN would stitch,
minus the DMAs): ``MVAU_hls`` becomes metabnn's ``mvau_bin``, ``Thresholding_rtl`` FINN's
own generated wrapper (copied from hw_codegen/), ``StreamingDataWidthConverter_rtl``
metabnn's ``stream_dwc`` (finn-rtllib's ``dwc_axi`` for widths that do not divide each
other); a small FIFO (``stream_fifo``) sits in front of every MVAU so the producer can run
ahead while the MVAU folds over its buffered input.

One AXI-lite port: runtime-writeable layer i (the order of FINN's runtime_weights files)
owns bytes [i * 2**SB, (i+1) * 2**SB); inside, each layer keeps its FINN register map, so
the driver's .dat files are written word by word from the layer's base, as on the board.
``address_map.json`` lists the bases. Ports ``dbg_starve``/``dbg_block`` (one bit per layer:
wants input but none offered / holds output nobody takes) only feed the simulator's counters.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metabnn.atomic import StagedDir, remove_stale_stages
from metabnn.errors import MetabnnError

TOP = "metabnn_top"


@dataclass
class Layer:
    name: str
    op_type: str
    in_bits: int  # padded AXI-Stream widths
    out_bits: int
    module: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    axi_bits: int = 0  # 0: no AXI-lite port
    fifo_depth: int = 0  # FIFO in front of this layer (words)
    info: dict[str, Any] = field(default_factory=dict)


def _clog2(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 0 else 0


def _dt(inst, name: str):
    from qonnx.core.datatype import DataType

    return DataType[inst.get_nodeattr(name)]


def _require(node, inst, attr: str, ok, why: str) -> Any:
    """The attribute's value, or one line naming the layer, the attribute and the value refused."""
    try:
        value = inst.get_nodeattr(attr)
    except Exception:  # FINN raises AttributeError or its own errors for unknown/unset attributes
        value = None
    if value is None or not ok(value):
        shown = "unset" if value is None else repr(value)
        raise MetabnnError(f"layer {node.name}: {attr} = {shown} is not what metabnn's RTL top takes ({why}); "
                           "rebuild it with this metabnn's 'metabnn build'")
    return value


def _common_checks(node, inst, per: str, width: str) -> None:
    """What every layer with weights/thresholds must be for the top's stream and memory map."""
    _require(node, inst, "numInputVectors", lambda v: list(v) == [1], "the top streams one vector per image")
    _require(node, inst, "runtime_writeable_weights", lambda v: v == 1,
             "the simulation loads every layer's memory over AXI-lite as the board driver does")
    p = _require(node, inst, per, lambda v: v > 0, "it must be a positive fold")
    _require(node, inst, width, lambda v: v > 0 and v % p == 0, f"{per} = {p} must divide it")


def _mvau(node, inst, rtl: Path, build_dir: Path) -> Layer:
    from metabnn.hw.rtl_model import MvauConfig

    _require(node, inst, "mem_mode", lambda v: v == "internal_decoupled",
             "metabnn's MVAU keeps its weights in an AXI-lite memory, FINN's internal_decoupled")
    _require(node, inst, "noActivation", lambda v: v == 1,
             "metabnn builds threshold in separate Thresholding layers, not inside the MVAU")
    _require(node, inst, "pumpedMemory", lambda v: v == 0, "no double-pumped weight memory")
    _common_checks(node, inst, "PE", "MH")
    _require(node, inst, "SIMD", lambda v: v > 0, "it must be a positive fold")
    _require(node, inst, "MW", lambda v: v > 0 and v % inst.get_nodeattr("SIMD") == 0,
             f"SIMD = {inst.get_nodeattr('SIMD')} must divide it")
    wdt, idt = _dt(inst, "weightDataType"), _dt(inst, "inputDataType")
    xnor = bool(inst.get_nodeattr("binaryXnorMode"))
    if wdt.name not in ("BINARY", "BIPOLAR") or (not xnor and wdt.name != "BIPOLAR"):
        raise MetabnnError(f"{node.name}: mvau_bin takes binary/bipolar weights, not {wdt.name}")
    acc, odt = _dt(inst, "accDataType"), _dt(inst, "outputDataType")
    try:
        cfg = MvauConfig(inst.get_nodeattr("MW"), inst.get_nodeattr("MH"), inst.get_nodeattr("PE"),
                         inst.get_nodeattr("SIMD"), xnor, idt.bitwidth(), idt.signed() and not xnor,
                         acc_w=acc.bitwidth(), out_w=odt.bitwidth())
    except MetabnnError as e:
        raise MetabnnError(f"layer {node.name} is not what metabnn's RTL top takes: {e}") from None
    if cfg.acc_signed != acc.signed():
        raise MetabnnError(f"{node.name}: accumulator type {acc.name} does not fit the MVAU mode")
    params: dict[str, Any] = dict(cfg.params())
    init = build_dir / "hw_codegen" / node.name / "memblock.dat"
    if init.is_file():  # FINN's decoupled_verilog_dat: the same lines, so the bitstream starts loaded
        shutil.copyfile(init, rtl / f"{node.name}_weights.dat")
        params["WEIGHT_INIT"] = ("INIT", f"{node.name}_weights.dat")
    params["RAM_STYLE"] = inst.get_nodeattr("ram_style")
    return Layer(node.name, node.op_type, cfg.in_bytes * 8, cfg.out_bytes * 8, "mvau_bin", params,
                 cfg.axi_addr_bits, fifo_depth=max(2, cfg.sf),
                 info={"sf": cfg.sf, "nf": cfg.nf, "out_w": cfg.out_w, "out_signed": cfg.acc_signed,
                       "pe": cfg.pe})


def _thresholding(node, inst, rtl: Path, build_dir: Path) -> Layer:
    _common_checks(node, inst, "PE", "NumChannels")
    src = build_dir / "hw_codegen" / node.name
    if not (src / f"{node.name}.v").is_file():
        raise MetabnnError(f"{node.name}: FINN's generated RTL is missing from {src}; rebuild")
    for f in src.iterdir():
        if f.suffix in (".v", ".dat"):
            shutil.copyfile(f, rtl / f.name)
    c, pe, n = inst.get_nodeattr("NumChannels"), inst.get_nodeattr("PE"), inst.get_nodeattr("numSteps")
    if _dt(inst, "weightDataType").bitwidth() > 32:
        raise MetabnnError(f"{node.name}: thresholds wider than 32 bits are not supported")
    # the wrapper's address port: $clog2(SETS) + $clog2(C/PE) + $clog2(PE) + $clog2(N) + 2 bits
    bits = _clog2(c // pe) + _clog2(pe) + _clog2(n) + 2
    return Layer(node.name, node.op_type, inst.get_instream_width_padded(), inst.get_outstream_width_padded(),
                 node.name, {"THRESHOLDS_PATH": ("INIT", f"{node.name}_")}, bits)


def _dwc(node, inst) -> Layer:
    i = _require(node, inst, "inWidth", lambda v: v > 0, "a stream is at least one bit wide")
    o = _require(node, inst, "outWidth", lambda v: v > 0, "a stream is at least one bit wide")
    # metabnn's stream_dwc where the widths divide each other (Verilator fails on vpc.sv for some)
    module = "stream_dwc" if max(i, o) % min(i, o) == 0 else "dwc_axi"
    return Layer(node.name, node.op_type, inst.get_instream_width_padded(), inst.get_outstream_width_padded(),
                 module, {"IBITS": i, "OBITS": o})


def read_layers(build_dir: Path, rtl: Path) -> tuple[list[Layer], list[str]]:
    """The stream-ordered layers of the build's dataflow partition and the runtime .dat stems."""
    from qonnx.custom_op.registry import getCustomOp

    import metabnn.hw.custom_op  # noqa: F401  (registers MVAUBinary_rtl for builds that use it)

    part = build_dir / "intermediate_models" / "dataflow_partition.onnx"
    if not part.is_file():
        raise MetabnnError(f"'{build_dir}' has no intermediate_models/dataflow_partition.onnx; "
                           "give a BUILD_DIR made by 'metabnn build'")
    layers, stems = [], []
    for sdp_ind, sdp in enumerate(_load(part, build_dir).graph.node):
        if sdp.op_type != "StreamingDataflowPartition":
            raise MetabnnError(f"'{part}' holds a {sdp.op_type} node where the dataflow partition should be; "
                               "rebuild with 'metabnn build'")
        recorded = Path(getCustomOp(sdp).get_nodeattr("model"))
        # the copy inside this build first: a copied or moved build still names the original's files
        path = build_dir / "dataflow_partition" / recorded.name
        if not path.is_file():
            path = recorded
        rt = 0
        for node in _load(path, build_dir).graph.node:
            try:
                inst = getCustomOp(node)
            except Exception:  # qonnx: no such custom op in any registered domain
                raise MetabnnError(f"the simulation has no RTL for {node.op_type} ({node.name})") from None
            if node.op_type.startswith("IODMA"):
                continue
            if node.op_type in ("MVAU_hls", "MVAUBinary_rtl"):
                layer = _mvau(node, inst, rtl, build_dir)
            elif node.op_type == "Thresholding_rtl":
                layer = _thresholding(node, inst, rtl, build_dir)
            elif node.op_type == "StreamingDataWidthConverter_rtl":
                layer = _dwc(node, inst)
            else:
                raise MetabnnError(f"the simulation has no RTL for {node.op_type} ({node.name})")
            if layer.axi_bits:
                stems.append(f"{sdp_ind}_{rt}_{node.name}")
                rt += 1
            layers.append(layer)
    if not any(l.axi_bits for l in layers):
        raise MetabnnError(f"the dataflow partition of '{build_dir}' has no MVAU or Thresholding layer; "
                           "rebuild with 'metabnn build'")
    for a, b in zip(layers, layers[1:]):
        if a.out_bits != b.in_bits:
            raise MetabnnError(f"stream width mismatch {a.name} ({a.out_bits}) -> {b.name} ({b.in_bits})")
    return layers, stems


def _load(path: Path, build_dir: Path):
    from qonnx.core.modelwrapper import ModelWrapper

    try:
        return ModelWrapper(str(path))
    except Exception:  # onnx raises DecodeError, OSError, ... for a missing or damaged file
        raise MetabnnError(f"'{path}' is missing or damaged; rebuild '{build_dir}' with 'metabnn build'") from None


def _param(k: str, v: Any) -> str:
    if isinstance(v, tuple):  # a file under INIT_DIR
        return f'.{k}({{INIT_DIR, "/{v[1]}"}})'
    if isinstance(v, str):
        return f'.{k}("{v}")'
    return f".{k}({int(v)})"


def _axi_ports(i: int, sb: int, bits: int) -> str:
    return ", ".join([
        f".s_axilite_AWVALID(axi_awvalid[{i}])", f".s_axilite_AWREADY(axi_awready[{i}])",
        f".s_axilite_AWADDR(axi_awaddr[{bits - 1}:0])", f".s_axilite_WVALID(axi_wvalid[{i}])",
        f".s_axilite_WREADY(axi_wready[{i}])", ".s_axilite_WDATA(axi_wdata)", ".s_axilite_WSTRB(axi_wstrb)",
        f".s_axilite_BVALID(axi_bvalid[{i}])", f".s_axilite_BREADY(axi_bready[{i}])",
        f".s_axilite_BRESP(axi_bresp[{i}])", f".s_axilite_ARVALID(axi_arvalid[{i}])",
        f".s_axilite_ARREADY(axi_arready[{i}])", f".s_axilite_ARADDR(axi_araddr[{bits - 1}:0])",
        f".s_axilite_RVALID(axi_rvalid[{i}])", f".s_axilite_RREADY(axi_rready[{i}])",
        f".s_axilite_RDATA(axi_rdata[{i}])", f".s_axilite_RRESP(axi_rresp[{i}])"])


def top_source(layers: list[Layer]) -> tuple[str, int, int]:
    """SystemVerilog of the top module; returns (source, slave address bits, master address bits)."""
    axi_layers = [l for l in layers if l.axi_bits]
    n_axi = len(axi_layers)
    sb = max(l.axi_bits for l in axi_layers)
    aw = sb + max(1, _clog2(n_axi))
    n = len(layers)
    v = ["// Generated by metabnn.sim.top from the build's dataflow partition. Do not edit.",
         f"module {TOP} #(parameter INIT_DIR = \".\")(",
         "\tinput logic ap_clk, input logic ap_rst_n,",
         f"\tinput logic s_axilite_AWVALID, output logic s_axilite_AWREADY, input logic [{aw - 1}:0] s_axilite_AWADDR,",
         "\tinput logic s_axilite_WVALID, output logic s_axilite_WREADY, input logic [31:0] s_axilite_WDATA,",
         "\tinput logic [3:0] s_axilite_WSTRB,",
         "\toutput logic s_axilite_BVALID, input logic s_axilite_BREADY, output logic [1:0] s_axilite_BRESP,",
         f"\tinput logic s_axilite_ARVALID, output logic s_axilite_ARREADY, input logic [{aw - 1}:0] s_axilite_ARADDR,",
         "\toutput logic s_axilite_RVALID, input logic s_axilite_RREADY, output logic [31:0] s_axilite_RDATA,",
         "\toutput logic [1:0] s_axilite_RRESP,",
         f"\tinput logic [{layers[0].in_bits - 1}:0] in0_V_TDATA, input logic in0_V_TVALID, output logic in0_V_TREADY,",
         f"\toutput logic [{layers[-1].out_bits - 1}:0] out0_V_TDATA, output logic out0_V_TVALID, "
         "input logic out0_V_TREADY,",
         f"\toutput logic [{n - 1}:0] dbg_starve, output logic [{n - 1}:0] dbg_block",
         ");",
         f"\tlogic [{n_axi - 1}:0] axi_awvalid, axi_awready, axi_wvalid, axi_wready, axi_bvalid, axi_bready;",
         f"\tlogic [{n_axi - 1}:0] axi_arvalid, axi_arready, axi_rvalid, axi_rready;",
         f"\tlogic [{n_axi - 1}:0][1:0] axi_bresp, axi_rresp;",
         f"\tlogic [{n_axi - 1}:0][31:0] axi_rdata;",
         f"\tlogic [{sb - 1}:0] axi_awaddr, axi_araddr;",
         "\tlogic [31:0] axi_wdata;",
         "\tlogic [3:0] axi_wstrb;",
         f"\taxil_mux #(.N({n_axi}), .SB({sb})) axil (.clk(ap_clk), .rst_n(ap_rst_n),",
         "\t\t.awvalid(s_axilite_AWVALID), .awready(s_axilite_AWREADY), .awaddr(s_axilite_AWADDR),",
         "\t\t.wvalid(s_axilite_WVALID), .wready(s_axilite_WREADY), .wdata(s_axilite_WDATA), .wstrb(s_axilite_WSTRB),",
         "\t\t.bvalid(s_axilite_BVALID), .bready(s_axilite_BREADY), .bresp(s_axilite_BRESP),",
         "\t\t.arvalid(s_axilite_ARVALID), .arready(s_axilite_ARREADY), .araddr(s_axilite_ARADDR),",
         "\t\t.rvalid(s_axilite_RVALID), .rready(s_axilite_RREADY), .rdata(s_axilite_RDATA), .rresp(s_axilite_RRESP),",
         "\t\t.s_awvalid(axi_awvalid), .s_awready(axi_awready), .s_awaddr(axi_awaddr),",
         "\t\t.s_wvalid(axi_wvalid), .s_wready(axi_wready), .s_wdata(axi_wdata), .s_wstrb(axi_wstrb),",
         "\t\t.s_bvalid(axi_bvalid), .s_bready(axi_bready), .s_bresp(axi_bresp),",
         "\t\t.s_arvalid(axi_arvalid), .s_arready(axi_arready), .s_araddr(axi_araddr),",
         "\t\t.s_rvalid(axi_rvalid), .s_rready(axi_rready), .s_rdata(axi_rdata), .s_rresp(axi_rresp));",
         ]
    # stream k: into layer k (k = n: the top output); "f" streams: out of a layer's FIFO
    for k in range(n + 1):
        w = layers[k].in_bits if k < n else layers[-1].out_bits
        v.append(f"\tlogic [{w - 1}:0] s{k}_tdata; logic s{k}_tvalid, s{k}_tready;")
    v += ["\tassign s0_tdata = in0_V_TDATA; assign s0_tvalid = in0_V_TVALID; assign in0_V_TREADY = s0_tready;",
          f"\tassign out0_V_TDATA = s{n}_tdata; assign out0_V_TVALID = s{n}_tvalid; assign s{n}_tready = out0_V_TREADY;"]
    ai = 0
    for k, l in enumerate(layers):
        src = f"s{k}"
        if l.fifo_depth:
            v += [f"\tlogic [{l.in_bits - 1}:0] f{k}_tdata; logic f{k}_tvalid, f{k}_tready;",
                  f"\tstream_fifo #(.DEPTH({l.fifo_depth}), .WIDTH({l.in_bits})) fifo_{l.name} (.clk(ap_clk), "
                  f".rst(!ap_rst_n), .idat(s{k}_tdata), .ivld(s{k}_tvalid), .irdy(s{k}_tready), "
                  f".odat(f{k}_tdata), .ovld(f{k}_tvalid), .ordy(f{k}_tready));"]
            src = f"f{k}"
        params = ", ".join(_param(a, b) for a, b in l.params.items())
        if l.module in ("dwc_axi", "stream_dwc"):
            ports = (f".ap_clk(ap_clk), .ap_rst_n(ap_rst_n), .s_axis_tdata({src}_tdata), "
                     f".s_axis_tvalid({src}_tvalid), .s_axis_tready({src}_tready), .m_axis_tdata(s{k + 1}_tdata), "
                     f".m_axis_tvalid(s{k + 1}_tvalid), .m_axis_tready(s{k + 1}_tready)")
        else:
            ports = (f".ap_clk(ap_clk), .ap_rst_n(ap_rst_n), {_axi_ports(ai, sb, l.axi_bits)}, "
                     f".in0_V_TDATA({src}_tdata), .in0_V_TVALID({src}_tvalid), .in0_V_TREADY({src}_tready), "
                     f".out0_V_TDATA(s{k + 1}_tdata), .out0_V_TVALID(s{k + 1}_tvalid), "
                     f".out0_V_TREADY(s{k + 1}_tready)")
            if l.op_type.startswith("Thresholding"):
                ports += ", .in1_V_TVALID(1'b0), .in1_V_TDATA('0), .in1_V_TREADY()"
            ai += 1
        v.append(f"\t{l.module} #({params}) {l.name} ({ports});")
        v.append(f"\tassign dbg_starve[{k}] = {src}_tready && !{src}_tvalid;")
        v.append(f"\tassign dbg_block[{k}] = s{k + 1}_tvalid && !s{k + 1}_tready;")
    v.append(f"endmodule : {TOP}")
    return "\n".join(v) + "\n", sb, aw


def sources(rtl: Path, layers: list[Layer]) -> list[Path]:
    """Every RTL file the top needs: metabnn's, finn-rtllib's (by path), the copied wrappers."""
    from metabnn.sim.verilator import RTL_DIR, finn_rtllib

    lib = finn_rtllib()
    out = [RTL_DIR / "mvau_bin.sv", RTL_DIR / "axil_mux.sv", RTL_DIR / "stream_fifo.sv",
           RTL_DIR / "stream_dwc.sv", lib / "axi/hdl/axilite.sv",
           lib / "thresholding/hdl/thresholding.sv", lib / "thresholding/hdl/thresholding_axi.sv"]
    if any(l.module == "dwc_axi" for l in layers):
        out += [lib / "dwc/hdl/dwc_axi.sv", lib / "dwc/hdl/vpc.sv"]
    out += [rtl / f"{l.name}.v" for l in layers if l.op_type.startswith("Thresholding")]
    return out + [rtl / f"{TOP}.sv"]


def _same_tree(a: Path, b: Path) -> bool:
    def files(d: Path) -> dict[str, Path]:
        return {p.name: p for p in d.iterdir() if p.is_file() and not p.name.startswith(".metabnn-")}

    if not b.is_dir() or b.is_symlink():
        return False
    fa, fb = files(a), files(b)
    return fa.keys() == fb.keys() and all(fa[k].read_bytes() == fb[k].read_bytes() for k in fa)


def _write(build_dir: Path, rtl: Path, out: Path) -> dict[str, Any]:
    """Generate the top's files into ``out`` (sources named at their place in ``rtl``); the map."""
    layers, stems = read_layers(build_dir, out)
    src, sb, aw = top_source(layers)
    (out / f"{TOP}.sv").write_text(src)
    axi = [l for l in layers if l.axi_bits]
    amap = {
        "top": TOP, "axilite_addr_bits": aw, "layer_addr_bits": sb,
        "in_bits": layers[0].in_bits, "out_bits": layers[-1].out_bits,
        "runtime": {stem: {"layer": l.name, "base": i << sb, "addr_bits": l.axi_bits}
                    for i, (stem, l) in enumerate(zip(stems, axi))},
        "layers": [{"name": l.name, "op_type": l.op_type, "in_bits": l.in_bits, "out_bits": l.out_bits,
                    "fifo_depth": l.fifo_depth, "module": l.module,
                    "params": {k: v for k, v in l.params.items() if not isinstance(v, tuple)}, **l.info}
                   for l in layers],
        "axil_mux": {"N": len(axi), "SB": sb},
        "sources": [str(p) for p in sources(rtl, layers)],
    }
    (out / "address_map.json").write_text(json.dumps(amap, indent=2) + "\n")
    return amap


def generate(build_dir: Path) -> dict[str, Any]:
    """Write BUILD_DIR/rtl/ (top, copied wrappers and init files, address_map.json); returns the map.

    Generated aside first; rtl/ is left alone when it already holds exactly that (a read-only
    build with a current rtl/ still simulates), else replaced as a whole by a renamed stage,
    so an interrupted run leaves the previous rtl/ or the new one, never a mix.
    """
    import tempfile

    build_dir = Path(build_dir).resolve()
    rtl = build_dir / "rtl"
    remove_stale_stages(rtl)  # what a killed run left beside rtl/, even when rtl/ needs no change
    with tempfile.TemporaryDirectory(prefix="metabnn-rtl-") as tmp:
        amap = _write(build_dir, rtl, Path(tmp))
        if _same_tree(Path(tmp), rtl):
            return amap
        old = rtl.parent / f".rtl.{os.getpid()}-previous.tmp"  # a stage's name: removed if a kill leaves it
        try:
            with StagedDir(rtl, "simulation RTL") as stage:
                for f in Path(tmp).iterdir():
                    shutil.copyfile(f, stage / f.name)
                if rtl.exists() or rtl.is_symlink():
                    os.rename(rtl, old)
        except BaseException:
            if (old.exists() or old.is_symlink()) and not (rtl.exists() or rtl.is_symlink()):
                os.rename(old, rtl)  # the new rtl/ did not arrive: the previous one stays
            raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists() or old.is_symlink():
        old.unlink()
    return amap
