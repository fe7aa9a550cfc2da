"""``pynq``: the real board, driven the way finn-plus-driver's FINNDMAOverlay drives it.

Runs on a PYNQ 3.x image (Python 3.10, numpy < 2) without torch or FINN: only ``pynq`` and numpy.
- bitstream: attached, not reprogrammed, when the PL already holds this package's .bit: PYNQ
  records what it loaded (``pynq.pl_server.global_state``: path and sha1); the live memories
  then keep what the last process wrote, and opening reads them back and rewrites only the
  words that differ from the selected task. Downloaded (``pynq.Overlay(bit)``, which resets
  every memory to the build-time image) when another or no bitstream is loaded, or when asked;
- clock: FCLK0 set to the build's clock (``pynq.Clocks.fclk0_mhz``), as FINN's driver does;
- weights/thresholds: file ``<sdp>_<rt>_<node>.dat`` lives at ``StreamingDataflowPartition_<sdp>``
  from byte 0 (``mmio.write_mm(4 * offset, words.tobytes())``, read back from ``mmio.array``);
- data: ``pynq.allocate`` buffers and the zynq-iodma registers (0x10/0x14 buffer address,
  0x1C batch size, 0x00 start; output DMA bit 0x2 = done, 0x4 = idle), input packed as
  FINN packs it (element 0 in the lowest bits, little-endian bytes);
- flush: one dummy inference, as the FINN driver does after writing runtime weights.
Every IP is reached through ``pynq.MMIO`` at its .hwh address (what PYNQ's ``DefaultIP`` does),
which works whether or not this process downloaded the overlay.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from metabnn.atomic import file_digest
from metabnn.errors import MetabnnError
from metabnn.runtime.backends.base import Backend
from metabnn.runtime.words import dtype_bits

DEFAULT_TIMEOUT_S = 10.0


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


def sha1_file(path: Path) -> str:
    """PYNQ's identity of a bitstream (``global_state.bitstream_hash``)."""
    return file_digest(path, "sha1")


def loaded_bitstream() -> dict[str, Any] | None:
    """What PYNQ recorded as loaded on the PL: {'name', 'sha1'}; None when nothing or unknown."""
    try:
        from pynq.pl_server import global_state as gs
    except ImportError:  # a PYNQ without the global state file (< 3.0): nothing can be known
        return None
    try:
        try:
            gs.initial_global_state_file_boot_check()  # a cold boot leaves a stale record: PYNQ clears it
        except OSError:
            pass
        if not gs.global_state_file_exists():
            return None
        state = gs.load_global_state()
    except Exception:  # noqa: BLE001 - a damaged or stale record (pydantic, OSError, ...) means "unknown"
        return None
    if state is None:
        return None
    name = str(getattr(state, "bitfile_name", "") or "")
    digest = getattr(state, "bitfile_hash", None)
    if not digest and name and Path(name).is_file():
        digest = sha1_file(Path(name))  # what PYNQ versions without the field compare too
    return {"name": name, "sha1": digest or None}


