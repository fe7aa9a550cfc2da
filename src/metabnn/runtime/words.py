"""FINN's ``decoupled_runtime`` memory images: 32-bit words <-> weights and thresholds.

numpy only (no FINN, no torch), so the board can decode and re-encode what it writes.
The layouts are FINN's (finn-plus 1.6.1 ``make_weight_file``); tests compare them with
FINN's own files word for word.

MVAU weights (``mem_mode=internal_decoupled``): one memory line per (neuron fold ``nf``,
synapse fold ``sf``), line ``m = nf * SF + sf`` with ``SF = MW / SIMD``. The line is one
``PE * SIMD * bits``-bit integer whose bit ``(p * SIMD + s) * bits`` (from the LSB) holds the
weight of neuron ``nf * PE + p`` for input ``sf * SIMD + s``, zero-padded to a power of two
times 32 bits and stored least significant 32-bit word first.

Thresholding_rtl thresholds: per channel fold ``f`` there are ``2**ceil(log2 PE)`` slots
(the first ``PE`` used), each holding ``2**ceil(log2 numSteps)`` thresholds, one 32-bit word
each (two's complement of the threshold type, zero-extended), channel ``f * PE + c``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from metabnn.errors import MetabnnError


def dtype_bits(name: str) -> tuple[int, bool]:
    """(bit width, signed) of a FINN integer DataType name (BINARY, BIPOLAR, UINT8, INT19, ...)."""
    if name in ("BINARY", "BIPOLAR"):
        return 1, False
    if name.startswith("UINT"):
        return int(name[4:]), False
    if name.startswith("INT"):
        return int(name[3:]), True
    raise MetabnnError(f"data type {name!r} is not an integer type the runtime supports")


def dtype_range(name: str) -> tuple[int, int]:
    if name == "BIPOLAR":
        return -1, 1
    bits, signed = dtype_bits(name)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# ---- MVAU weights ------------------------------------------------------------------------

def mvau_geometry(mem: Mapping[str, Any]) -> tuple[int, int, int]:
    """(lines, 32-bit words per line, used bits per line) of an MVAU weight memory."""
    mw, mh, pe, simd = (int(mem[k]) for k in ("mw", "mh", "pe", "simd"))
    if mw % simd or mh % pe:
        raise MetabnnError(f"layer {mem.get('name')}: MW={mw} % SIMD={simd} or MH={mh} % PE={pe} is not 0")
    wbits = dtype_bits(mem["weight_dtype"])[0]
    width = pe * simd * wbits
    wpl = max(1, 2 ** math.ceil(math.log2(width / 32)))
    return (mw // simd) * (mh // pe), wpl, width


def encode_mvau(weights: np.ndarray, mem: Mapping[str, Any]) -> np.ndarray:
    """uint32 words of an MVAU weight matrix ``[MW, MH]`` (the graph's form: 0/1 or ±1)."""
    mw, mh, pe, simd = (int(mem[k]) for k in ("mw", "mh", "pe", "simd"))
    w = np.asarray(weights)
    if w.shape != (mw, mh):
        raise MetabnnError(f"layer {mem.get('name')}: weights {list(w.shape)} are not [MW={mw}, MH={mh}]")
    if dtype_bits(mem["weight_dtype"])[0] != 1:
        raise MetabnnError(f"layer {mem.get('name')}: only 1-bit weights are supported, not {mem['weight_dtype']}")
    bits = (w > 0).astype(np.uint8).T  # [MH, MW]; bipolar -1 -> 0 as FINN stores it
    lines, wpl, _ = mvau_geometry(mem)
    nf, sf = mh // pe, mw // simd
    # neuron nf*PE+p, input sf*SIMD+s  ->  line nf*SF+sf, bit p*SIMD+s
    b = bits.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3).reshape(lines, pe * simd)
    padded = np.zeros((lines, wpl * 32), dtype=np.uint8)
    padded[:, :pe * simd] = b
    return np.packbits(padded, axis=1, bitorder="little").view("<u4").reshape(-1).astype(np.uint32)


