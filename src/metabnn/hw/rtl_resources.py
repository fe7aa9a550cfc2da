"""Resource model of ``rtl/mvau_bin.sv`` for the folding search (LUT, BRAM18 on 7-series).

FINN's MVAU estimates describe its HLS datapath and a simple dual-port weight memory; they
overstate this RTL's LUTs two to four times and understate its BRAMs (the AXI-lite
read-back makes the weight memory true dual-port, 18 bits per BRAM18 port, where FINN
assumes 36-bit simple dual-port). The search needs the cost of the hardware it builds, so
this model counts what yosys ``synth_xilinx -family xc7`` makes of ``mvau_bin``:

* datapath and control (``XNOR_FIT``, ``INT8_FIT``: about 2.1 LUTs per XNOR lane, 10 per
  8-bit lane), fitted to yosys on shapes with one weight line; integer widths other than 8
  scale by (IN_W + 1) / 9, as the pair sums and adder trees are IN_W + 1 bits wide;
* one accumulator adder per PE when SF > 1;
* the input buffer that replays a vector for the NF - 1 later neuron folds;
* the weight memory: BRAM18 in the true-dual-port shape that needs fewest (yosys picks the
  same), or LUTRAM (two LUTs per 64 deep, dual-port) and its read multiplexers.

``benchmarks/rtl_resources.py`` reruns yosys on the fitted shapes and on whole pmnist-cpu
layers and prints the model's error on each.
"""

from __future__ import annotations

import math

from metabnn.hw.rtl_model import MvauConfig

# LUT = a*PE*SIMD + b*PE + c*SIMD + d with SF = NF = 1, least squares in relative error
# over yosys on 10 shapes per mode (PE 1..1024, SIMD 2..1024; worst 5.7% XNOR, 8.4% integer)
XNOR_FIT = (2.107, -1.041, -0.016, 32.7)
INT8_FIT = (10.164, -1.111, 10.51, -21.2)
# LUTs per input bit of the replay buffer (LUTRAM), its bypass multiplexer and addressing
# when SF > 1: yosys 1.6 to 2.1 on four layers, 8.4 on one (integer, SF = 49, SIMD 16); with
# SF = 1 the buffer is one register and the multiplexer
IBUF_PER_BIT = 2.0
# true-dual-port BRAM18 shapes (depth, width), UG473 Table 1-3
BRAM18_TDP_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18))


def weight_bram18(cfg: MvauConfig, ram_style: str) -> int:
    """BRAM18s of the weight memory (0 in LUTRAM)."""
    if ram_style == "distributed":
        return 0
    depth, width = cfg.sf * cfg.nf, cfg.pe * cfg.simd
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BRAM18_TDP_SHAPES)


def _datapath_lut(cfg: MvauConfig) -> float:
    lanes = cfg.pe * cfg.simd
    if cfg.xnor:
        return XNOR_FIT[0] * lanes + XNOR_FIT[1] * cfg.pe + XNOR_FIT[2] * cfg.simd + XNOR_FIT[3]
    scale = (cfg.in_w + 1) / 9
    return scale * (INT8_FIT[0] * lanes + INT8_FIT[2] * cfg.simd) + INT8_FIT[1] * cfg.pe + INT8_FIT[3]


def _accumulator_lut(cfg: MvauConfig) -> float:
    # one SF-step accumulator adder per PE; with SF = 1 the partial sum is the result
    return cfg.pe * cfg.acc_w if cfg.sf > 1 else 0.0


def _input_buffer_lut(cfg: MvauConfig) -> float:
    # the NF - 1 later neuron folds replay the input vector: buffer and bypass multiplexer
    if cfg.nf == 1:
        return 0.0
    bits = cfg.simd * cfg.in_w
    return bits * (IBUF_PER_BIT if cfg.sf > 1 else 1.0)


def _lutram_lut(cfg: MvauConfig) -> float:
    depth, width = cfg.sf * cfg.nf, cfg.pe * cfg.simd
    chunks = math.ceil(depth / 128)
    cells = 2 * width * math.ceil(depth / 64)  # RAM64X1D / RAM128X1D: both ports
    mux = 2 * width * math.ceil((chunks - 1) / 3)  # 4:1 per LUT6, per read port
    return cells + mux


def mvau_lut(cfg: MvauConfig, ram_style: str) -> int:
    """LUTs (LUTRAM included) of one ``mvau_bin`` with the weight memory in ``ram_style``."""
    lut = _datapath_lut(cfg) + _accumulator_lut(cfg) + _input_buffer_lut(cfg)
    if ram_style == "distributed":
        lut += _lutram_lut(cfg)
    return max(0, round(lut))
