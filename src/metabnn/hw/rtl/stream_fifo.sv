// AXI-Stream FIFO, first-word fall-through, full throughput (one word in and out per cycle).
// (finn-rtllib's fifo.sv does not elaborate in Verilator 5.4x: a constant function of a
// struct type.) Memory read is asynchronous: LUTRAM/SRL for the shallow depths used here.
module stream_fifo #(
	int unsigned  DEPTH = 2,
	int unsigned  WIDTH = 8
)(
	input	logic  clk,
	input	logic  rst,
	input	logic [WIDTH-1:0]  idat,
	input	logic  ivld,
	output	logic  irdy,
	output	logic [WIDTH-1:0]  odat,
	output	logic  ovld,
	input	logic  ordy
);
	localparam int unsigned  AB = DEPTH > 1 ? $clog2(DEPTH) : 1;
	(* ram_style = "distributed" *)
	logic [WIDTH-1:0]  Mem[DEPTH];
	logic [AB-1:0]  WPtr = 0, RPtr = 0;
	logic [AB:0]  Count = 0;

	uwire  push = ivld && irdy;
	uwire  pop = ovld && ordy;
	assign irdy = Count != (AB+1)'(DEPTH);
	assign ovld = Count != 0;
	assign odat = Mem[RPtr];

	always_ff @(posedge clk) begin
		if (rst) begin
			WPtr <= 0;  RPtr <= 0;  Count <= 0;
		end
		else begin
			if (push) begin
				Mem[WPtr] <= idat;
				WPtr <= WPtr == AB'(DEPTH-1) ? 0 : WPtr + 1;
			end
			if (pop)  RPtr <= RPtr == AB'(DEPTH-1) ? 0 : RPtr + 1;
			Count <= Count + (AB+1)'(push) - (AB+1)'(pop);
		end
	end
endmodule : stream_fifo
