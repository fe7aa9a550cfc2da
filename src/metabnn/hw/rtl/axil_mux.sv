// AXI-lite 1-to-N decoder: slave i owns byte addresses [i * 2**SB, (i+1) * 2**SB).
// One write and one read in flight at a time (the host writes word by word), so the
// target is latched at the address handshake and every channel of that transaction is
// routed to it. Addresses past the last slave get SLVERR (reads return 0).
module axil_mux #(
	int unsigned  N = 2,
	int unsigned  SB = 8,
	localparam int unsigned  NB = N > 1 ? $clog2(N) : 1,
	localparam int unsigned  AW = SB + NB
)(
	input	logic  clk,
	input	logic  rst_n,

	input	logic  awvalid,
	output	logic  awready,
	input	logic [AW-1:0]  awaddr,
	input	logic  wvalid,
	output	logic  wready,
	input	logic [31:0]  wdata,
	input	logic [ 3:0]  wstrb,
	output	logic  bvalid,
	input	logic  bready,
	output	logic [1:0]  bresp,
	input	logic  arvalid,
	output	logic  arready,
	input	logic [AW-1:0]  araddr,
	output	logic  rvalid,
	input	logic  rready,
	output	logic [31:0]  rdata,
	output	logic [1:0]  rresp,

	output	logic [N-1:0]  s_awvalid,
	input	logic [N-1:0]  s_awready,
	output	logic [SB-1:0]  s_awaddr,
	output	logic [N-1:0]  s_wvalid,
	input	logic [N-1:0]  s_wready,
	output	logic [31:0]  s_wdata,
	output	logic [ 3:0]  s_wstrb,
	input	logic [N-1:0]  s_bvalid,
	output	logic [N-1:0]  s_bready,
	input	logic [N-1:0][1:0]  s_bresp,
	output	logic [N-1:0]  s_arvalid,
	input	logic [N-1:0]  s_arready,
	output	logic [SB-1:0]  s_araddr,
	input	logic [N-1:0]  s_rvalid,
	output	logic [N-1:0]  s_rready,
	input	logic [N-1:0][31:0]  s_rdata,
	input	logic [N-1:0][1:0]  s_rresp
);
	localparam bit [1:0]  SLVERR = 2'b10;

	// Write: Idle -> Busy (target latched) -> back to Idle after the B handshake
	logic  WBusy = 0, WErr = 0, EAw = 0, EW = 0;
	logic [NB-1:0]  WSel = 0;
	uwire [NB-1:0]  aw_sel = N > 1 ? awaddr[AW-1 -: NB] : '0;
	always_ff @(posedge clk) begin
		if (!rst_n) begin
			WBusy <= 0;  WErr <= 0;  EAw <= 0;  EW <= 0;
		end
		else if (!WBusy) begin
			if (awvalid) begin
				WBusy <= 1;  WSel <= aw_sel;  WErr <= aw_sel >= N;  EAw <= 0;  EW <= 0;
			end
		end
		else if (WErr) begin  // swallow the transaction, answer SLVERR
			if (awvalid)  EAw <= 1;
			if (wvalid)  EW <= 1;
			if (EAw && EW && bready)  WBusy <= 0;
		end
		else if (s_bvalid[WSel] && bready)  WBusy <= 0;
	end
	always_comb begin
		s_awvalid = '0;  s_wvalid = '0;  s_bready = '0;
		awready = 0;  wready = 0;  bvalid = 0;  bresp = 2'b00;
		if (WBusy && WErr) begin
			awready = !EAw;  wready = !EW;  bvalid = EAw && EW;  bresp = SLVERR;
		end
		else if (WBusy) begin
			s_awvalid[WSel] = awvalid;  awready = s_awready[WSel];
			s_wvalid[WSel] = wvalid;  wready = s_wready[WSel];
			bvalid = s_bvalid[WSel];  s_bready[WSel] = bready;  bresp = s_bresp[WSel];
		end
	end
	assign s_awaddr = awaddr[SB-1:0];
	assign s_wdata = wdata;
	assign s_wstrb = wstrb;

	// Read: same scheme
	logic  RBusy = 0, RErr = 0, EAr = 0;
	logic [NB-1:0]  RSel = 0;
	uwire [NB-1:0]  ar_sel = N > 1 ? araddr[AW-1 -: NB] : '0;
	always_ff @(posedge clk) begin
		if (!rst_n) begin
			RBusy <= 0;  RErr <= 0;  EAr <= 0;
		end
		else if (!RBusy) begin
			if (arvalid) begin
				RBusy <= 1;  RSel <= ar_sel;  RErr <= ar_sel >= N;  EAr <= 0;
			end
		end
		else if (RErr) begin
			if (arvalid)  EAr <= 1;
			if (EAr && rready)  RBusy <= 0;
		end
		else if (s_rvalid[RSel] && rready)  RBusy <= 0;
	end
	always_comb begin
		s_arvalid = '0;  s_rready = '0;
		arready = 0;  rvalid = 0;  rdata = '0;  rresp = 2'b00;
		if (RBusy && RErr) begin
			arready = !EAr;  rvalid = EAr;  rresp = SLVERR;
		end
		else if (RBusy) begin
			s_arvalid[RSel] = arvalid;  arready = s_arready[RSel];
			rvalid = s_rvalid[RSel];  s_rready[RSel] = rready;  rdata = s_rdata[RSel];  rresp = s_rresp[RSel];
		end
	end
	assign s_araddr = araddr[SB-1:0];

endmodule : axil_mux
