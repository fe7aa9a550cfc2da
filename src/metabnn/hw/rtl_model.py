"""Golden model of ``rtl/mvau_bin.sv`` and the bit layouts its ports use.

Weights are in FINN's ONNX orientation ``[MW, MH]``: 0/1 in XNOR mode (FINN's BINARY
weights after ConvertBipolarMatMulToXnorPopcount), ±1 (BIPOLAR) in integer mode; inputs
``[N, MW]``. The memory-line and AXI-lite word layouts are FINN's (``make_weight_file``
with ``decoupled_runtime``), so FINN's runtime_weights .dat files load unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from metabnn.errors import MetabnnError


def mvau_acc(x: np.ndarray, w: np.ndarray, xnor: bool) -> np.ndarray:
    """Accumulators [N, MH]: popcount(xnor(x, w)) or x @ w (w bipolar)."""
    x, w = np.asarray(x, np.int64), np.asarray(w, np.int64)
    if xnor:
        return x @ w + (1 - x) @ (1 - w)
    return x @ w


def apply_thresholds(acc: np.ndarray, thr: np.ndarray | None) -> np.ndarray:
    """FINN's MultiThreshold: per neuron the number of thresholds ``t`` with ``acc >= t``."""
    if thr is None:
        return np.asarray(acc, np.int64)
    thr = np.asarray(thr, np.int64)
    return (np.asarray(acc, np.int64)[:, :, None] >= thr[None]).sum(axis=2)


def _bits_to_ints(bits: np.ndarray) -> list[int]:
    """Rows of bits (LSB first) -> Python ints."""
    packed = np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")
    return [int.from_bytes(r.tobytes(), "little") for r in packed]


