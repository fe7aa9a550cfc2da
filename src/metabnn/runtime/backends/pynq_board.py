"""``pynq``: the real board, driven the way finn-plus-driver's FINNDMAOverlay drives it.

Runs on a PYNQ image with numpy < 2 and without torch or FINN: only ``pynq`` and numpy.
- bitstream: ``pynq.Overlay(deploy/bitfile/<name>.bit)`` (downloads it, reads the .hwh);
- weights/thresholds: file ``<sdp>_<rt>_<node>.dat`` lives at ``StreamingDataflowPartition_<sdp>.mmio``
  from byte 0 (``mmio.write_mm(4 * offset, words.tobytes())``, read back from ``mmio.array``);
- data: ``pynq.allocate`` buffers and the zynq-iodma registers (0x10/0x14 buffer address,
  0x1C batch size, 0x00 start; output DMA bit 0x2 = done, 0x4 = idle), input packed as
  FINN packs it (element 0 in the lowest bits, little-endian bytes);
- flush: one dummy inference, as the FINN driver does after writing runtime weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError
from metabnn.runtime.backends.base import Backend
from metabnn.runtime.words import dtype_bits


def pack_rows(values: np.ndarray, dtype: str, n_bytes: int) -> np.ndarray:
    """FINN's finnpy_to_packed_bytearray(reverse_endian=True, reverse_inner=True) on the last axis."""
    bits, _ = dtype_bits(dtype)
    v = np.asarray(values).astype(np.int64)
    if bits == 8 and v.shape[-1] == n_bytes:
        return (v & 0xFF).astype(np.uint8)  # the common case: one byte per element, in order
    b = ((v[..., None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(*v.shape[:-1], -1)
    pad = n_bytes * 8 - b.shape[-1]
    if pad < 0:
        raise MetabnnError(f"{v.shape[-1]} x {dtype} values do not fit {n_bytes} packed bytes")
    b = np.concatenate([b, np.zeros((*b.shape[:-1], pad), dtype=np.uint8)], axis=-1)
    return np.packbits(b, axis=-1, bitorder="little")


def unpack_rows(packed: np.ndarray, dtype: str, n: int) -> np.ndarray:
    bits, signed = dtype_bits(dtype)
    b = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, bitorder="little")
    b = b[..., :n * bits].reshape(*packed.shape[:-1], n, bits).astype(np.int64)
    v = (b << np.arange(bits)).sum(axis=-1)
    if signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v


class PynqBackend(Backend):
    name = "pynq"

    def __init__(self, bitfile: str | Path | None = None, download: bool = True, max_batch: int = 1000,
                 timeout_s: float = 10.0):
        self.bitfile, self.download = bitfile, download
        self.max_batch, self.timeout_s = int(max_batch), float(timeout_s)
        self.overlay = None
        self._cap = 0

    def open(self, pkg: Any) -> None:
        try:
            import pynq  # noqa: F401  (imported here so the rest of metabnn imports without it)
        except ImportError:
            raise MetabnnError("the pynq backend runs on a PYNQ board image (module 'pynq' is missing); "
                               "use --backend reference or sim on a workstation") from None
        from pynq import Overlay

        bit = Path(self.bitfile) if self.bitfile else None
        if bit is None:
            found = sorted((pkg.root / "bitfile").glob("*.bit"))
            if not found:
                raise MetabnnError(f"'{pkg.root}' has no bitfile/*.bit (the build ran without Vivado); build the "
                                   "bitstream (README: Docker) or pass bitfile=")
            bit = found[0]
        self.pkg = pkg
        self.layers = pkg.layers
        net, drv = pkg.manifest["network"], pkg.manifest["driver"]
        self.idt, self.odt = _dt(net["input"]["dtype"]), _dt(net["output"]["dtype"])
        self.in_folded, self.in_bytes = net["input"]["folded"], net["input"]["packed_bytes"]
        self.out_folded, self.out_bytes = net["output"]["folded"], net["output"]["packed_bytes"]
        self.regs = drv["dma_registers"]
        self.overlay = Overlay(str(bit), download=self.download)
        idn = (drv.get("idma_names") or [""])[0] or "idma0"
        odn = (drv.get("odma_names") or [""])[0] or "odma0"
        self.idma, self.odma = getattr(self.overlay, idn), getattr(self.overlay, odn)
        self.mmio = [getattr(self.overlay, l["memory"]["ip"]).mmio for l in self.layers]

    # ---- memories ----------------------------------------------------------------------
    def write_words(self, mem: int, offset: int, words: np.ndarray) -> None:
        base = int(self.layers[mem]["memory"]["base"])
        self.mmio[mem].write_mm(base + 4 * int(offset), np.asarray(words, dtype=np.uint32).tobytes())

    def read_words(self, mem: int, offset: int, n: int) -> np.ndarray:
        start = int(self.layers[mem]["memory"]["base"]) // 4 + int(offset)
        return np.array(self.mmio[mem].array[start:start + int(n)], dtype=np.uint32)

    # ---- data --------------------------------------------------------------------------
    def _buffers(self, n: int) -> None:
        if n <= self._cap:
            return
        from pynq import allocate

        self._cap = max(n, self.max_batch)  # FINN allocates the whole batch once
        self.ibuf = allocate(shape=(self._cap, *self.in_bytes), dtype=np.uint8, cacheable=True)
        self.obuf = allocate(shape=(self._cap, *self.out_bytes), dtype=np.uint8, cacheable=True)

    def _start(self, dma: Any, buf: Any, n: int) -> None:
        r = self.regs
        dma.write(r["addr_lo"], buf.device_address & 0xFFFFFFFF)
        dma.write(r["addr_hi"], (buf.device_address >> 32) & 0xFFFFFFFF)
        dma.write(r["count"], n)
        dma.write(r["ctrl"], r["start"])

    def _execute(self, n: int) -> None:
        r = self.regs
        if not self.odma.read(r["ctrl"]) & r["idle_bit"]:
            raise MetabnnError("the output DMA is not idle; reload the bitstream (open the accelerator again)")
        self._start(self.odma, self.obuf, n)  # output first, as FINN's driver does
        self._start(self.idma, self.ibuf, n)
        deadline = time.monotonic() + self.timeout_s
        while not self.odma.read(r["ctrl"]) & r["done_bit"]:
            if time.monotonic() > deadline:
                raise MetabnnError(f"the accelerator did not finish {n} images in {self.timeout_s:g} s; "
                                   "check the bitstream matches this package")

    def run(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images)
        outs = []
        for i in range(0, len(x), self.max_batch):
            batch = x[i:i + self.max_batch]
            n = len(batch)
            self._buffers(n)
            folded = batch.reshape(n, *self.in_folded)
            self.ibuf[:n] = pack_rows(folded, self.idt, self.in_bytes[-1])
            self.ibuf.flush()
            self._execute(n)
            self.obuf.invalidate()
            raw = unpack_rows(np.array(self.obuf[:n]), self.odt, self.out_folded[-1])
            outs.append(raw.reshape(n, -1))
        return np.concatenate(outs).astype(np.int64)

    def flush(self) -> None:
        self._buffers(1)
        self.ibuf[:1] = 0
        self.ibuf.flush()
        self._execute(1)

    def close(self) -> None:
        self.overlay = None

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "bitfile": str(self.bitfile) if self.bitfile else None}


def _dt(s: str) -> str:
    """"DataType['UINT8']" (settings.json's form) or "UINT8" -> "UINT8"."""
    return s.split("[", 1)[1].strip("]'\"") if "[" in s else s
