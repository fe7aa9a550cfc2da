"""A fake ``pynq`` module for the pynq backend's tests: records every MMIO and DMA call.

The fake overlay computes like the accelerator would: its MMIO arrays are the memories, and
on an input DMA start it runs the reference model on whatever words the driver wrote, so the
outputs are right only if the writes and the data packing are.
"""

import sys
import types

import numpy as np

from metabnn.runtime.backends.reference import ReferenceBackend
from metabnn.runtime.backends.pynq_board import pack_rows, unpack_rows
from metabnn.runtime.package import Package


class Buffer(np.ndarray):
    def flush(self):
        LOG.append(("flush", self.device_address))

    def invalidate(self):
        LOG.append(("invalidate", self.device_address))


LOG: list = []
BUFFERS: dict = {}
STATE: dict = {}


def allocate(shape, dtype=np.uint8, cacheable=True, target=None):
    buf = np.zeros(shape, dtype=dtype).view(Buffer)
    buf.device_address = 0x1000_0000 + 0x100_0000 * len(BUFFERS)
    BUFFERS[buf.device_address] = buf
    LOG.append(("allocate", tuple(shape), buf.device_address))
    return buf


class MMIO:
    def __init__(self, name, words):
        self.name, self.array = name, words

    def write_mm(self, offset, data):
        LOG.append(("write_mm", self.name, offset, bytes(data)))
        w = np.frombuffer(data, dtype=np.uint32)
        self.array[offset // 4: offset // 4 + w.size] = w


class IP:
    def __init__(self, name, mmio=None):
        self.name, self.mmio, self.regs = name, mmio, {}

    def write(self, reg, value):
        LOG.append(("write", self.name, reg, int(value)))
        self.regs[reg] = int(value)
        if self.name == "idma0" and reg == 0 and value == 1:
            STATE["overlay"].compute(self.regs[0x10], self.regs[0x1C])

    def read(self, reg):
        LOG.append(("read", self.name, reg))
        return 0x6 if reg == 0 else 0  # idle and done


class Overlay:
    def __init__(self, bitfile, download=True):
        LOG.append(("Overlay", bitfile, download))
        pkg: Package = STATE["package"]
        self.pkg = pkg
        init = STATE.get("init", "bitstream")
        self.mems = []
        for l, words in zip(pkg.layers, pkg.shared_image()):
            arr = words.copy() if init == "bitstream" else np.zeros_like(words)
            self.mems.append(arr)
            setattr(self, l["memory"]["ip"], IP(l["memory"]["ip"], MMIO(l["memory"]["ip"], arr)))
        self.idma0, self.odma0 = IP("idma0"), IP("odma0")
        STATE["overlay"] = self

    def compute(self, in_addr, n):
        net = self.pkg.manifest["network"]
        ref = ReferenceBackend()
        ref.open(self.pkg)
        for i, m in enumerate(self.mems):
            ref.write_words(i, 0, m)
        ref.flush()
        ib = BUFFERS[in_addr][:n]
        d = net["input"]["folded"]
        x = unpack_rows(np.array(ib), "UINT8", d[-1]).reshape(n, -1).astype(np.uint8)
        raw = ref.run(x)
        odt = net["output"]["dtype"].split("'")[1]
        ob = BUFFERS[self.odma0.regs[0x10]]
        ob[:n] = pack_rows(raw.reshape(n, *net["output"]["folded"]), odt, net["output"]["packed_bytes"][-1])


def install(monkeypatch, package, init="bitstream"):
    mod = types.ModuleType("pynq")
    mod.Overlay, mod.allocate = Overlay, allocate
    monkeypatch.setitem(sys.modules, "pynq", mod)
    LOG.clear()
    BUFFERS.clear()
    STATE.clear()
    STATE.update(package=package, init=init)
    return LOG
