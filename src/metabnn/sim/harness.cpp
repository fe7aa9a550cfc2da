// Cycle-accurate C++ harness around a Verilated design with FINN-style ports:
// ap_clk/ap_rst_n, in0_V (AXI-Stream in), out0_V (AXI-Stream out), s_axilite_*.
// With -DNO_AXIL=1 the design has no AXI-lite port (write/read commands are refused).
// With NDBG > 0 the design also has dbg_starve/dbg_block [NDBG-1:0] (per layer: wants
// input but none comes / has output nobody takes), counted per cycle.
//
// Usage: harness COMMANDS RESULTS. COMMANDS is a text file, one command per line:
//   reset CYCLES                     hold ap_rst_n low
//   stalls SEED P_IN P_OUT           random stalls: input valid / output ready dropped with
//                                    these probabilities (AXI rules kept: valid stays up once raised)
//   write ADDR DATA                  AXI-lite write (hex), waits for the response
//   read ADDR                        AXI-lite read (hex); "read ADDR DATA RESP" goes to RESULTS
//   stream IN N_IN OUT N_OUT CYC     send N_IN words from binary file IN (IN_BYTES each, little
//                                    endian), collect N_OUT words into OUT and the cycle of each
//                                    output handshake (uint64) into CYC
//   idle CYCLES
// RESULTS gets one line per read/stream and "cycles N" at the end.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "Vdut.h"
#include "verilated.h"

#ifdef __linux__
#include <csignal>
#include <sys/prctl.h>
#include <unistd.h>
#endif

#ifndef NDBG
#define NDBG 0
#endif
#ifndef NO_AXIL
#define NO_AXIL 0
#endif

static Vdut* top;
static uint64_t cycle = 0;
static uint64_t rng = 88172645463325252ull;
static double p_in = 0.0, p_out = 0.0;
static uint64_t starve[NDBG > 0 ? NDBG : 1], block[NDBG > 0 ? NDBG : 1];

static inline double urand() {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (rng >> 11) * (1.0 / 9007199254740992.0);
}

template <typename T>
static void set_bits(T& sig, const uint8_t* src, int nbytes) {
    if constexpr (std::is_integral_v<T>) {
        uint64_t v = 0;
        std::memcpy(&v, src, nbytes);
        sig = static_cast<T>(v);
    } else {
        const int words = sizeof(sig) / 4;
        for (int i = 0; i < words; i++) {
            uint32_t w = 0;
            int n = nbytes - 4 * i;
            if (n > 0) std::memcpy(&w, src + 4 * i, n < 4 ? n : 4);
            sig[i] = w;
        }
    }
}

template <typename T>
static void get_bits(const T& sig, uint8_t* dst, int nbytes) {
    if constexpr (std::is_integral_v<T>) {
        uint64_t v = sig;
        std::memcpy(dst, &v, nbytes);
    } else {
        for (int i = 0; 4 * i < nbytes; i++) {
            uint32_t w = sig[i];
            int n = nbytes - 4 * i;
            std::memcpy(dst + 4 * i, &w, n < 4 ? n : 4);
        }
    }
}

static void count_dbg() {
#if NDBG > 0
    for (int i = 0; i < NDBG; i++) {
        starve[i] += (top->dbg_starve >> i) & 1;
        block[i] += (top->dbg_block >> i) & 1;
    }
#endif
}

// One rising edge. Callers set the inputs and eval() (settling the falling edge and the
// combinational paths together, one eval per half cycle saved) and sample before calling.
static inline void tick() {
    top->ap_clk = 1;
    top->eval();
    cycle++;
    top->ap_clk = 0;
}

static void idle_inputs() {
    top->in0_V_TVALID = 0;
    top->out0_V_TREADY = 0;
#if !NO_AXIL
    top->s_axilite_AWVALID = 0;
    top->s_axilite_WVALID = 0;
    top->s_axilite_BREADY = 0;
    top->s_axilite_ARVALID = 0;
    top->s_axilite_RREADY = 0;
#endif
}

static void fail(const char* msg) {
    std::fprintf(stderr, "harness: %s (cycle %llu)\n", msg, (unsigned long long)cycle);
    std::exit(3);
}

static const uint64_t AXI_TIMEOUT = 10000;
#if NO_AXIL
static void axi_write(uint64_t, uint32_t) { fail("this design has no AXI-lite port"); }
static void axi_read(uint64_t, uint32_t*, int*) { fail("this design has no AXI-lite port"); }
#else

static void axi_write(uint64_t addr, uint32_t data) {
    top->s_axilite_AWADDR = addr;
    top->s_axilite_WDATA = data;
    top->s_axilite_WSTRB = 0xf;
    bool aw = false, w = false;
    uint64_t t0 = cycle;
    while (!(aw && w)) {
        top->s_axilite_AWVALID = !aw;
        top->s_axilite_WVALID = !w;
        top->eval();
        bool aw_hs = !aw && top->s_axilite_AWREADY, w_hs = !w && top->s_axilite_WREADY;
        count_dbg();
        tick();
        aw |= aw_hs;
        w |= w_hs;
        if (cycle - t0 > AXI_TIMEOUT) fail("AXI-lite write address/data never accepted");
    }
    top->s_axilite_AWVALID = 0;
    top->s_axilite_WVALID = 0;
    top->s_axilite_BREADY = 1;
    for (;;) {
        top->eval();
        bool b = top->s_axilite_BVALID;
        count_dbg();
        tick();
        if (b) break;
        if (cycle - t0 > AXI_TIMEOUT) fail("AXI-lite write response never came");
    }
    top->s_axilite_BREADY = 0;
}

