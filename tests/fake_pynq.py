"""A fake ``pynq`` for the pynq backend's tests: PYNQ 3.0.1's API, the parts the backend uses.

One simulated board (``BOARD``) outlives every ``Overlay`` object, as the PL outlives the
processes that use it: a bitstream stays loaded, with whatever its memories were last
written, until another one is downloaded. What is loaded is recorded as PYNQ 3 records it
(``pynq.pl_server.global_state``: the bitfile's path, its sha1 and a timestamp), so a second
open can attach instead of reprogramming.

- ``Overlay(bitfile, download=True)``: parses the .hwh beside the .bit (here: the address map
  of the package's IPs) and, when downloading, sets the PL clocks from the .hwh and programs
  the PL: every memory gets the bitstream's initial image (``init``: the build-time task-0
  image, or zeros for memories a bitstream does not initialise), and the global state is
  rewritten. Reaching an IP as an overlay attribute needs ``is_loaded()``, as in PYNQ.
- ``MMIO(phys_addr, length)``: ``array`` (a uint32 view of the PL at that address, the same
  memory for every window), ``read``, ``write`` (an int: one register), ``write_mm``.
- ``allocate``, ``Clocks.fclk0_mhz`` (PYNQ rounds to the PLL's divisors), ``PL.bitfile_name``.

The accelerator computes: when the input DMA starts, the reference model runs on the live
memories, so outputs are right only if the writes and the data packing are. Every MMIO, DMA,
clock and download call is appended to ``LOG``.

``install(monkeypatch, package)`` puts the fake in place for one test (a board that has just
booted, nothing loaded); ``install_process(board_dir, deploy_dir)`` does it for a whole
``metabnn`` process, keeping the board in ``board_dir`` between processes.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

from metabnn.runtime.backends.pynq_board import pack_rows, unpack_rows
from metabnn.runtime.backends.reference import ReferenceBackend
from metabnn.runtime.package import Package, open_package

LOG: list = []
BUFFERS: dict = {}
STATE: dict = {}  # package, init, the last Overlay
BOOT_FCLK0 = 50.0  # what FCLK0 runs at before any overlay sets it
PLL_MHZ = 1000.0  # Z2's IO PLL: FCLK = PLL / integer divisor
MEM_BASE, DMA_BASE, IP_RANGE = 0x4000_0000, 0x43C0_0000, 0x1_0000


def _fresh_board() -> dict:
    return {"loaded": None, "timestamp": None, "phys": {}, "fclk0": BOOT_FCLK0, "hang": False}


BOARD: dict = _fresh_board()


def bitstream_hash(filename) -> str:
    """PYNQ's ``global_state.bitstream_hash``: sha1 of the file."""
    return hashlib.sha1(Path(filename).read_bytes()).hexdigest()


# ---- the .hwh: where each IP lives ----------------------------------------------------------

def ip_dict(pkg: Package) -> dict:
    out = {}
    for i, l in enumerate(pkg.layers):
        out.setdefault(l["memory"]["ip"], {"phys_addr": MEM_BASE + i * IP_RANGE, "addr_range": IP_RANGE,
                                           "type": "xilinx.com:hls:StreamingDataflowPartition:1.0"})
    drv = pkg.manifest["driver"]  # a build without Vivado has no DMA names yet: FINN's are idma0, odma0
    names = [(drv.get("idma_names") or [""])[0] or "idma0", (drv.get("odma_names") or [""])[0] or "odma0"]
    for k, name in enumerate(names):
        out[name] = {"phys_addr": DMA_BASE + k * IP_RANGE, "addr_range": IP_RANGE,
                     "type": "xilinx.com:ip:axi_dma:7.1"}
    return out


def _name_at(addr: int) -> str:
    for name, d in ip_dict(STATE["package"]).items():
        if d["phys_addr"] == addr:
            return name
    return hex(addr)


