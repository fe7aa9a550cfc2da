"""The RTL resource model (``metabnn.hw.rtl_resources``) against yosys, shape by shape.

    .venv/bin/python benchmarks/rtl_resources.py [--quick]

Synthesizes ``mvau_bin`` with yosys ``synth_xilinx -family xc7`` for the shapes the model
was fitted on (datapath: one line of weights, MW = SIMD, MH = PE), for weight memories in
both styles, and for the layers of the pmnist-cpu network at the foldings the Pynq-Z2 and
400,000 images/s builds choose; prints one JSON object with estimate, yosys count and error
per shape. Results are cached per shape (~/.cache/metabnn/yosys), so a rerun is quick.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

DATAPATH = [  # (xnor, PE, SIMD): MW = SIMD, MH = PE; the shapes XNOR_FIT and INT8_FIT come from
    (False, 1, 16), (False, 4, 16), (False, 16, 16), (False, 8, 32), (False, 4, 56), (False, 32, 16),
    (False, 256, 2), (False, 128, 7), (False, 64, 28), (False, 16, 98),
    (True, 1, 64), (True, 4, 64), (True, 16, 64), (True, 4, 256), (True, 1, 1024), (True, 32, 32),
    (True, 256, 8), (True, 1024, 2), (True, 64, 16), (True, 128, 64),
]
MEMORY = [  # (PE, SIMD, lines, ram_style), XNOR, MW = SIMD
    (1, 64, 64, "block"), (1, 64, 2048, "block"), (8, 64, 512, "block"),
    (1, 64, 64, "distributed"), (1, 64, 512, "distributed"), (8, 64, 256, "distributed"),
]
LAYERS = [  # (MW, MH, PE, SIMD, xnor, ram_style): pmnist-cpu layers at the foldings builds choose
    (784, 1024, 32, 16, False, "block"), (1024, 1024, 1, 1024, True, "block"),
    (784, 1024, 32, 49, False, "block"), (1024, 1024, 4, 512, True, "block"),
    (1024, 10, 1, 8, True, "distributed"),
]


def main() -> int:
    from metabnn.hw.rtl_model import MvauConfig
    from metabnn.hw.rtl_resources import mvau_lut, weight_bram18
    from metabnn.hw.synth import synth_module
    from metabnn.sim.verilator import mvau_sources

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the fitted shapes only (no full layers)")
    args = ap.parse_args()
    src = mvau_sources()
    shapes = [(simd, pe, pe, simd, x, "block", 11 if x else 19) for x, pe, simd in DATAPATH]
    shapes += [(simd, pe * lines, pe, simd, True, style, 11) for pe, simd, lines, style in MEMORY]
    if not args.quick:
        shapes += [(*l, None) for l in LAYERS]
    rows = []
    for mw, mh, pe, simd, xnor, style, acc_w in shapes:
        cfg = MvauConfig(mw, mh, pe, simd, xnor, in_w=1 if xnor else 8, acc_w=acc_w)
        params = {k: v for k, v in cfg.params().items() if k not in ("WEIGHT_INIT", "THRES_INIT")}
        params["RAM_STYLE"] = style
        t0 = time.perf_counter()
        got = synth_module(src, "mvau_bin", params)
        est_lut, est_bram = mvau_lut(cfg, style), weight_bram18(cfg, style)
        row = {"MW": mw, "MH": mh, "PE": pe, "SIMD": simd, "xnor": xnor, "ram_style": style,
               "lut_estimate": est_lut, "lut_yosys": got["LUT"],
               "lut_error_pct": round(100 * (est_lut - got["LUT"]) / got["LUT"], 1),
               "bram18_estimate": est_bram, "bram18_yosys": got["BRAM_18K"],
               "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    worst = max(abs(r["lut_error_pct"]) for r in rows)
    json.dump({"shapes": rows, "worst_lut_error_pct": worst,
               "bram_exact": sum(r["bram18_estimate"] == r["bram18_yosys"] for r in rows),
               "of": len(rows)}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