static void axi_read(uint64_t addr, uint32_t* data, int* resp) {
    top->s_axilite_ARADDR = addr;
    uint64_t t0 = cycle;
    for (;;) {
        top->s_axilite_ARVALID = 1;
        top->eval();
        bool hs = top->s_axilite_ARREADY;
        count_dbg();
        tick();
        if (hs) break;
        if (cycle - t0 > AXI_TIMEOUT) fail("AXI-lite read address never accepted");
    }
    top->s_axilite_ARVALID = 0;
    top->s_axilite_RREADY = 1;
    for (;;) {
        top->eval();
        bool v = top->s_axilite_RVALID;
        *data = top->s_axilite_RDATA;
        *resp = top->s_axilite_RRESP;
        count_dbg();
        tick();
        if (v) break;
        if (cycle - t0 > AXI_TIMEOUT) fail("AXI-lite read data never came");
    }
    top->s_axilite_RREADY = 0;
}
#endif

static std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail(("cannot read " + path).c_str());
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

static void stream(const std::string& in_path, uint64_t n_in, const std::string& out_path, uint64_t n_out,
                   const std::string& cyc_path, FILE* res) {
    std::vector<uint8_t> in = read_file(in_path);
    if (in.size() < n_in * IN_BYTES) fail("input file shorter than N_IN words");
    std::vector<uint8_t> out(n_out * OUT_BYTES);
    std::vector<uint64_t> cyc(n_out);
    for (int i = 0; i < NDBG; i++) starve[i] = block[i] = 0;
    uint64_t sent = 0, got = 0, t0 = cycle, first_in = 0, last_progress = cycle;
    bool valid = false;
    while (got < n_out) {
        if (!valid && sent < n_in && !(p_in > 0 && urand() < p_in)) {
            valid = true;
            set_bits(top->in0_V_TDATA, &in[sent * IN_BYTES], IN_BYTES);
        }
        top->in0_V_TVALID = valid;
        bool ready = !(p_out > 0 && urand() < p_out);
        top->out0_V_TREADY = ready;
        top->eval();
        bool in_hs = valid && top->in0_V_TREADY;
        if (ready && top->out0_V_TVALID) {
            get_bits(top->out0_V_TDATA, &out[got * OUT_BYTES], OUT_BYTES);
            cyc[got++] = cycle;
            last_progress = cycle;
        }
        count_dbg();
        tick();
        if (in_hs) {
            if (sent == 0) first_in = cycle - 1;
            sent++;
            valid = false;
            last_progress = cycle;
        }
        if (cycle - last_progress > 1000000) fail("no stream progress for 1,000,000 cycles (deadlock?)");
    }
    top->in0_V_TVALID = 0;
    top->out0_V_TREADY = 0;
    top->eval();
    if (sent != n_in) fail("outputs complete before all inputs were taken");
    FILE* f = std::fopen(out_path.c_str(), "wb");
    if (!f || std::fwrite(out.data(), 1, out.size(), f) != out.size()) fail("cannot write outputs");
    std::fclose(f);
    f = std::fopen(cyc_path.c_str(), "wb");
    if (!f || std::fwrite(cyc.data(), 8, cyc.size(), f) != cyc.size()) fail("cannot write cycles");
    std::fclose(f);
    std::fprintf(res, "stream start %llu first_in %llu end %llu", (unsigned long long)t0,
                 (unsigned long long)first_in, (unsigned long long)cycle);
    for (int i = 0; i < NDBG; i++)
        std::fprintf(res, " dbg%d %llu %llu", i, (unsigned long long)starve[i], (unsigned long long)block[i]);
    std::fprintf(res, "\n");
}

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s COMMANDS RESULTS\n", argv[0]);
        return 2;
    }
#ifdef __linux__
    // metabnn killed outright (SIGKILL) cannot kill its children: stop with it, not simulate on orphaned
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) return 3;
#endif
    Verilated::commandArgs(1, argv);
    top = new Vdut;
    idle_inputs();
    top->ap_clk = 0;
    top->ap_rst_n = 1;
    top->eval();
    std::ifstream cmds(argv[1]);
    if (!cmds) fail("cannot read the command file");
    FILE* res = std::fopen(argv[2], "w");
    if (!res) fail("cannot write the results file");
    std::string line;
    while (std::getline(cmds, line)) {
        std::istringstream ss(line);
        std::string op;
        if (!(ss >> op)) continue;
        if (op == "reset") {
            uint64_t n;
            ss >> n;
            idle_inputs();
            top->ap_rst_n = 0;
            for (uint64_t i = 0; i < n; i++) { top->eval(); tick(); }
            top->ap_rst_n = 1;
            top->eval();
        } else if (op == "stalls") {
            ss >> rng >> p_in >> p_out;
            if (rng == 0) rng = 1;
        } else if (op == "write") {
            uint64_t a, d;
            ss >> std::hex >> a >> d;
            axi_write(a, (uint32_t)d);
        } else if (op == "read") {
            uint64_t a;
            uint32_t d;
            int r;
            ss >> std::hex >> a;
            axi_read(a, &d, &r);
            std::fprintf(res, "read %llx %x %d\n", (unsigned long long)a, d, r);
        } else if (op == "stream") {
            std::string in, out, cyc;
            uint64_t n_in, n_out;
            ss >> in >> n_in >> out >> n_out >> cyc;
            stream(in, n_in, out, n_out, cyc, res);
        } else if (op == "idle") {
            uint64_t n;
            ss >> n;
            for (uint64_t i = 0; i < n; i++) { top->eval(); count_dbg(); tick(); }
        } else {
            fail(("unknown command: " + op).c_str());
        }
    }
    std::fprintf(res, "cycles %llu\n", (unsigned long long)cycle);
    std::fclose(res);
    top->final();
    delete top;
    return 0;
}
