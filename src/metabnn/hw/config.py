"""The one configuration object every build step reads."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from metabnn.errors import MetabnnError
from metabnn.hw.boards import Board, get_board


@dataclass
class BuildConfig:
    export_dir: Path
    out_dir: Path  # the final BUILD dir; steps write into ``work_dir`` until the rename
    work_dir: Path
    board: Board
    target_fps: float
    clock_ns: float = 10.0
    verify_limit: int | None = None  # test images per task for the agreement check (None: all)
    progress: bool = True
    # build a folding that exceeds the board's budget (for simulation and synthesis studies:
    # the RTL, its cycles and its yosys resources do not depend on the board); no bitstream
    oversize: bool = False

    @property
    def final_dir(self) -> Path:
        """Where BUILD_DIR will be once the staged work dir is renamed into place (absolute)."""
        return self.out_dir.parent.resolve() / self.out_dir.name

    @property
    def fclk_hz(self) -> float:
        return 1e9 / self.clock_ns

    @property
    def max_cycles(self) -> float:
        """Cycles per image the slowest layer may take to reach ``target_fps``."""
        return self.fclk_hz / self.target_fps

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["board"] = self.board.name
        for k in ("export_dir", "out_dir", "work_dir"):
            d[k] = str(d[k])
        return d


def _number(value: Any, flag: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MetabnnError(f"{flag} {value!r} is not a number; give a positive number") from None


def check_numbers(target_fps: float, clock_ns: float, verify_limit: int | None) -> None:
    """One-line errors for a target FPS, clock or verification size that cannot be meant."""
    fps, clk = _number(target_fps, "--target-fps"), _number(clock_ns, "--clock-ns")
    if not math.isfinite(fps) or fps <= 0:
        raise MetabnnError(f"--target-fps {target_fps} must be a positive number of images per second, e.g. 100000")
    if not math.isfinite(clk) or clk <= 0:
        raise MetabnnError(f"--clock-ns {clock_ns} must be a positive clock period in ns, e.g. 10 for 100 MHz")
    if clk < 1:
        raise MetabnnError(f"--clock-ns {clock_ns}: these boards' fabric does not run above 1000 MHz; give a "
                           "period of at least 1 ns, e.g. 10 for 100 MHz")
    if verify_limit is not None and (isinstance(verify_limit, bool) or not isinstance(verify_limit, numbers.Integral)
                                     or verify_limit < 1):
        raise MetabnnError(f"--verify-limit {verify_limit}: give a positive number of test images per task, or "
                           "leave --verify-limit out to check them all")


def make_config(export_dir: Path, out_dir: Path, work_dir: Path, board: str, target_fps: float,
                clock_ns: float, verify_limit: int | None, progress: bool, oversize: bool = False) -> BuildConfig:
    check_numbers(target_fps, clock_ns, verify_limit)
    return BuildConfig(Path(export_dir), Path(out_dir), Path(work_dir), get_board(board), float(target_fps),
                       float(clock_ns), None if verify_limit is None else int(verify_limit), progress,
                       bool(oversize))
