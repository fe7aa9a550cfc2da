"""``sim``: the Verilator simulation of the whole accelerator (issue 4), behind the same calls.

What this adapter needs from ``metabnn.sim`` (one function)::

    metabnn.sim.runtime_top(build_dir: Path) -> top
      top.exe: Path          the compiled harness of BUILD_DIR/rtl's top (built and cached once)
      top.in_bytes: int      bytes per input stream word, top.out_bytes: bytes per output word
      top.words_in_per_image, top.words_out_per_image: int
      top.axilite_base: dict[str, int]   byte address of each layer's memory (node name) on the
                                          top's one AXI-lite port
      top.pack_images(images uint8 [N, D]) -> bytes;  top.unpack_outputs(bytes, n) -> int64 [N, C]

The harness is one process per run (``metabnn.sim.session.Session``), so the adapter keeps a
shadow of every memory and replays it, word by word over AXI-lite as the board driver
writes it, at the start of each simulation run; reads go through the simulated port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError
from metabnn.runtime import words as W
from metabnn.runtime.backends.base import Backend

NEEDS = "sim backend needs metabnn.sim.runtime_top (issue 4): not available in this metabnn"


class SimBackend(Backend):
    name = "sim"

    def __init__(self, build_dir: str | Path | None = None, stalls: tuple[int, float, float] | None = None):
        self.build_dir = Path(build_dir) if build_dir else None
        self.stalls = stalls

    def open(self, pkg: Any) -> None:
        try:
            from metabnn.sim import runtime_top  # type: ignore[attr-defined]
        except ImportError:
            raise MetabnnError(NEEDS) from None
        build_dir = self.build_dir or pkg.root.parent
        self.top = runtime_top(build_dir)
        self.layers = pkg.layers
        missing = [l["name"] for l in self.layers if l["name"] not in self.top.axilite_base]
        if missing:
            raise MetabnnError(f"the simulated top of '{build_dir}' has no AXI-lite memory for {missing}; "
                               "rebuild (metabnn build) so rtl/ and deploy/ come from the same graph")
        self.shadow = [np.zeros(W.memory_words(l), dtype=np.uint32) for l in self.layers]
        self.flushed = [s.copy() for s in self.shadow]

    def _session(self) -> Any:
        from metabnn.sim.session import Session

        s = Session(self.top.exe, self.top.in_bytes, self.top.out_bytes)
        s.reset()
        if self.stalls:
            s.stalls(*self.stalls)
        for l, words in zip(self.layers, self.flushed):
            s.write_words(self.top.axilite_base[l["name"]], [int(w) for w in words])
        return s

    def write_words(self, mem: int, offset: int, words: np.ndarray) -> None:
        words = np.asarray(words, dtype=np.uint32).reshape(-1)
        if offset < 0 or offset + words.size > self.shadow[mem].size:
            raise MetabnnError(f"words {offset}..{offset + words.size - 1} are outside {self.layers[mem]['name']}")
        self.shadow[mem][offset:offset + words.size] = words

    def read_words(self, mem: int, offset: int, n: int) -> np.ndarray:
        # Read back through the simulated AXI-lite port: replay what was written, then read.
        s = self._session()
        base = self.top.axilite_base[self.layers[mem]["name"]]
        for l, words in zip(self.layers, self.shadow):
            s.write_words(self.top.axilite_base[l["name"]], [int(w) for w in words])
        s.read_words(base + 4 * offset, n)
        res = s.run()
        bad = [r for r in res.reads if r[2] != 0]
        if bad:
            raise MetabnnError(f"simulated AXI-lite read of {self.layers[mem]['name']} answered SLVERR at "
                               f"0x{bad[0][0]:x}; the register map does not match the RTL top")
        return np.array([r[1] for r in res.reads], dtype=np.uint32)

    def flush(self) -> None:
        self.flushed = [s.copy() for s in self.shadow]

    def run(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images)
        s = self._session()
        s.stream(self.top.pack_images(x), len(x) * self.top.words_out_per_image)
        res = s.run()
        self.last_cycles = res.cycles
        return self.top.unpack_outputs(res.streams[0].out, len(x))
