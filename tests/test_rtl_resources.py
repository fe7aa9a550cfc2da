"""The resource model of mvau_bin: BRAM shapes, structure terms, and yosys agreement."""

from __future__ import annotations

import pytest

from metabnn.hw.rtl_model import MvauConfig
from metabnn.hw.rtl_resources import mvau_lut, weight_bram18


@pytest.mark.parametrize("mw,mh,pe,simd,want", [
    (64, 64, 1, 64, 4),          # 64 lines x 64 bits: four 1Kx18 halves of true dual port
    (784, 1024, 32, 16, 57),     # 1568 x 512: 2Kx9 shape, 57 columns (yosys: 57)
    (1024, 1024, 1, 1024, 57),   # 1024 x 1024: 1Kx18 (yosys: 57)
    (1024, 1024, 64, 128, 456),  # 128 x 8192: 18 bits per BRAM18 port (yosys: 456)
    (1024, 10, 1, 8, 1),         # 1280 x 8: one 2Kx9
])
def test_weight_bram18_takes_the_cheapest_true_dual_port_shape(mw, mh, pe, simd, want):
    assert weight_bram18(MvauConfig(mw, mh, pe, simd, True), "block") == want


def test_distributed_weights_take_no_bram_and_cost_luts():
    cfg = MvauConfig(1024, 10, 1, 8, True)
    assert weight_bram18(cfg, "distributed") == 0
    # 1280 x 8 bits in dual-port LUTRAM: 2 LUTs per 64 deep per bit, plus read multiplexers
    assert mvau_lut(cfg, "distributed") - mvau_lut(cfg, "block") >= 2 * 8 * 20


def test_structure_terms():
    one_step = MvauConfig(16, 32, 32, 16, False, in_w=8, acc_w=19)   # SF = NF = 1
    sf49 = MvauConfig(784, 32, 32, 16, False, in_w=8, acc_w=19)      # + accumulators
    nf32 = MvauConfig(16, 1024, 32, 16, False, in_w=8, acc_w=19)     # + input replay
    assert mvau_lut(sf49, "block") - mvau_lut(one_step, "block") == 32 * 19
    assert mvau_lut(nf32, "block") - mvau_lut(one_step, "block") == 16 * 8
    # the integer datapath costs several times the XNOR one per lane
    assert mvau_lut(one_step, "block") > 4 * mvau_lut(MvauConfig(16, 32, 32, 16, True), "block")


@pytest.mark.slow
@pytest.mark.parametrize("xnor,pe,simd,mw,mh", [(True, 4, 64, 128, 16), (False, 4, 16, 32, 8)])
def test_model_within_15_percent_of_yosys(xnor, pe, simd, mw, mh):
    from metabnn.hw.synth import synth_module
    from metabnn.sim.verilator import mvau_sources

    cfg = MvauConfig(mw, mh, pe, simd, xnor, in_w=1 if xnor else 8)
    params = {k: v for k, v in cfg.params().items() if k not in ("WEIGHT_INIT", "THRES_INIT")}
    params["RAM_STYLE"] = "block"
    got = synth_module(mvau_sources(), "mvau_bin", params)
    assert abs(mvau_lut(cfg, "block") - got["LUT"]) <= 0.15 * got["LUT"]
    assert weight_bram18(cfg, "block") == got["BRAM_18K"]