def weight_lines(w: np.ndarray, pe: int, simd: int) -> list[int]:
    """Weight memory lines: line nf*SF + sf, bit p*SIMD + s = weight of neuron nf*PE + p, input sf*SIMD + s."""
    w = np.asarray(w)
    mw, mh = w.shape
    if mw % simd or mh % pe:
        raise MetabnnError(f"SIMD {simd} must divide MW {mw} and PE {pe} must divide MH {mh}")
    bits = (w > 0).T.reshape(mh // pe, pe, mw // simd, simd).transpose(0, 2, 1, 3)
    return _bits_to_ints(bits.reshape(-1, pe * simd))


def threshold_lines(thr: np.ndarray, pe: int, acc_w: int) -> list[int]:
    """Threshold memory lines: line nf, element (p, t) at bits [(p*T + t)*acc_w +: acc_w]."""
    thr = np.asarray(thr, np.int64)
    mh, t = thr.shape
    vals = (thr & ((1 << acc_w) - 1)).reshape(mh // pe, pe * t)
    bits = (vals[:, :, None] >> np.arange(acc_w)) & 1
    return _bits_to_ints(bits.reshape(mh // pe, -1))


def words_per_line(width: int) -> int:
    """32-bit AXI-lite words per memory line (memstream: rounded up to a power of 2)."""
    return 2 ** math.ceil(math.log2(max(1, -(-width // 32))))


def lines_to_words(lines: list[int], width: int) -> list[int]:
    """AXI-lite words of memory lines, in address order (word 0 = least significant 32 bits)."""
    wpl = words_per_line(width)
    return [(line >> (32 * j)) & 0xFFFFFFFF for line in lines for j in range(wpl)]


def axi_addr_bits(depth: int, width: int) -> int:
    """Byte-address bits of one memory (memstream_axi's AXILITE_ADDR_WIDTH)."""
    return math.ceil(math.log2(depth * words_per_line(width))) + 2


def pack_stream(elems: np.ndarray, bits: int, per_word: int) -> bytes:
    """AXI-Stream bytes: ``per_word`` elements per word, element 0 at the LSB, words byte-padded."""
    e = np.asarray(elems).astype(np.int64).reshape(-1)
    if e.size % per_word:
        raise MetabnnError(f"{e.size} elements do not fill words of {per_word}")
    nbytes = -(-(bits * per_word) // 8)
    if bits == 8:
        return (e & 0xFF).astype(np.uint8).tobytes()
    out = []
    n_words = e.size // per_word
    chunk = max(1, (1 << 24) // max(1, bits * per_word))
    for i in range(0, n_words, chunk):
        v = (e[i * per_word:(i + chunk) * per_word] & ((1 << bits) - 1)).astype(np.uint64)
        b = ((v[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
        b = b.reshape(-1, per_word * bits)
        pad = nbytes * 8 - per_word * bits
        if pad:
            b = np.concatenate([b, np.zeros((len(b), pad), np.uint8)], axis=1)
        out.append(np.packbits(b, axis=1, bitorder="little").tobytes())
    return b"".join(out)


def unpack_stream(data: bytes, bits: int, per_word: int, signed: bool = False) -> np.ndarray:
    """Inverse of ``pack_stream``: the elements, in stream order."""
    nbytes = -(-(bits * per_word) // 8)
    raw = np.frombuffer(data, np.uint8).reshape(-1, nbytes)
    b = np.unpackbits(raw, axis=1, bitorder="little")[:, :bits * per_word].reshape(-1, bits).astype(np.int64)
    v = (b << np.arange(bits)).sum(axis=1)
    if signed:
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return v


class MvauConfig:
    """Parameters of one ``mvau_bin`` instance and the numbers derived from them."""

    def __init__(self, mw: int, mh: int, pe: int, simd: int, xnor: bool, in_w: int = 1,
                 in_signed: bool = False, n_thres: int = 0, acc_w: int | None = None,
                 out_w: int | None = None):
        if mw % simd or mh % pe:
            raise MetabnnError(f"SIMD {simd} must divide MW {mw} and PE {pe} must divide MH {mh}")
        if xnor and in_w != 1:
            raise MetabnnError("XNOR mode takes 1-bit inputs")
        self.mw, self.mh, self.pe, self.simd, self.xnor = mw, mh, pe, simd, bool(xnor)
        self.in_w, self.in_signed, self.n_thres = in_w, bool(in_signed), n_thres
        self.acc_signed = not self.xnor
        if self.xnor:
            need = mw.bit_length()  # popcount 0..MW
        else:
            big = mw * (2 ** (in_w - 1) if in_signed else 2 ** in_w - 1)
            need = big.bit_length() + 1
        self.acc_w = acc_w or need
        if self.acc_w < need:
            raise MetabnnError(f"accumulator of {self.acc_w} bits cannot hold {need}-bit sums")
        self.out_w = out_w or (self.acc_w if n_thres == 0 else max(1, n_thres.bit_length()))

    @property
    def sf(self) -> int:
        return self.mw // self.simd

    @property
    def nf(self) -> int:
        return self.mh // self.pe

    @property
    def in_bytes(self) -> int:
        return -(-(self.simd * self.in_w) // 8)

    @property
    def out_bytes(self) -> int:
        return -(-(self.pe * self.out_w) // 8)

    @property
    def weight_width(self) -> int:
        return self.pe * self.simd

    @property
    def thres_width(self) -> int:
        return self.pe * self.n_thres * self.acc_w

    @property
    def axi_addr_bits(self) -> int:
        w = axi_addr_bits(self.sf * self.nf, self.weight_width)
        if self.n_thres == 0:
            return w
        return max(w, axi_addr_bits(self.nf, self.thres_width)) + 1

    @property
    def thres_base(self) -> int:
        return 1 << (self.axi_addr_bits - 1)

    def params(self) -> dict[str, int]:
        """Verilog parameters of ``mvau_bin``."""
        return {"MW": self.mw, "MH": self.mh, "PE": self.pe, "SIMD": self.simd, "XNOR": int(self.xnor),
                "IN_W": self.in_w, "IN_SIGNED": int(self.in_signed), "ACC_W": self.acc_w,
                "ACC_SIGNED": int(self.acc_signed), "N_THRES": self.n_thres, "OUT_W": self.out_w}

    def weight_words(self, w: np.ndarray) -> list[int]:
        return lines_to_words(weight_lines(w, self.pe, self.simd), self.weight_width)

    def thres_words(self, thr: np.ndarray) -> list[int]:
        return lines_to_words(threshold_lines(thr, self.pe, self.acc_w), self.thres_width)

    def expected(self, x: np.ndarray, w: np.ndarray, thr: np.ndarray | None) -> np.ndarray:
        return apply_thresholds(mvau_acc(x, w, self.xnor), thr if self.n_thres else None)
