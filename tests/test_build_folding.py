"""The folding search on synthetic options: meets the cycle budget at least cost, fit and limits."""

from metabnn.hw import folding


def opt(pe, simd, cycles, lut, bram):
    return folding.Option((("PE", pe), ("SIMD", simd)), cycles,
                          (("LUT", lut), ("BRAM_18K", bram), ("DSP", 0.0), ("URAM", 0.0)))


def layers():
    a = folding.LayerOptions("A", "MVAU_hls", [opt(1, 1, 1000, 100, 1), opt(2, 2, 250, 400, 2), opt(4, 4, 63, 1600, 4)])
    b = folding.LayerOptions("B", "MVAU_hls", [opt(1, 1, 500, 50, 0), opt(1, 4, 125, 200, 0), opt(4, 4, 63, 800, 0)])
    return [a, b]


def test_choose_meets_target_at_least_cost():
    bud = {"LUT": 10000, "BRAM_18K": 10, "DSP": 10, "URAM": 0}
    chosen = folding.choose(layers(), 300, bud)
    assert [o.cycles for o in chosen] == [250, 125]
    assert folding.choose(layers(), 50, bud) is None  # A cannot go below 63 cycles


def test_best_fit_and_limiting_layer():
    bud = {"LUT": 1000, "BRAM_18K": 10, "DSP": 10, "URAM": 0}
    ls = layers()
    best = folding.best_fitting(ls, bud)
    assert max(o.cycles for o in best) == 250
    a = folding.analysis(ls, bud, 63, 100e6)
    assert a["best_fit_fps"] == 100e6 / 250
    assert a["next_faster"]["limiting_layer"] == "A" and a["next_faster"]["resource"] == "LUT"
    assert a["at_target"]["fits"] is False


def test_divisors():
    assert folding.divisors(12) == [1, 2, 3, 4, 6, 12]
