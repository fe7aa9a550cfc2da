"""One harness run: a script of resets, AXI-lite accesses and streams, and its results."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metabnn.sim.verilator import run


@dataclass
class StreamResult:
    out: bytes  # the output words, OUT_BYTES each
    cycles: np.ndarray  # cycle of every output handshake
    start: int  # cycle the stream command began
    first_in: int  # cycle of the first input handshake
    end: int
    starve: list[int] = field(default_factory=list)  # per debug lane: cycles wanting input, none offered
    block: list[int] = field(default_factory=list)  # per debug lane: cycles with output nobody took


@dataclass
class Results:
    reads: list[tuple[int, int, int]]  # (address, data, resp)
    streams: list[StreamResult]
    cycles: int


class Session:
    """Collects commands for the harness (see harness.cpp), runs them in one process."""

    def __init__(self, exe: Path, in_bytes: int, out_bytes: int):
        self.exe, self.in_bytes, self.out_bytes = Path(exe), in_bytes, out_bytes
        self.cmds: list[str] = []
        self._streams: list[tuple[bytes, int, int]] = []

    def reset(self, cycles: int = 8) -> None:
        self.cmds.append(f"reset {cycles}")

    def stalls(self, seed: int, p_in: float, p_out: float) -> None:
        self.cmds.append(f"stalls {seed} {p_in} {p_out}")

    def write(self, addr: int, data: int) -> None:
        self.cmds.append(f"write {addr:x} {data & 0xFFFFFFFF:x}")

    def write_words(self, base: int, words: list[int]) -> None:
        """Consecutive 32-bit words from byte address ``base``, as FINN's driver's write_mm."""
        self.cmds.extend(f"write {base + 4 * i:x} {w & 0xFFFFFFFF:x}" for i, w in enumerate(words))

    def read(self, addr: int) -> None:
        self.cmds.append(f"read {addr:x}")

    def read_words(self, base: int, n: int) -> None:
        self.cmds.extend(f"read {base + 4 * i:x}" for i in range(n))

    def idle(self, cycles: int) -> None:
        self.cmds.append(f"idle {cycles}")

    def stream(self, data: bytes, n_out: int) -> None:
        """Send ``data`` (whole input words) and collect ``n_out`` output words."""
        if len(data) % self.in_bytes:
            raise ValueError("input data is not a whole number of words")
        k = len(self._streams)
        self._streams.append((data, len(data) // self.in_bytes, n_out))
        self.cmds.append(f"stream in{k}.bin {len(data) // self.in_bytes} out{k}.bin {n_out} cyc{k}.bin")

    def run(self, work_dir: Path | None = None, timeout: float | None = None) -> Results:
        with tempfile.TemporaryDirectory(prefix="metabnn-sim-", dir=work_dir) as tmp:
            d = Path(tmp)
            for k, (data, _, _) in enumerate(self._streams):
                (d / f"in{k}.bin").write_bytes(data)
            lines = run(self.exe, "\n".join(self.cmds) + "\n", d, timeout)
            reads, streams, cycles = [], [], 0
            for line in lines:
                f = line.split()
                if f[0] == "read":
                    reads.append((int(f[1], 16), int(f[2], 16), int(f[3])))
                elif f[0] == "stream":
                    k = len(streams)
                    kv = dict(zip(f[1:7:2], map(int, f[2:7:2])))
                    dbg = f[7:]
                    streams.append(StreamResult(
                        (d / f"out{k}.bin").read_bytes(), np.fromfile(d / f"cyc{k}.bin", np.uint64).astype(np.int64),
                        kv["start"], kv["first_in"], kv["end"],
                        [int(dbg[i + 1]) for i in range(0, len(dbg), 3)],
                        [int(dbg[i + 2]) for i in range(0, len(dbg), 3)]))
                elif f[0] == "cycles":
                    cycles = int(f[1])
        return Results(reads, streams, cycles)
