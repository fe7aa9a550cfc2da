"""What needs Vivado, and the short path that runs it when ``XILINX_VIVADO`` is set.

Everything else (estimates, HLS/RTL code, driver settings, per-task weight files) is made
the same way with or without Vivado; this module only decides and runs the tail.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

from metabnn.hw.finn_env import vivado_available

# (output in BUILD_DIR/deploy, what makes it)
VIVADO_OUTPUTS = (
    ("deploy/bitfile/finn-accel.bit", "IP packaging, stitched IP and Vivado synthesis/implementation"),
    ("deploy/bitfile/finn-accel.hwh", "the Vivado block design's hardware handoff"),
    ("ip/", "the packaged layer IPs (Vivado's IP packager) and the stitched IP"),
)

HOWTO = ("run the same build inside the Docker image with Vivado mounted: "
         "docker build -t metabnn . && docker run --rm -v /tools/Xilinx:/tools/Xilinx "
         "-e XILINX_VIVADO=/tools/Xilinx/Vivado/2024.2 -v $PWD:/work metabnn "
         "metabnn build EXPORT_DIR --board BOARD --target-fps N --out BUILD_DIR (see README)")


def plan(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """Whether this build runs the Vivado tail, and the outputs it will lack if not."""
    run = vivado_available(dict(env) if env is not None else None)
    return {"vivado": run, "missing": [] if run else [o for o, _ in VIVADO_OUTPUTS], "howto": None if run else HOWTO}


def message(p: Mapping[str, object]) -> str:
    if p["vivado"]:
        return "Vivado found: bitstream, hardware handoff and driver are in deploy/"
    lines = ["XILINX_VIVADO is not set: stopped after estimates, RTL code generation, driver settings "
             "and per-task weight files. These outputs need Vivado:"]
    lines += [f"  {o:34s} {why}" for o, why in VIVADO_OUTPUTS]
    lines.append(f"To get them, {HOWTO}")
    return "\n".join(lines)


def run_vivado(model, board_name: str, clock_ns: float, deploy: Path):
    """FINN's ZynqBuild (IP gen, stitching, synthesis, bitstream); copies bit + hwh into ``deploy``."""
    from finn.transformation.fpgadataflow.make_zynq_proj import ZynqBuild

    model = model.transform(ZynqBuild(platform=board_name, period_ns=clock_ns))
    (deploy / "bitfile").mkdir(parents=True, exist_ok=True)
    shutil.copy(model.get_metadata_prop("bitfile"), deploy / "bitfile" / "finn-accel.bit")
    shutil.copy(model.get_metadata_prop("hw_handoff"), deploy / "bitfile" / "finn-accel.hwh")
    return model
