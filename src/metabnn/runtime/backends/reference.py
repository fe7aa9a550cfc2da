"""``reference``: a bit-exact numpy model of the accelerator, working from its memory words.

It holds the same 32-bit memory images the board holds, decodes them with FINN's layouts
(``runtime.words``) when flushed, and computes every layer as the hardware does: MVAU
(XNOR-popcount, or integer x bipolar), then Thresholding (count of thresholds reached plus
ActVal). Weights written but not flushed are refused rather than silently used, so a
protocol slip shows up here before it does on a board.

``state_file`` keeps the memories in a file (memory-mapped), the way a programmed FPGA keeps
its BRAM when the host process dies; tests use it to kill an update half-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError
from metabnn.runtime import words as W
from metabnn.runtime.backends.base import Backend

FLOAT32_EXACT = 2 ** 24


class ReferenceBackend(Backend):
    name = "reference"

    def __init__(self, state_file: str | Path | None = None, chunk: int = 8192):
        self.state_file = Path(state_file) if state_file else None
        self.chunk = chunk
        self.layers: list[dict[str, Any]] = []
        self.mems: list[np.ndarray] = []
        self.compiled: list[tuple] | None = None
        self.dirty = True

    def open(self, pkg: Any) -> None:
        self.layers = pkg.layers if hasattr(pkg, "layers") else list(pkg)
        sizes = [W.memory_words(l) for l in self.layers]
        total = sum(sizes)
        if self.state_file is not None:
            fresh = not self.state_file.is_file() or self.state_file.stat().st_size != 4 * total
            backing = np.memmap(self.state_file, dtype=np.uint32, mode="w+" if fresh else "r+", shape=(total,))
        else:
            backing = np.zeros(total, dtype=np.uint32)
        self._backing = backing
        offs = np.cumsum([0] + sizes)
        self.mems = [backing[offs[i]:offs[i + 1]] for i in range(len(sizes))]
        self.compiled, self.dirty = None, True

    def _check(self, mem: int, offset: int, n: int) -> np.ndarray:
        if not 0 <= mem < len(self.mems):
            raise MetabnnError(f"memory {mem} does not exist; the accelerator has {len(self.mems)}")
        m = self.mems[mem]
        if offset < 0 or offset + n > m.size:
            raise MetabnnError(f"words {offset}..{offset + n - 1} are outside {self.layers[mem]['name']}'s "
                               f"{m.size} words")
        return m

    def write_words(self, mem: int, offset: int, words: np.ndarray) -> None:
        words = np.asarray(words, dtype=np.uint32).reshape(-1)
        self._check(mem, offset, words.size)[offset:offset + words.size] = words
        self.dirty = True

    def read_words(self, mem: int, offset: int, n: int) -> np.ndarray:
        return np.array(self._check(mem, offset, n)[offset:offset + n], dtype=np.uint32)

    def flush(self) -> None:
        if isinstance(self._backing, np.memmap):
            self._backing.flush()
        self.compiled = [self._compile(l, m) for l, m in zip(self.layers, self.mems)]
        self.dirty = False

    @staticmethod
    def _compile(layer: dict[str, Any], words: np.ndarray) -> tuple:
        if layer["kind"] == "mvau":
            bits = W.decode_mvau(words, layer)  # [MW, MH] 0/1
            if layer["xnor"]:
                return ("xnor", (2.0 * bits - 1.0).astype(np.float32), int(layer["mw"]))
            lo, hi = W.dtype_range(layer["input_dtype"])
            big = int(layer["mw"]) * max(abs(lo), abs(hi)) >= FLOAT32_EXACT
            return ("int", (2.0 * bits - 1.0).astype(np.float64 if big else np.float32))
        thr = W.decode_thresholds(words, layer)  # [C, S]
        return ("thr", thr.astype(np.float32), int(layer.get("act_val", 0)))  # [C, S], exact (< 2**24)

    def run(self, images: np.ndarray) -> np.ndarray:
        if self.compiled is None or self.dirty:
            raise MetabnnError("reference accelerator: memories were written but not flushed; call flush()")
        x = np.asarray(images)
        out = []
        for i in range(0, len(x), self.chunk):
            out.append(self._forward(x[i:i + self.chunk]))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.int64)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float32)
        for op in self.compiled:
            if op[0] == "xnor":
                # inputs 0/1 stand for -1/+1: popcount of agreements = (a + n) / 2, exact in float32
                v = ((2.0 * v - 1.0) @ op[1] + op[2]) * 0.5
            elif op[0] == "int":
                v = v.astype(op[1].dtype) @ op[1]
            else:
                t, act = op[1], op[2]
                if t.shape[1] == 1:
                    v = (v >= t[:, 0]).astype(np.float32) + act
                else:
                    v = (v[:, :, None] >= t[None]).sum(axis=2).astype(np.float32) + act
        return v.astype(np.int64)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "state_file": str(self.state_file) if self.state_file else None}
