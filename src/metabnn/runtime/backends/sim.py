"""``sim``: the Verilator simulation of the whole accelerator, behind the same calls.

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

NEEDS = ("--backend sim needs metabnn's Verilator simulation, which this installation lacks; use --backend "
         "reference, or install metabnn with its simulation")


def check_build_dir(pkg: Any, build_dir: Path, given: bool) -> None:
    """The simulated RTL lives in the BUILD_DIR the package came from, not in the package:
    refuse a directory that is not that build, naming what the user gave and the fix."""
    from metabnn.runtime.package import sha256_file

    want = pkg.manifest.get("source", {}).get("build_manifest_sha256")
    man = build_dir / "manifest.json"
    ok = man.is_file() and (build_dir / "intermediate_models").is_dir() and (want is None or sha256_file(man) == want)
    if ok:
        _check_writable(build_dir)
        return
    if given:
        raise MetabnnError(f"--build-dir '{build_dir}' is not the build '{pkg.root}' came from (no build there, or "
                           "another build's manifest.json); give the BUILD_DIR that 'metabnn build' wrote this "
                           "package into")
    raise MetabnnError(f"--backend sim simulates the RTL of the build the package came from, and '{pkg.root}' is "
                       "not inside it (a copied package holds no RTL); give --build-dir BUILD_DIR (the 'metabnn "
                       "build' output it was copied from), or use --backend reference")


def _check_writable(build_dir: Path) -> None:
    import errno
    import tempfile

    rtl = build_dir / "rtl"
    try:
        with tempfile.TemporaryFile(dir=rtl if rtl.is_dir() else build_dir, prefix=".metabnn-probe-"):
            pass
    except OSError as e:
        reason = "read-only" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else (e.strerror or str(e))
        raise MetabnnError(f"--backend sim writes the simulation model into '{rtl}', which is {reason}; make "
                           f"'{build_dir}' writable, or copy the build and give --build-dir COPY") from None


class SimBackend(Backend):
    name = "sim"

    def __init__(self, build_dir: str | Path | None = None, stalls: tuple[int, float, float] | None = None,
                 log: Any = None):
        self.build_dir = Path(build_dir) if build_dir else None
        self.stalls = stalls
        self.log = log or (lambda s: None)

    def open(self, pkg: Any) -> None:
        import time

        try:
            from metabnn.sim import runtime_top  # type: ignore[attr-defined]
        except ImportError:
            raise MetabnnError(NEEDS) from None
        build_dir = self.build_dir or pkg.root.parent
        check_build_dir(pkg, build_dir, given=self.build_dir is not None)
        self.log(f"compiling the accelerator's RTL ({build_dir}) with Verilator (cached after the first time)")
        t0 = time.perf_counter()
        self.top = runtime_top(build_dir)
        self.log(f"  simulator ready ({time.perf_counter() - t0:.1f} s)")
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
