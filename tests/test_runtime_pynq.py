"""The pynq backend against a fake PYNQ that records every MMIO and DMA call (no board here)."""

import subprocess
import sys

import numpy as np
import pytest

import fake_pynq
from metabnn.runtime import Accelerator, open_package
from metabnn.runtime import words as W
from metabnn.runtime.synthetic import make_package


@pytest.fixture()
def pkg(tmp_path):
    root = tmp_path / "deploy"
    make_package(root, (16, 16, 8, 10), [(2, 4), (1, 8), (2, 2)], n_tasks=2, seed=3)
    (root / "bitfile").mkdir()
    (root / "bitfile" / "top.bit").write_bytes(b"bit")
    (root / "bitfile" / "top.hwh").write_text("<hwh/>")
    return open_package(root)


def dma_start(name, addr, n):
    return [("write", name, 0x10, addr & 0xFFFFFFFF), ("write", name, 0x14, addr >> 32),
            ("write", name, 0x1C, n), ("write", name, 0x00, 1)]


def test_fresh_board_gets_every_word_and_outputs_match_reference(pkg, monkeypatch):
    log = fake_pynq.install(monkeypatch, pkg, init="zeros")  # memories the bitstream does not initialise
    acc = Accelerator.open(pkg.root, backend="pynq", task=1)
    assert log[0] == ("Overlay", str(pkg.root / "bitfile" / "top.bit"), True)  # nothing was loaded: download
    for l, mem, img in zip(pkg.layers, fake_pynq.memories(pkg), pkg.image(1)):
        assert np.array_equal(mem, img), l["name"]
        writes = [e for e in log if e[0] == "write_mm" and e[1] == l["memory"]["ip"]]
        assert writes and all(e[2] % 4 == 0 for e in writes)
    x = np.random.default_rng(0).integers(0, 256, (7, 16)).astype(np.uint8)
    ref = Accelerator.open(pkg.root, backend="reference", task=1)
    res, want = acc.infer(x, batch_size=3), ref.infer(x)
    assert np.array_equal(res.raw, want.raw) and np.array_equal(res.classes, want.classes)


def test_exact_register_writes(pkg, monkeypatch):
    """Bitstream-initialised board (task 0): task 1 rewrites exactly the changed threshold words."""
    # Make task 1 differ from task 0 in exactly words 2 and 9 of the first threshold memory.
    t0 = pkg.image(0)
    th = next(l for l in pkg.layers if l["kind"] == "thresholding")
    new = t0[th["index"]].copy()
    new[2] ^= 1
    new[9] ^= 2
    for l in pkg.layers:
        if l["kind"] == "thresholding":
            words = new if l is th else t0[l["index"]]
            (pkg.root / "tasks/1/runtime_weights" / l["memory"]["file"]).write_text(W.dat_text(words))
    from metabnn.runtime.package import listed_files, MANIFEST
    import json
    pkg.manifest["files"] = listed_files(pkg.root)
    (pkg.root / MANIFEST).write_text(json.dumps(pkg.manifest))
    pkg = open_package(pkg.root)

    log = fake_pynq.install(monkeypatch, pkg, init="bitstream")
    acc = Accelerator.open(pkg.root, backend="pynq", task=0)
    assert [e for e in log if e[0] == "write_mm"] == []  # the bitstream already holds task 0
    ibuf, obuf = [e[2] for e in log if e[0] == "allocate"]
    assert [e for e in log if e[0] == "write"] == dma_start("odma0", obuf, 1) + dma_start("idma0", ibuf, 1)
    log.clear()
    acc.select_task(1)
    ip = th["memory"]["ip"]
    assert [e for e in log if e[0] == "write_mm"] == [
        ("write_mm", ip, 8, new[2:3].tobytes()), ("write_mm", ip, 36, new[9:10].tobytes())]
    # then one dummy inference flushes the weight streamers (FINN's driver does the same)
    flush = [e for e in log if e[0] in ("write", "flush", "invalidate")]
    assert flush == [("flush", ibuf)] + dma_start("odma0", obuf, 1) + dma_start("idma0", ibuf, 1)
    log.clear()
    x = np.arange(3 * 16, dtype=np.uint8).reshape(3, 16)
    acc.infer(x)
    assert [e for e in log if e[0] != "read"] == (
        [("flush", ibuf)] + dma_start("odma0", obuf, 3) + dma_start("idma0", ibuf, 3) + [("invalidate", obuf)])
    assert [e for e in log if e[0] == "read"][0] == ("read", "odma0", 0)  # idle check before starting
    assert np.array_equal(np.array(fake_pynq.BUFFERS[ibuf][:3]).reshape(3, -1), x)  # UINT8: bytes in order


def test_readback_mismatch_is_refused(pkg, monkeypatch):
    fake_pynq.install(monkeypatch, pkg, init="zeros")
    real = fake_pynq.MMIO.write_mm

    def stuck_bit(self, offset, data):  # a memory that drops one bit
        real(self, offset, data)
        self.array[offset // 4] &= ~np.uint32(1)

    monkeypatch.setattr(fake_pynq.MMIO, "write_mm", stuck_bit)
    from metabnn.errors import MetabnnError
    with pytest.raises(MetabnnError, match="read-back of .* differs"):
        Accelerator.open(pkg.root, backend="pynq")


def test_pynq_backend_imports_without_torch_or_finn(pkg, tmp_path):
    """What runs on the board: no torch, FINN, onnx or qonnx are imported."""
    code = ("import sys, fake_pynq, types\n"
            "from metabnn.runtime import Accelerator, open_package\n"
            "from metabnn.runtime.backends.pynq_board import PynqBackend\n"
            "bad = [m for m in ('torch', 'finn', 'onnx', 'qonnx', 'brevitas') if m in sys.modules]\n"
            "print('HEAVY', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(tmp_path), env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).parent),
                                                 "PATH": "/usr/bin:/bin"})
    assert "HEAVY []" in out.stdout, out.stderr
