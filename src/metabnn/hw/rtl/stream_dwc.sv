// AXI-Stream width converter for widths that divide each other (FINN's element order:
// the first element sits at the LSB of the wider word), full throughput on the narrow side.
// The simulated top uses it where FINN inserted a StreamingDataWidthConverter_rtl, as the
// simulator (Verilator 5.4x) fails with an internal error on finn-rtllib's vpc.sv for some
// widths (e.g. 1 -> 1024).
module stream_dwc #(
	int unsigned  IBITS = 8,
	int unsigned  OBITS = 32,
	localparam int unsigned  AXI_IBITS = (IBITS + 7) / 8 * 8,
	localparam int unsigned  AXI_OBITS = (OBITS + 7) / 8 * 8
)(
	input	logic  ap_clk,
	input	logic  ap_rst_n,
	output	logic  s_axis_tready,
	input	logic  s_axis_tvalid,
	input	logic [AXI_IBITS-1:0]  s_axis_tdata,
	input	logic  m_axis_tready,
	output	logic  m_axis_tvalid,
	output	logic [AXI_OBITS-1:0]  m_axis_tdata
);
	initial begin
		if ((OBITS >= IBITS ? OBITS % IBITS : IBITS % OBITS) != 0)  $error("%m: widths must divide each other");
	end
	uwire  rst = !ap_rst_n;

	if (OBITS >= IBITS) begin : genUp
		localparam int unsigned  K = OBITS / IBITS;
		localparam int unsigned  CB = K > 1 ? $clog2(K) : 1;
		logic [OBITS-1:0]  Buf = 'x;  // elements gathered so far, the next one goes to slot Cnt
		logic [CB-1:0]  Cnt = 0;
		logic [OBITS-1:0]  Out = 'x;
		logic  OVld = 0;
		uwire  last = Cnt == CB'(K-1);
		uwire  take = s_axis_tvalid && s_axis_tready;
		// the last element of a word needs the output register free (or emptying now)
		assign s_axis_tready = !last || !OVld || m_axis_tready;
		always_ff @(posedge ap_clk) begin
			if (rst) begin
				Cnt <= 0;  OVld <= 0;
			end
			else begin
				if (m_axis_tready)  OVld <= 0;
				if (take) begin
					if (last) begin
						Out <= Buf;
						Out[(K-1)*IBITS +: IBITS] <= s_axis_tdata[IBITS-1:0];
						OVld <= 1;
						Cnt <= 0;
					end
					else begin
						Buf[Cnt*IBITS +: IBITS] <= s_axis_tdata[IBITS-1:0];
						Cnt <= Cnt + 1;
					end
				end
			end
		end
		assign m_axis_tvalid = OVld;
		assign m_axis_tdata = AXI_OBITS'(Out);
	end : genUp
	else begin : genDown
		localparam int unsigned  K = IBITS / OBITS;
		localparam int unsigned  CB = $clog2(K);
		logic [IBITS-1:0]  Buf = 'x;
		logic [CB-1:0]  Cnt = 0;  // the piece on the output
		logic  Vld = 0;
		uwire  give = Vld && m_axis_tready;
		uwire  last = Cnt == CB'(K-1);
		assign s_axis_tready = !Vld || (give && last);
		always_ff @(posedge ap_clk) begin
			if (rst) begin
				Cnt <= 0;  Vld <= 0;
			end
			else begin
				if (give)  Cnt <= last ? 0 : Cnt + 1;
				if (s_axis_tready) begin
					Vld <= s_axis_tvalid;
					if (s_axis_tvalid)  Buf <= s_axis_tdata[IBITS-1:0];
				end
			end
		end
		assign m_axis_tvalid = Vld;
		assign m_axis_tdata = AXI_OBITS'(Buf[Cnt*OBITS +: OBITS]);
	end : genDown
endmodule : stream_dwc