def _phys(addr: int, length: int) -> np.ndarray:
    """The PL's words at ``addr`` (one array per address: every window sees the same memory)."""
    if addr not in BOARD["phys"]:
        BOARD["phys"][addr] = np.random.default_rng(addr).integers(0, 2**32, length // 4, dtype=np.uint32)
    return BOARD["phys"][addr]


# ---- pynq.pl_server.global_state ------------------------------------------------------------

class GlobalState:
    def __init__(self, bitfile_name: str, bitfile_hash: str, timestamp: str, active_name: str = "Pynq-Z2"):
        self.bitfile_name, self.bitfile_hash = bitfile_name, bitfile_hash
        self.timestamp, self.active_name = timestamp, active_name
        self.shutdown_ips, self.psddr = {}, {}


def global_state_file_exists() -> bool:
    return BOARD["loaded"] is not None


def load_global_state() -> GlobalState:
    if BOARD["loaded"] is None:
        raise FileNotFoundError("global_pl_state.json")
    return GlobalState(**BOARD["loaded"])


def initial_global_state_file_boot_check() -> None:
    """After a power cycle PYNQ clears the record (our board keeps power between tests)."""


def load_foreign(path: str = "/usr/local/share/pynq-venv/lib/python3.10/site-packages/pynq/overlays/base/base.bit",
                 sha1: str = "f" * 40) -> None:
    """Another application's bitstream is loaded (the base overlay at boot, say): other memories."""
    BOARD["phys"].clear()
    BOARD["timestamp"] = time.strftime("%Y/%m/%d %H:%M:%S")
    BOARD["loaded"] = {"bitfile_name": path, "bitfile_hash": sha1, "timestamp": BOARD["timestamp"]}


# ---- pynq: Overlay, MMIO, allocate, Clocks, PL ----------------------------------------------

class _ClocksMeta(type):
    @property
    def fclk0_mhz(cls) -> float:
        return BOARD["fclk0"]

    @fclk0_mhz.setter
    def fclk0_mhz(cls, mhz: float) -> None:
        LOG.append(("set_fclk0_mhz", float(mhz)))
        BOARD["fclk0"] = PLL_MHZ / max(1, round(PLL_MHZ / float(mhz)))


class Clocks(metaclass=_ClocksMeta):
    pass


class _PLMeta(type):
    @property
    def bitfile_name(cls):
        return BOARD["loaded"]["bitfile_name"] if BOARD["loaded"] else None

    @property
    def timestamp(cls):
        return BOARD["timestamp"]


class PL(metaclass=_PLMeta):
    pass


class Buffer(np.ndarray):
    def flush(self):
        LOG.append(("flush", self.device_address))

    def invalidate(self):
        LOG.append(("invalidate", self.device_address))


def allocate(shape, dtype=np.uint8, cacheable=True, target=None):
    buf = np.zeros(shape, dtype=dtype).view(Buffer)
    buf.device_address = 0x1000_0000 + 0x100_0000 * len(BUFFERS)
    BUFFERS[buf.device_address] = buf
    LOG.append(("allocate", tuple(shape), buf.device_address))
    return buf


class MMIO:
    def __init__(self, base_addr: int, length: int = 4, debug: bool = False, device=None):
        self.base_addr, self.length = int(base_addr), int(length)
        self.name = _name_at(self.base_addr)
        self.array = _phys(self.base_addr, self.length)

    def read(self, offset: int = 0, length: int = 4) -> int:
        LOG.append(("read", self.name, offset))
        if self.base_addr >= DMA_BASE and offset == 0:
            return 0x4 if BOARD["hang"] else 0x6  # idle (and done, unless the accelerator hangs)
        return int(self.array[offset // 4])

    def write(self, offset: int, data) -> None:
        if isinstance(data, (bytes, bytearray)):
            self.write_mm(offset, data)
            return
        LOG.append(("write", self.name, offset, int(data)))
        self.array[offset // 4] = int(data)
        if self.base_addr == DMA_BASE and offset == 0 and int(data) == 1:  # the input DMA starts
            _compute(int(self.array[0x10 // 4]), int(self.array[0x1C // 4]))

    def write_mm(self, offset: int, data) -> None:
        LOG.append(("write_mm", self.name, offset, bytes(data)))
        w = np.frombuffer(bytes(data), dtype=np.uint32)
        self.array[offset // 4: offset // 4 + w.size] = w


class _IP:
    """What ``overlay.<ip>`` gives (PYNQ's DefaultIP): an MMIO window with read/write."""

    def __init__(self, desc: dict):
        self.mmio = MMIO(desc["phys_addr"], desc["addr_range"])

    def read(self, offset: int = 0) -> int:
        return self.mmio.read(offset)

    def write(self, offset: int, value) -> None:
        self.mmio.write(offset, value)


class Overlay:
    def __init__(self, bitfile_name, dtbo=None, download=True, ignore_version=False, device=None):
        path = Path(bitfile_name).resolve()
        if not path.is_file():
            raise IOError(f"Bitstream file {bitfile_name} does not exist.")
        if not path.with_suffix(".hwh").is_file():
            raise ValueError(f"Cannot find HWH or TCL file for {bitfile_name}.")
        LOG.append(("Overlay", bitfile_name, download))
        self.bitfile_name, self.timestamp = str(path), ""
        self.ip_dict = ip_dict(STATE["package"])
        STATE["overlay"] = self
        if download:
            self.download()

    def download(self, dtbo=None) -> None:
        LOG.append(("download", self.bitfile_name))
        pkg: Package = STATE["package"]
        BOARD["fclk0"] = 1000.0 / float(pkg.manifest.get("clock_ns") or 10.0)  # the .hwh's clock, set first
        BOARD["phys"].clear()
        init = STATE.get("init", "bitstream")
        for l, words in zip(pkg.layers, pkg.shared_image()):
            mem = _phys(self.ip_dict[l["memory"]["ip"]]["phys_addr"], IP_RANGE)
            mem[:] = 0
            mem[:words.size] = words if init == "bitstream" else 0
        BOARD["timestamp"] = self.timestamp = f"{time.time():.6f}"
        BOARD["loaded"] = {"bitfile_name": self.bitfile_name, "bitfile_hash": bitstream_hash(self.bitfile_name),
                           "timestamp": self.timestamp}

    def is_loaded(self) -> bool:
        if self.timestamp != "":
            return self.timestamp == BOARD["timestamp"]
        return BOARD["loaded"] is not None and self.bitfile_name == BOARD["loaded"]["bitfile_name"]

    def __getattr__(self, key):
        desc = self.__dict__.get("ip_dict", {}).get(key)
        if desc is None:
            raise AttributeError(f"Could not find IP or hierarchy {key} in overlay")
        if not self.is_loaded():
            raise RuntimeError("Overlay not currently loaded")
        return _IP(desc)


def memories(pkg: Package) -> list:
    """The live words of every runtime memory, as the PL holds them now (views: writable)."""
    ips = ip_dict(pkg)
    return [_phys(ips[l["memory"]["ip"]]["phys_addr"], IP_RANGE)[:l["memory"]["words"]] for l in pkg.layers]


def _compute(in_addr: int, n: int) -> None:
    """The accelerator: the reference model on the live memories, input and output by DMA."""
    pkg: Package = STATE["package"]
    net = pkg.manifest["network"]
    ips = ip_dict(pkg)
    ref = ReferenceBackend()
    ref.open(pkg)
    for i, l in enumerate(pkg.layers):
        ref.write_words(i, 0, _phys(ips[l["memory"]["ip"]]["phys_addr"], IP_RANGE)[:l["memory"]["words"]])
    ref.flush()
    x = unpack_rows(np.array(BUFFERS[in_addr][:n]), "UINT8", net["input"]["folded"][-1]).reshape(n, -1)
    raw = ref.run(x.astype(np.uint8))
    odt = net["output"]["dtype"].split("'")[1] if "'" in net["output"]["dtype"] else net["output"]["dtype"]
    out_addr = int(_phys(DMA_BASE + IP_RANGE, IP_RANGE)[0x10 // 4])
    BUFFERS[out_addr][:n] = pack_rows(raw.reshape(n, *net["output"]["folded"]), odt,
                                      net["output"]["packed_bytes"][-1])


# ---- putting the fake in place ----------------------------------------------------------------

def _modules() -> dict:
    pynq = types.ModuleType("pynq")
    pynq.Overlay, pynq.MMIO, pynq.allocate, pynq.Clocks, pynq.PL = Overlay, MMIO, allocate, Clocks, PL
    ps = types.ModuleType("pynq.ps")
    ps.Clocks = Clocks
    pl_server = types.ModuleType("pynq.pl_server")
    gs = types.ModuleType("pynq.pl_server.global_state")
    for f in (GlobalState, global_state_file_exists, load_global_state, initial_global_state_file_boot_check,
              bitstream_hash):
        setattr(gs, f.__name__, f)
    pynq.ps, pynq.pl_server, pl_server.global_state = ps, pl_server, gs
    return {"pynq": pynq, "pynq.ps": ps, "pynq.pl_server": pl_server, "pynq.pl_server.global_state": gs}


def install(monkeypatch, package: Package, init: str = "bitstream") -> list:
    """The fake for one test: a board that has just booted, with nothing loaded; returns LOG."""
    for name, mod in _modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    LOG.clear()
    BUFFERS.clear()
    STATE.clear()
    STATE.update(package=package, init=init)
    BOARD.clear()
    BOARD.update(_fresh_board())
    return LOG


def install_process(board_dir: str, deploy_dir: str, init: str = "bitstream") -> None:
    """The fake for this whole process, the board kept in ``board_dir`` (for CLI tests)."""
    sys.modules.update(_modules())
    STATE.update(package=open_package(deploy_dir, check_files=False), init=init)
    d = Path(board_dir)
    if (d / "board.json").is_file():
        saved = json.loads((d / "board.json").read_text())
        with np.load(d / "phys.npz") as z:
            saved["phys"] = {int(k): z[k].copy() for k in z.files}
        BOARD.update(saved)

    def save() -> None:
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / "phys.npz", **{str(k): v for k, v in BOARD["phys"].items()})
        (d / "board.json").write_text(json.dumps({k: v for k, v in BOARD.items() if k != "phys"}))
        (d / "log.json").write_text(json.dumps([[e if isinstance(e, (int, float, str)) else repr(e) for e in entry]
                                                for entry in LOG]))

    atexit.register(save)
