// Binary matrix-vector-activation unit (MVAU) for metabnn: FINN's folding and stream
// packing, II = 1, runtime-writeable weights and thresholds over AXI-lite.
//
// Computes, per input vector x[MW], acc[n] = sum_i x[i] * w[n][i] for n < MH and outputs
// either acc (N_THRES = 0) or the number of thresholds t with acc >= thr[n][t].
//   XNOR = 1: x and w are bits (0 stands for -1): acc = popcount(xnor(x, w)) (FINN binaryXnorMode)
//   XNOR = 0: x is an IN_W-bit integer (IN_SIGNED), w a bipolar bit (1: +1, 0: -1)
//
// Folding as FINN's MVAU: SF = MW/SIMD input words per vector, NF = MH/PE output words;
// fold (nf, sf) runs in cycle nf*SF + sf; PE p computes neuron nf*PE + p and SIMD lane s
// takes input sf*SIMD + s. Stream element k of a word sits at bits [k*W +: W] (lane 0 at
// the LSB); words are zero-padded to whole bytes (AXI-Stream).
//
// AXI-lite map (byte addresses), FINN's memstream convention:
//   weights: line l = nf*SF + sf holds PE*SIMD bits, bit p*SIMD + s = weight (p, s) (the
//     line layout of FINN's weight .dat files); a line is split into 2**clog2(ceil(bits/32))
//     32-bit words, word j at address 4*(l*WPL + j), word 0 the least significant; a line is
//     written when its last used word is written (write its words in order, as FINN's
//     driver does with the runtime_weights .dat files); reading word 0 fetches the line.
//   thresholds (only with N_THRES > 0), at offset 2**(AXI_AW-1): line nf holds
//     PE*N_THRES*ACC_W bits, element (p, t) at bits [(p*N_THRES + t)*ACC_W +: ACC_W], same
//     word split. (FINN's MVAU_hls keeps its thresholds in constants, so there is no FINN
//     map to follow; this one is memstream's applied to the threshold lines.)
// Writes take effect for the next fold step that reads the line: write between images.
module mvau_bin #(
	int unsigned  MW = 16,
	int unsigned  MH = 8,
	int unsigned  PE = 2,
	int unsigned  SIMD = 4,
	bit  XNOR = 1,
	int unsigned  IN_W = 1,
	bit  IN_SIGNED = 0,
	int unsigned  ACC_W = 5,
	bit  ACC_SIGNED = 0,
	int unsigned  N_THRES = 0,
	int unsigned  OUT_W = 5,
	parameter  WEIGHT_INIT = "",
	parameter  THRES_INIT = "",
	parameter  RAM_STYLE = "auto",

	localparam int unsigned  SF = MW / SIMD,
	localparam int unsigned  NF = MH / PE,
	localparam int unsigned  WMEM = SF * NF,
	localparam int unsigned  WLINE = PE * SIMD,
	localparam int unsigned  TLINE = N_THRES > 0 ? PE * N_THRES * ACC_W : 1,
	localparam int unsigned  W_AW = $clog2(WMEM) + $clog2((WLINE + 31) / 32) + 2,
	localparam int unsigned  T_AW = $clog2(NF) + $clog2((TLINE + 31) / 32) + 2,
	localparam int unsigned  AXI_AW = N_THRES > 0 ? (W_AW > T_AW ? W_AW : T_AW) + 1 : W_AW,
	localparam int unsigned  IBITS = (SIMD * IN_W + 7) / 8 * 8,
	localparam int unsigned  OBITS = (PE * OUT_W + 7) / 8 * 8
)(
	input	logic  ap_clk,
	input	logic  ap_rst_n,

	input	logic  s_axilite_AWVALID,
	output	logic  s_axilite_AWREADY,
	input	logic [AXI_AW-1:0]  s_axilite_AWADDR,
	input	logic  s_axilite_WVALID,
	output	logic  s_axilite_WREADY,
	input	logic [31:0]  s_axilite_WDATA,
	input	logic [ 3:0]  s_axilite_WSTRB,
	output	logic  s_axilite_BVALID,
	input	logic  s_axilite_BREADY,
	output	logic [1:0]  s_axilite_BRESP,
	input	logic  s_axilite_ARVALID,
	output	logic  s_axilite_ARREADY,
	input	logic [AXI_AW-1:0]  s_axilite_ARADDR,
	output	logic  s_axilite_RVALID,
	input	logic  s_axilite_RREADY,
	output	logic [31:0]  s_axilite_RDATA,
	output	logic [ 1:0]  s_axilite_RRESP,

	input	logic [IBITS-1:0]  in0_V_TDATA,
	input	logic  in0_V_TVALID,
	output	logic  in0_V_TREADY,

	output	logic [OBITS-1:0]  out0_V_TDATA,
	output	logic  out0_V_TVALID,
	input	logic  out0_V_TREADY
);
	localparam int unsigned  SFB = SF > 1 ? $clog2(SF) : 1;
	localparam int unsigned  NFB = NF > 1 ? $clog2(NF) : 1;
	localparam int unsigned  WAB = WMEM > 1 ? $clog2(WMEM) : 1;
	localparam int unsigned  XBITS = SIMD * IN_W;

	initial begin
		if (MW % SIMD != 0 || MH % PE != 0) $error("%m: SIMD must divide MW and PE must divide MH");
		if (XNOR && IN_W != 1) $error("%m: XNOR mode takes 1-bit inputs");
		if (N_THRES == 0 && OUT_W < ACC_W) $error("%m: OUT_W must hold the accumulator");
	end

	uwire  rst = !ap_rst_n;

	//-----------------------------------------------------------------------
	// AXI-lite: one decoder bit above the two memories' spaces (when thresholds exist)
	uwire  w_awvalid, w_awready, w_wvalid, w_wready, w_bvalid, w_bready, w_arvalid, w_arready, w_rvalid, w_rready;
	uwire [31:0]  w_rdata;
	uwire [1:0]  w_bresp, w_rresp;
	uwire  t_awvalid, t_awready, t_wvalid, t_wready, t_bvalid, t_bready, t_arvalid, t_arready, t_rvalid, t_rready;
	uwire [31:0]  t_rdata;
	uwire [1:0]  t_bresp, t_rresp;
	uwire [AXI_AW-1:0]  awaddr_lo, araddr_lo;

	if (N_THRES > 0) begin : genTwoSpaces
		axil_mux #(.N(2), .SB(AXI_AW-1)) mux (
			.clk(ap_clk), .rst_n(ap_rst_n),
			.awvalid(s_axilite_AWVALID), .awready(s_axilite_AWREADY), .awaddr(s_axilite_AWADDR),
			.wvalid(s_axilite_WVALID), .wready(s_axilite_WREADY), .wdata(s_axilite_WDATA), .wstrb(s_axilite_WSTRB),
			.bvalid(s_axilite_BVALID), .bready(s_axilite_BREADY), .bresp(s_axilite_BRESP),
			.arvalid(s_axilite_ARVALID), .arready(s_axilite_ARREADY), .araddr(s_axilite_ARADDR),
			.rvalid(s_axilite_RVALID), .rready(s_axilite_RREADY), .rdata(s_axilite_RDATA), .rresp(s_axilite_RRESP),
			.s_awvalid({t_awvalid, w_awvalid}), .s_awready({t_awready, w_awready}), .s_awaddr(awaddr_lo[AXI_AW-2:0]),
			.s_wvalid({t_wvalid, w_wvalid}), .s_wready({t_wready, w_wready}), .s_wdata(), .s_wstrb(),
			.s_bvalid({t_bvalid, w_bvalid}), .s_bready({t_bready, w_bready}), .s_bresp({t_bresp, w_bresp}),
			.s_arvalid({t_arvalid, w_arvalid}), .s_arready({t_arready, w_arready}), .s_araddr(araddr_lo[AXI_AW-2:0]),
			.s_rvalid({t_rvalid, w_rvalid}), .s_rready({t_rready, w_rready}), .s_rdata({t_rdata, w_rdata}),
			.s_rresp({t_rresp, w_rresp})
		);
		assign awaddr_lo[AXI_AW-1] = 1'b0;
		assign araddr_lo[AXI_AW-1] = 1'b0;
	end : genTwoSpaces
	else begin : genOneSpace
		assign w_awvalid = s_axilite_AWVALID;  assign s_axilite_AWREADY = w_awready;
		assign w_wvalid = s_axilite_WVALID;  assign s_axilite_WREADY = w_wready;
		assign s_axilite_BVALID = w_bvalid;  assign w_bready = s_axilite_BREADY;  assign s_axilite_BRESP = w_bresp;
		assign w_arvalid = s_axilite_ARVALID;  assign s_axilite_ARREADY = w_arready;
		assign s_axilite_RVALID = w_rvalid;  assign w_rready = s_axilite_RREADY;
		assign s_axilite_RDATA = w_rdata;  assign s_axilite_RRESP = w_rresp;
		assign awaddr_lo = s_axilite_AWADDR;
		assign araddr_lo = s_axilite_ARADDR;
		assign t_awvalid = 0;  assign t_wvalid = 0;  assign t_bready = 0;  assign t_arvalid = 0;  assign t_rready = 0;
	end : genOneSpace

	//-----------------------------------------------------------------------
	// Weight memory: port A for AXI-lite, port B read by the datapath
	(* ram_style = RAM_STYLE *)
	logic [WLINE-1:0]  WMem[WMEM];
	initial if (WEIGHT_INIT != "") $readmemh(WEIGHT_INIT, WMem);

	uwire  wc_en, wc_wen;
	uwire [WAB-1:0]  wc_addr;
	uwire [WLINE-1:0]  wc_wdata;
	logic  WcRack = 0;
	logic [WLINE-1:0]  WcRdata = 'x;
	axilite #(.ADDR_WIDTH(W_AW), .DATA_WIDTH(32), .IP_DATA_WIDTH(WLINE)) wcfg (
		.aclk(ap_clk), .aresetn(ap_rst_n),
		.awready(w_awready), .awvalid(w_awvalid), .awaddr(awaddr_lo[W_AW-1:0]), .awprot(3'b000),
		.wready(w_wready), .wvalid(w_wvalid), .wdata(s_axilite_WDATA), .wstrb(s_axilite_WSTRB),
		.bready(w_bready), .bvalid(w_bvalid), .bresp(w_bresp),
		.arready(w_arready), .arvalid(w_arvalid), .araddr(araddr_lo[W_AW-1:0]), .arprot(3'b000),
		.rready(w_rready), .rvalid(w_rvalid), .rresp(w_rresp), .rdata(w_rdata),
		.ip_en(wc_en), .ip_wen(wc_wen), .ip_addr(wc_addr), .ip_wdata(wc_wdata),
		.ip_rack(WcRack), .ip_rdata(WcRdata)
	);
	always_ff @(posedge ap_clk) begin
		WcRack <= wc_en && !wc_wen;
		if (wc_en) begin
			// addresses past the last line (WMEM not a power of 2) write nothing, read back 0
			if (wc_wen && wc_addr < WMEM)  WMem[wc_addr] <= wc_wdata;
			WcRdata <= wc_addr < WMEM ? WMem[wc_addr] : '0;
		end
	end

	//-----------------------------------------------------------------------
	// Fold sequencer: one (nf, sf) step per enabled cycle; input consumed in fold nf = 0
	// and kept in IBuf for the other NF-1 neuron folds.
	uwire  en;  // the whole pipeline advances together; only the output can hold it back
	logic [SFB-1:0]  Sf = 0;
	logic [NFB-1:0]  Nf = 0;
	logic [WAB-1:0]  WAddr = 0;
	uwire  first_nf = Nf == 0;
	uwire  step = en && (!first_nf || in0_V_TVALID);
	assign in0_V_TREADY = en && first_nf;

	always_ff @(posedge ap_clk) begin
		if (rst) begin
			Sf <= 0;  Nf <= 0;  WAddr <= 0;
		end
		else if (step) begin
			Sf <= Sf == SFB'(SF-1) ? 0 : Sf + 1;
			if (Sf == SFB'(SF-1))  Nf <= Nf == NFB'(NF-1) ? 0 : Nf + 1;
			WAddr <= WAddr == WAB'(WMEM-1) ? 0 : WAddr + 1;
		end
	end

	logic [XBITS-1:0]  IBuf[SF];
	always_ff @(posedge ap_clk) begin
		if (step && first_nf)  IBuf[Sf] <= in0_V_TDATA[XBITS-1:0];
	end

	// Stage 1: weights and inputs of this step
	logic  V1 = 0, First1 = 'x, Last1 = 'x;
	logic [NFB-1:0]  Nf1 = 'x;
	logic [XBITS-1:0]  X1 = 'x;
	logic [WLINE-1:0]  W1 = 'x;
	always_ff @(posedge ap_clk) begin
		if (rst)  V1 <= 0;
		else if (en) begin
			V1 <= !first_nf || in0_V_TVALID;
			First1 <= Sf == 0;
			Last1 <= Sf == SFB'(SF-1);
			Nf1 <= Nf;
			X1 <= first_nf ? in0_V_TDATA[XBITS-1:0] : IBuf[Sf];
			W1 <= WMem[WAddr];
		end
	end

	// Stage 2: per-PE partial dot product of the SIMD lanes, as balanced adder trees (see
	// mvau_bin_add_tree: a chain of adders or one big sum costs about twice the LUTs)
	typedef logic signed [ACC_W:0]  part_t;  // one spare bit: the sum of signed terms
	part_t  part[PE];
	if (XNOR) begin : genXnor
		// popcount of the agreements: 6-bit groups (3 LUT6 each) into a tree of 3-bit counts
		localparam int unsigned  G = (SIMD + 5) / 6;
		localparam int unsigned  CW = 3 + $clog2(G);
		for (genvar p = 0; p < PE; p++) begin : genPe
			uwire [SIMD-1:0]  agree_lanes = ~(X1 ^ W1[p*SIMD +: SIMD]);
			uwire [6*G-1:0]  agree = (6*G)'(agree_lanes);  // zero-padded
			uwire [3*G-1:0]  cnt;
			for (genvar g = 0; g < G; g++)  assign cnt[3*g +: 3] = 3'($countones(agree[6*g +: 6]));
			uwire [CW-1:0]  sum;
			mvau_bin_add_tree #(.N(G), .W(3), .SIGNED(0)) tree (.in(cnt), .sum(sum));
			assign part[p] = part_t'(sum);
		end : genPe
	end : genXnor
	else begin : genInt
		// sum_s (w_s ? x_s : -x_s) = 2*sum_{w_s=1} x_s - sum_s x_s. The sum of all x is shared
		// by the PEs; so are, per lane pair, x_a + x_b: a PE's share of a pair is one of
		// {0, x_a, x_b, x_a + x_b}, a 4:1 select (one LUT6 per bit) by its two weights.
		localparam int unsigned  NP = (SIMD + 1) / 2;   // pairs; an odd last lane pairs with 0
		localparam int unsigned  PW = IN_W + 1;         // a pair's sum
		localparam int unsigned  SW = PW + $clog2(NP);  // a PE's selected sum
		localparam int unsigned  XW = IN_W + $clog2(SIMD);
		uwire [2*NP*IN_W-1:0]  x = (2*NP*IN_W)'(X1);  // zero lane past SIMD: adds nothing
		uwire [PW-1:0]  xa[NP], xb[NP], xab[NP];
		for (genvar q = 0; q < NP; q++) begin : genPair
			uwire [IN_W-1:0]  a = x[2*q*IN_W +: IN_W];
			uwire [IN_W-1:0]  b = x[(2*q+1)*IN_W +: IN_W];
			assign xa[q] = IN_SIGNED ? PW'($signed(a)) : PW'(a);
			assign xb[q] = IN_SIGNED ? PW'($signed(b)) : PW'(b);
			assign xab[q] = xa[q] + xb[q];
		end : genPair
		uwire [XW-1:0]  sum_x;
		mvau_bin_add_tree #(.N(SIMD), .W(IN_W), .SIGNED(IN_SIGNED)) tree_x (.in(X1), .sum(sum_x));
		part_t  all_x;
		assign all_x = IN_SIGNED ? part_t'($signed(sum_x)) : part_t'(sum_x);
		for (genvar p = 0; p < PE; p++) begin : genPe
			uwire [2*NP-1:0]  w = (2*NP)'(W1[p*SIMD +: SIMD]);
			// continuous selects: an always_comb case per slice simulated 3.5x slower in Verilator
			uwire [NP*PW-1:0]  sel;
			for (genvar q = 0; q < NP; q++) begin : genSel
				assign sel[q*PW +: PW] = w[2*q+1] ? (w[2*q] ? xab[q] : xb[q]) : (w[2*q] ? xa[q] : PW'(0));
			end : genSel
			uwire [SW-1:0]  sum_w;
			mvau_bin_add_tree #(.N(NP), .W(PW), .SIGNED(IN_SIGNED)) tree (.in(sel), .sum(sum_w));
			part_t  on;
			assign on = IN_SIGNED ? part_t'($signed(sum_w)) : part_t'(sum_w);
			assign part[p] = 2*on - all_x;
		end : genPe
	end : genInt

	logic  V2 = 0, First2 = 'x, Last2 = 'x;
	logic [NFB-1:0]  Nf2 = 'x;
	part_t  P2[PE];
	always_ff @(posedge ap_clk) begin
		if (rst)  V2 <= 0;
		else if (en) begin
			V2 <= V1;  First2 <= First1;  Last2 <= Last1;  Nf2 <= Nf1;
			P2 <= part;
		end
	end

	// Stage 3: accumulate over the SF steps of a neuron fold; fetch its thresholds
	logic  V3 = 0;
	logic [ACC_W-1:0]  Acc[PE];
	always_ff @(posedge ap_clk) begin
		if (rst)  V3 <= 0;
		else if (en) begin
			V3 <= V2 && Last2;
			if (V2)  foreach (Acc[p])  Acc[p] <= (First2 ? ACC_W'(0) : Acc[p]) + ACC_W'(P2[p]);
		end
	end

	// Stage 4: threshold (or pass the accumulator) into the output register
	logic  OVld = 0;
	logic [PE*OUT_W-1:0]  OData = 'x;
	assign en = !OVld || out0_V_TREADY;
	assign out0_V_TVALID = OVld;
	assign out0_V_TDATA = OBITS'(OData);

	if (N_THRES == 0) begin : genNoThres
		always_ff @(posedge ap_clk) begin
			if (rst)  OVld <= 0;
			else if (en) begin
				OVld <= V3;
				if (V3)  foreach (Acc[p])
					OData[p*OUT_W +: OUT_W] <= ACC_SIGNED ? OUT_W'($signed(Acc[p])) : OUT_W'(Acc[p]);
			end
		end
		assign t_awready = 0;  assign t_wready = 0;  assign t_bvalid = 0;  assign t_bresp = 0;
		assign t_arready = 0;  assign t_rvalid = 0;  assign t_rdata = 0;  assign t_rresp = 0;
	end : genNoThres
	else begin : genThres
		localparam int unsigned  TAB = NF > 1 ? $clog2(NF) : 1;
		(* ram_style = "distributed" *)
		logic [TLINE-1:0]  TMem[NF];
		initial if (THRES_INIT != "") $readmemh(THRES_INIT, TMem);

		uwire  tc_en, tc_wen;
		uwire [TAB-1:0]  tc_addr;
		uwire [TLINE-1:0]  tc_wdata;
		logic  TcRack = 0;
		logic [TLINE-1:0]  TcRdata = 'x;
		axilite #(.ADDR_WIDTH(T_AW), .DATA_WIDTH(32), .IP_DATA_WIDTH(TLINE)) tcfg (
			.aclk(ap_clk), .aresetn(ap_rst_n),
			.awready(t_awready), .awvalid(t_awvalid), .awaddr(awaddr_lo[T_AW-1:0]), .awprot(3'b000),
			.wready(t_wready), .wvalid(t_wvalid), .wdata(s_axilite_WDATA), .wstrb(s_axilite_WSTRB),
			.bready(t_bready), .bvalid(t_bvalid), .bresp(t_bresp),
			.arready(t_arready), .arvalid(t_arvalid), .araddr(araddr_lo[T_AW-1:0]), .arprot(3'b000),
			.rready(t_rready), .rvalid(t_rvalid), .rresp(t_rresp), .rdata(t_rdata),
			.ip_en(tc_en), .ip_wen(tc_wen), .ip_addr(tc_addr), .ip_wdata(tc_wdata),
			.ip_rack(TcRack), .ip_rdata(TcRdata)
		);
		always_ff @(posedge ap_clk) begin
			TcRack <= tc_en && !tc_wen;
			if (tc_en) begin
				if (tc_wen && tc_addr < NF)  TMem[tc_addr] <= tc_wdata;
				TcRdata <= tc_addr < NF ? TMem[tc_addr] : '0;
			end
		end

		// fetched in stage 3 beside the final accumulation, used in stage 4
		logic [TLINE-1:0]  T3 = 'x;
		always_ff @(posedge ap_clk) begin
			if (en && V2 && Last2)  T3 <= TMem[TAB'(Nf2)];
		end

		always_ff @(posedge ap_clk) begin
			if (rst)  OVld <= 0;
			else if (en) begin
				OVld <= V3;
				if (V3)  for (int p = 0; p < PE; p++) begin
					automatic logic [OUT_W-1:0]  cnt = 0;
					for (int t = 0; t < N_THRES; t++) begin
						automatic logic [ACC_W-1:0]  thr = T3[(p*N_THRES + t)*ACC_W +: ACC_W];
						if (ACC_SIGNED ? $signed(Acc[p]) >= $signed(thr) : Acc[p] >= thr)  cnt += 1;
					end
					OData[p*OUT_W +: OUT_W] <= cnt;
				end
			end
		end
	end : genThres

endmodule : mvau_bin


// Balanced adder tree: sum of N W-bit elements (element k at in[k*W +: W]), W + clog2(N) bits.
// The keep on the subtotals stops yosys from merging the tree into one $macc, which it maps
// as full adders in LUTs at about twice the cost of one carry-chain adder per node. (This
// packed, recursive form also simulates fastest in Verilator: a level-by-level tree over
// unpacked arrays made the pmnist-cpu accelerator's simulation twice as slow.)
module mvau_bin_add_tree #(
	int unsigned  N = 2,
	int unsigned  W = 1,
	bit  SIGNED = 0,
	localparam int unsigned  OW = W + $clog2(N)
)(
	input	logic [N*W-1:0]  in,
	output	logic [OW-1:0]  sum
);
	if (N == 1) begin : genLeaf
		assign sum = in;
	end : genLeaf
	else begin : genNode
		localparam int unsigned  NL = N / 2;
		localparam int unsigned  NR = N - NL;
		(* keep *) logic [W+$clog2(NL)-1:0]  l;
		(* keep *) logic [W+$clog2(NR)-1:0]  r;
		mvau_bin_add_tree #(.N(NL), .W(W), .SIGNED(SIGNED)) lo (.in(in[NL*W-1:0]), .sum(l));
		mvau_bin_add_tree #(.N(NR), .W(W), .SIGNED(SIGNED)) hi (.in(in[N*W-1:NL*W]), .sum(r));
		if (SIGNED)  assign sum = $signed(l) + $signed(r);
		else         assign sum = OW'(l) + OW'(r);
	end : genNode
endmodule : mvau_bin_add_tree