class PynqBackend(Backend):
    name = "pynq"

    def __init__(self, bitfile: str | Path | None = None, download: bool | None = None, max_batch: int = 1000,
                 timeout_s: float = DEFAULT_TIMEOUT_S, log: Callable[[str], None] | None = None):
        """``download``: None attaches when this bitstream is loaded and downloads otherwise; True
        always downloads (memories back to the build-time image); False never does (refused when
        another bitstream is loaded). ``timeout_s``: how long one batch may take."""
        if not timeout_s > 0:
            raise MetabnnError(f"--timeout {timeout_s}: give a number of seconds greater than zero")
        self.bitfile, self.download = bitfile, download
        self.max_batch, self.timeout_s = int(max_batch), float(timeout_s)
        self.log = log or (lambda s: None)
        self.overlay = None
        self.state: str | None = None  # "attached" or "downloaded"
        self.replaced: str | None = None  # the other bitstream a download replaced
        self.clock_mhz: float | None = None
        self._cap = 0

    def _bitfile(self, pkg: Any) -> Path:
        bit = Path(self.bitfile) if self.bitfile else None
        if bit is None:
            found = sorted((pkg.root / "bitfile").glob("*.bit"))
            if not found:
                raise MetabnnError(f"'{pkg.root}' has no bitfile/*.bit (the build ran without Vivado); build the "
                                   "bitstream (README: Docker) or give --bitfile FILE.bit")
            bit = found[0]
        elif not bit.is_file():
            raise MetabnnError(f"--bitfile '{bit}' does not exist; give the .bit file of this build "
                               "(its .hwh beside it)")
        if not bit.with_suffix(".hwh").is_file():
            raise MetabnnError(f"'{bit.with_suffix('.hwh')}' is missing; PYNQ needs the .hwh beside the .bit "
                               "(copy both from the build's deploy/bitfile/)")
        return bit.resolve()

    def open(self, pkg: Any) -> None:
        try:
            import pynq
        except ImportError:
            raise MetabnnError("the pynq backend runs on a PYNQ board image (module 'pynq' is missing); "
                               "use --backend reference or sim on a workstation") from None
        bit = self._bitfile(pkg)
        self.bit, self.pkg, self.layers = bit, pkg, pkg.layers
        net, drv = pkg.manifest["network"], pkg.manifest["driver"]
        self.idt, self.odt = _dt(net["input"]["dtype"]), _dt(net["output"]["dtype"])
        self.in_folded, self.in_bytes = net["input"]["folded"], net["input"]["packed_bytes"]
        self.out_folded, self.out_bytes = net["output"]["folded"], net["output"]["packed_bytes"]
        self.regs = drv["dma_registers"]

        loaded = loaded_bitstream()
        mine = sha1_file(bit)
        attach = self.download is not True and loaded is not None and loaded["sha1"] == mine
        if not attach:
            other = loaded["name"] if loaded else None
            if self.download is False:
                held = f"'{other}'" if other else "no known bitstream"
                raise MetabnnError(f"the PL holds {held}, not '{bit}'; "
                                   "download it with --download (this resets the accelerator's memories)")
            self.replaced = other if loaded and loaded["sha1"] != mine else None
            why = ("as asked (--download)" if self.download is True else
                   f"the PL holds another bitstream ({other})" if self.replaced else "no bitstream is loaded")
            self.log(f"pynq: downloading {bit.name}: {why}")
        try:
            self.overlay = pynq.Overlay(str(bit), download=not attach)
        except (OSError, ValueError, RuntimeError) as e:
            raise MetabnnError(f"PYNQ could not {'open' if attach else 'download'} '{bit}' ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else 'no detail'}); check the .bit and .hwh "
                               "are this build's and that you run as root (sudo -i)") from None
        self.state = "attached" if attach else "downloaded"
        if attach:
            self.log(f"pynq: attached to the loaded {bit.name} (sha1 matches); its live memories are read back")
        self.clock_mhz = self._set_clock(pynq, pkg.manifest, drv)
        idn = (drv.get("idma_names") or [""])[0] or "idma0"
        odn = (drv.get("odma_names") or [""])[0] or "odma0"
        self.idma, self.odma = self._ip(pynq, idn), self._ip(pynq, odn)
        self.mmio = [self._ip(pynq, l["memory"]["ip"]) for l in self.layers]

    def _ip(self, pynq: Any, name: str) -> Any:
        """An MMIO window on IP ``name`` at the address the .hwh gives it."""
        desc = getattr(self.overlay, "ip_dict", {}).get(name)
        if desc is None:
            raise MetabnnError(f"the bitstream '{self.bit}' has no IP '{name}' (its .hwh does not list it); it is "
                               "not this build's: give this build's deploy/bitfile/*.bit")
        try:
            return pynq.MMIO(int(desc["phys_addr"]), int(desc["addr_range"]))
        except (OSError, RuntimeError) as e:  # PYNQ: EnvironmentError("Root permissions required."), ...
            raise MetabnnError(f"PYNQ cannot map IP '{name}' ({type(e).__name__}: {e}); run metabnn as root "
                               "on the board (sudo -i)") from None

    @staticmethod
    def _set_clock(pynq: Any, manifest: dict[str, Any], drv: dict[str, Any]) -> float | None:
        """FCLK0 at the build's clock, as finn-plus-driver sets it on zynq-iodma platforms."""
        clock_ns = manifest.get("clock_ns")
        if not clock_ns or drv.get("platform") not in (None, "zynq-iodma"):
            return None
        clocks = getattr(pynq, "Clocks", None)
        if clocks is None:
            return None
        want = 1000.0 / float(clock_ns)
        # The PLL's divisors make 100 MHz read back as about 100: set only a clock that is off.
        if abs(float(clocks.fclk0_mhz) - want) > 0.01 * want:
            clocks.fclk0_mhz = want
        return float(clocks.fclk0_mhz)

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

        cap = max(n, self.max_batch)  # FINN allocates the whole batch once
        try:
            self.ibuf = allocate(shape=(cap, *self.in_bytes), dtype=np.uint8, cacheable=True)
            self.obuf = allocate(shape=(cap, *self.out_bytes), dtype=np.uint8, cacheable=True)
        except (OSError, RuntimeError, MemoryError) as e:
            raise MetabnnError(f"PYNQ cannot allocate DMA buffers for {cap} images ({type(e).__name__}: {e}); run "
                               "as root, and with --download if PYNQ lost track of the loaded overlay") from None
        self._cap = cap

    def _start(self, dma: Any, buf: Any, n: int) -> None:
        r = self.regs
        dma.write(r["addr_lo"], buf.device_address & 0xFFFFFFFF)
        dma.write(r["addr_hi"], (buf.device_address >> 32) & 0xFFFFFFFF)
        dma.write(r["count"], n)
        dma.write(r["ctrl"], r["start"])

    def _execute(self, n: int) -> None:
        r = self.regs
        if not self.odma.read(r["ctrl"]) & r["idle_bit"]:
            raise MetabnnError("the accelerator's output DMA is not idle (a run of another process, or a hung "
                               "accelerator); run again with --download to reprogram it")
        self._start(self.odma, self.obuf, n)  # output first, as FINN's driver does
        self._start(self.idma, self.ibuf, n)
        deadline = time.monotonic() + self.timeout_s
        while not self.odma.read(r["ctrl"]) & r["done_bit"]:
            if time.monotonic() > deadline:
                raise MetabnnError(f"the accelerator did not finish {n} image{'s' if n != 1 else ''} in "
                                   f"{self.timeout_s:g} s; give it longer with --timeout SECONDS, or reprogram it "
                                   "with --download if it hangs")

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
        return {"backend": self.name, "bitfile": str(getattr(self, "bit", self.bitfile) or "") or None,
                "bitstream": self.state, "replaced": self.replaced, "clock_mhz": self.clock_mhz,
                "timeout_s": self.timeout_s}


def _dt(s: str) -> str:
    """"DataType['UINT8']" (settings.json's form) or "UINT8" -> "UINT8"."""
    return s.split("[", 1)[1].strip("]'\"") if "[" in s else s
