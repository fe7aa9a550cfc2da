"""Target boards: FPGA part and the device resources the folding search must fit into.

Capacities are the parts' datasheet totals (DS190 for Zynq-7000, DS891 for Zynq
UltraScale+, DS987 for the K26 SOM). FINN's own tables (``finn.util.basic.pynq_part_map``
and ``finn.util.platforms``) agree on the parts; its platform models round some totals
(ZU3EG 412 instead of 432 BRAM18, ZU7EV 610 instead of 624) and have no KV260 entry, which
is why the numbers live here. ``tests/test_build_boards.py`` cross-checks the parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from metabnn.errors import MetabnnError


@dataclass(frozen=True)
class Board:
    name: str
    finn_board: str  # the name FINN's pynq_part_map and driver use
    part: str
    lut: int
    bram18: int  # 18 Kbit block RAMs (a 36 Kbit BRAM counts as two)
    dsp: int
    uram: int = 0

    def capacity(self) -> dict[str, int]:
        return {"LUT": self.lut, "BRAM_18K": self.bram18, "DSP": self.dsp, "URAM": self.uram}


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("pynq-z1", "Pynq-Z1", "xc7z020clg400-1", lut=53200, bram18=280, dsp=220),
    Board("pynq-z2", "Pynq-Z2", "xc7z020clg400-1", lut=53200, bram18=280, dsp=220),
    Board("ultra96", "Ultra96", "xczu3eg-sbva484-1-e", lut=70560, bram18=432, dsp=360),
    Board("zcu104", "ZCU104", "xczu7ev-ffvc1156-2-e", lut=230400, bram18=624, dsp=1728, uram=96),
    Board("kv260", "KV260_SOM", "xck26-sfvc784-2LV-c", lut=117120, bram18=288, dsp=1248, uram=64),
)}


def get_board(name: str) -> Board:
    """The board called ``name`` (case-insensitive), or a one-line error listing the known ones."""
    board = BOARDS.get(str(name).strip().lower())
    if board is None:
        raise MetabnnError(f"unknown board '{name}'; use one of: {', '.join(BOARDS)}")
    return board