def decode_mvau(words: np.ndarray, mem: Mapping[str, Any]) -> np.ndarray:
    """The 0/1 weight bits ``[MW, MH]`` (1 = +1 for bipolar weights) of an MVAU memory image."""
    mw, mh, pe, simd = (int(mem[k]) for k in ("mw", "mh", "pe", "simd"))
    lines, wpl, _ = mvau_geometry(mem)
    words = np.ascontiguousarray(words, dtype="<u4")
    if words.size != lines * wpl:
        raise MetabnnError(f"layer {mem.get('name')}: {words.size} words, the memory holds {lines * wpl}")
    bits = np.unpackbits(words.reshape(lines, wpl).view(np.uint8), axis=1, bitorder="little")[:, :pe * simd]
    nf, sf = mh // pe, mw // simd
    return bits.reshape(nf, sf, pe, simd).transpose(0, 2, 1, 3).reshape(mh, mw).T


# ---- thresholds --------------------------------------------------------------------------

def threshold_geometry(mem: Mapping[str, Any]) -> tuple[int, int, int]:
    """(channel folds, slots per fold, words per slot) of a Thresholding_rtl memory."""
    ch, pe, steps = int(mem["num_channels"]), int(mem["pe"]), int(mem["num_steps"])
    if ch % pe:
        raise MetabnnError(f"layer {mem.get('name')}: NumChannels={ch} % PE={pe} is not 0")
    return ch // pe, 2 ** (pe - 1).bit_length(), 1 << max(0, math.ceil(math.log2(steps)))


def threshold_words(mem: Mapping[str, Any]) -> int:
    f, slots, wps = threshold_geometry(mem)
    return f * slots * wps


def encode_thresholds(thr: np.ndarray, mem: Mapping[str, Any]) -> np.ndarray:
    """uint32 words of thresholds ``[NumChannels, numSteps]`` (integers of ``weight_dtype``)."""
    ch, pe, steps = int(mem["num_channels"]), int(mem["pe"]), int(mem["num_steps"])
    t = np.asarray(thr).astype(np.int64).reshape(ch, -1)
    if t.shape[1] != steps:
        raise MetabnnError(f"layer {mem.get('name')}: {t.shape[1]} thresholds per channel, the layer has {steps}")
    lo, hi = dtype_range(mem["weight_dtype"])
    if t.min(initial=lo) < lo or t.max(initial=hi) > hi:
        raise MetabnnError(f"layer {mem.get('name')}: thresholds outside {mem['weight_dtype']} [{lo}, {hi}]")
    bits = dtype_bits(mem["weight_dtype"])[0]
    if bits > 32:
        raise MetabnnError(f"layer {mem.get('name')}: thresholds wider than 32 bits are not supported")
    folds, slots, wps = threshold_geometry(mem)
    out = np.zeros((folds, slots, wps), dtype=np.int64)
    out[:, :pe, :steps] = t.reshape(folds, pe, steps)
    return (out.reshape(-1) & ((1 << bits) - 1)).astype(np.uint32)


def decode_thresholds(words: np.ndarray, mem: Mapping[str, Any]) -> np.ndarray:
    """Thresholds ``[NumChannels, numSteps]`` (int64) of a Thresholding_rtl memory image."""
    pe, steps = int(mem["pe"]), int(mem["num_steps"])
    folds, slots, wps = threshold_geometry(mem)
    words = np.asarray(words, dtype=np.int64)
    if words.size != folds * slots * wps:
        raise MetabnnError(f"layer {mem.get('name')}: {words.size} words, the memory holds {folds * slots * wps}")
    bits, signed = dtype_bits(mem["weight_dtype"])
    v = words & ((1 << bits) - 1)
    if signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v.reshape(folds, slots, wps)[:, :pe, :steps].reshape(folds * pe, steps)


def memory_words(mem: Mapping[str, Any]) -> int:
    """Size in 32-bit words of a layer's runtime memory."""
    if mem["kind"] == "mvau":
        lines, wpl, _ = mvau_geometry(mem)
        return lines * wpl
    return threshold_words(mem)


# ---- .dat files (FINN's text form: one 8-digit hex word per line) --------------------------

def read_dat(path: Path) -> np.ndarray:
    try:
        text = Path(path).read_text()
        return np.array([int(x, 16) for x in text.split()], dtype=np.uint32)
    except (OSError, ValueError) as e:
        raise MetabnnError(f"'{path}' is not a readable runtime weight file ({type(e).__name__}); "
                           "rebuild the deployment package") from None


def dat_text(words: np.ndarray) -> str:
    return "".join(f"{int(w):08x}\n" for w in np.asarray(words, dtype=np.uint32))
