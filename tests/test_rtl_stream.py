"""stream_dwc.sv and stream_fifo.sv under Verilator: element order, stalls, full throughput."""

from __future__ import annotations

import numpy as np
import pytest

TB = """module tb #(parameter int unsigned IBITS = 1, parameter int unsigned OBITS = 1, parameter int unsigned DEPTH = 2)(
	input logic ap_clk, input logic ap_rst_n,
	input logic [(IBITS+7)/8*8-1:0] in0_V_TDATA, input logic in0_V_TVALID, output logic in0_V_TREADY,
	output logic [(OBITS+7)/8*8-1:0] out0_V_TDATA, output logic out0_V_TVALID, input logic out0_V_TREADY);
	logic [(IBITS+7)/8*8-1:0] d; logic v, r;
	stream_fifo #(.DEPTH(DEPTH), .WIDTH((IBITS+7)/8*8)) fifo (.clk(ap_clk), .rst(!ap_rst_n),
		.idat(in0_V_TDATA), .ivld(in0_V_TVALID), .irdy(in0_V_TREADY), .odat(d), .ovld(v), .ordy(r));
	stream_dwc #(.IBITS(IBITS), .OBITS(OBITS)) dwc (.ap_clk, .ap_rst_n, .s_axis_tready(r), .s_axis_tvalid(v),
		.s_axis_tdata(d), .m_axis_tready(out0_V_TREADY), .m_axis_tvalid(out0_V_TVALID), .m_axis_tdata(out0_V_TDATA));
endmodule
"""


@pytest.mark.slow
@pytest.mark.parametrize("ibits,obits,depth", [(1, 1024, 2), (38, 19, 5), (19, 19, 3), (4, 12, 64), (128, 1, 2)])
def test_dwc_and_fifo_keep_every_element_in_order(ibits, obits, depth, tmp_path):
    from metabnn.hw.rtl_model import pack_stream, unpack_stream
    from metabnn.sim.session import Session
    from metabnn.sim.verilator import RTL_DIR, build

    (tmp_path / "tb.sv").write_text(TB)
    ib, ob = -(-ibits // 8), -(-obits // 8)
    exe = build([RTL_DIR / "stream_fifo.sv", RTL_DIR / "stream_dwc.sv", tmp_path / "tb.sv"], "tb",
                {"IBITS": ibits, "OBITS": obits, "DEPTH": depth}, {"IN_BYTES": ib, "OUT_BYTES": ob, "NO_AXIL": 1})
    n = np.lcm(ibits, obits) * 6  # bits: whole words on both sides
    bits = np.random.default_rng(ibits * obits).integers(0, 2, n)
    sess = Session(exe, ib, ob)
    sess.reset()
    sess.stream(pack_stream(bits, 1, ibits), n // obits)
    sess.stalls(9, 0.4, 0.4)
    sess.stream(pack_stream(bits, 1, ibits), n // obits)
    res = sess.run(tmp_path)
    for s in res.streams:
        assert np.array_equal(unpack_stream(s.out, 1, obits), bits)
    # no stalls: the narrow side moves one word per cycle
    c = res.streams[0].cycles
    if obits <= ibits:
        assert set(np.diff(c).tolist()) == {1}
    else:
        assert set(np.diff(c).tolist()) == {obits // ibits}
