"""Host runtime without a build: FINN's memory layouts, the package checks, the backends' contract."""

import json

import numpy as np
import pytest

from metabnn.errors import MetabnnError
from metabnn.runtime import Accelerator, open_package
from metabnn.runtime import words as W
from metabnn.runtime.synthetic import make_package


@pytest.fixture()
def pkg_dir(tmp_path):
    make_package(tmp_path / "deploy", (64, 16, 12, 10), [(4, 8), (2, 4), (5, 2)], n_tasks=2, seed=1)
    return tmp_path / "deploy"


@pytest.mark.parametrize("mw,mh,pe,simd,wdt,xnor", [
    (784, 32, 1, 7, "BIPOLAR", 0), (48, 24, 4, 16, "BINARY", 1), (64, 30, 3, 64, "BINARY", 1),
    (40, 10, 10, 40, "BINARY", 1), (8, 4, 2, 2, "BIPOLAR", 0)])
def test_mvau_words_equal_finn(tmp_path, mw, mh, pe, simd, wdt, xnor):
    """Our encoder writes FINN's own decoupled_runtime .dat word for word (wide lines included)."""
    from onnx import helper
    from qonnx.custom_op.registry import getCustomOp

    from metabnn.hw.finn_env import finn_session

    with finn_session(tmp_path / "fw"):
        node = helper.make_node("MVAU_hls", ["x", "w"], ["y"], domain="finn.custom_op.fpgadataflow.hls",
                                backend="fpgadataflow", MW=mw, MH=mh, PE=pe, SIMD=simd,
                                inputDataType="BINARY" if xnor else "UINT8", weightDataType=wdt,
                                outputDataType="UINT32", binaryXnorMode=xnor, noActivation=1,
                                mem_mode="internal_decoupled", runtime_writeable_weights=1)
        rng = np.random.default_rng(mw + pe)
        w = rng.integers(0, 2, (mw, mh)).astype(np.float32)
        if wdt == "BIPOLAR":
            w = 2 * w - 1
        getCustomOp(node).make_weight_file(w, "decoupled_runtime", str(tmp_path / "w.dat"))
    mem = {"kind": "mvau", "name": "m", "mw": mw, "mh": mh, "pe": pe, "simd": simd, "weight_dtype": wdt}
    finn_words = W.read_dat(tmp_path / "w.dat")
    assert np.array_equal(W.encode_mvau(w, mem), finn_words)
    assert np.array_equal(W.decode_mvau(finn_words, mem), (w > 0).astype(np.uint8))


@pytest.mark.parametrize("ch,pe,steps,wdt", [(32, 1, 1, "INT19"), (30, 3, 1, "UINT6"), (16, 4, 3, "INT8"),
                                              (12, 2, 1, "INT32")])
def test_threshold_words_equal_finn(tmp_path, ch, pe, steps, wdt):
    from onnx import helper
    from qonnx.custom_op.registry import getCustomOp

    from metabnn.hw.finn_env import finn_session

    lo, hi = W.dtype_range(wdt)
    rng = np.random.default_rng(ch)
    t = np.sort(rng.integers(max(lo, -10 ** 6), min(hi, 10 ** 6), (ch, steps)), axis=1).astype(np.float32)
    with finn_session(tmp_path / "fw"):
        node = helper.make_node("Thresholding_rtl", ["x", "t"], ["y"], domain="finn.custom_op.fpgadataflow.rtl",
                                backend="fpgadataflow", NumChannels=ch, PE=pe, numSteps=steps,
                                inputDataType=wdt, weightDataType=wdt,
                                outputDataType="BINARY" if steps == 1 else "UINT2", ActVal=0,
                                runtime_writeable_weights=1)
        getCustomOp(node).make_weight_file(t, "decoupled_runtime", str(tmp_path / "t.dat"))
    mem = {"kind": "thresholding", "name": "t", "num_channels": ch, "pe": pe, "num_steps": steps, "weight_dtype": wdt}
    finn_words = W.read_dat(tmp_path / "t.dat")
    assert np.array_equal(W.encode_thresholds(t, mem), finn_words)
    assert np.array_equal(W.decode_thresholds(finn_words, mem), t.astype(np.int64))


@pytest.mark.parametrize("dt,k", [("UINT8", 7), ("UINT4", 5), ("INT11", 3), ("BINARY", 12), ("UINT16", 2)])
def test_dma_packing_equals_finn(dt, k):
    from finn.util.data_packing import finnpy_to_packed_bytearray
    from qonnx.core.datatype import DataType

    from metabnn.runtime.backends.pynq_board import pack_rows, unpack_rows

    lo, hi = W.dtype_range(dt)
    x = np.random.default_rng(k).integers(lo, hi + 1, (3, 4, k))
    finn = finnpy_to_packed_bytearray(x.astype(np.float32), DataType[dt], reverse_endian=True, reverse_inner=True)
    ours = pack_rows(x, dt, finn.shape[-1])
    assert np.array_equal(ours, finn)
    assert np.array_equal(unpack_rows(ours, dt, k), x)


def test_reference_matches_direct_integer_model(pkg_dir):
    """Decode the package's words independently of the backend and run the layers in plain integers."""
    acc = Accelerator.open(pkg_dir, task=1)
    x = np.random.default_rng(0).integers(0, 256, (300, 64)).astype(np.uint8)
    res = acc.infer(x, batch_size=64)
    v = x.astype(np.int64)
    for l, words in zip(acc.pkg.layers, acc.pkg.image(1)):
        if l["kind"] == "mvau":
            w = W.decode_mvau(words, l).astype(np.int64)
            v = ((v[:, :, None] == w[None]).sum(1) if l["xnor"] else v @ (2 * w - 1))
        else:
            v = (v >= W.decode_thresholds(words, l)[:, 0]).astype(np.int64)
    assert np.array_equal(res.raw, v)
    scale, bias = acc.pkg.host_affine(1)
    logits = (2 * v - 12).astype(np.float32) * scale + bias
    assert np.array_equal(res.classes, logits.argmax(1))
    assert res.stats["images"] == 300 and res.stats["batches"] == 5 and res.stats["images_per_s"] > 0
    acc.select_task(0)
    assert not np.array_equal(acc.infer(x).raw, v)  # task 0's thresholds really differ


def test_select_task_writes_only_changed_words(pkg_dir):
    acc = Accelerator.open(pkg_dir, task=0)
    assert sum(acc.last_sync.values()) == sum(l["memory"]["words"] for l in acc.pkg.layers)  # blank model
    written = acc.select_task(1)
    assert all(written[l["name"]] == 0 for l in acc.pkg.layers if l["kind"] == "mvau")
    diff = {l["name"]: int((a != b).sum()) for l, a, b in zip(acc.pkg.layers, acc.pkg.image(0), acc.pkg.image(1))}
    for name, n in written.items():
        assert diff[name] <= n <= diff[name] + 4 * diff[name]  # changed words, nearby runs merged
    assert acc.select_task(1) == {l["name"]: 0 for l in acc.pkg.layers}


def test_write_read_layer_and_no_inference_from_half_written_memories(pkg_dir, monkeypatch):
    acc = Accelerator.open(pkg_dir)
    w = acc.read_layer("MVAU_hls_1")
    w2 = w.copy()
    w2[3:5] ^= 0xFFFF
    assert acc.write_layer("MVAU_hls_1", w2[3:5], offset=3) == 2
    assert np.array_equal(acc.read_layer("MVAU_hls_1"), w2) and acc.status()["modified_layers"] == ["MVAU_hls_1"]
    # A device write that dies half-way leaves the accelerator refusing inference.
    calls = {"n": 0}
    real = acc.backend.write_words

    def failing(mem, off, words):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("bus error")
        real(mem, off, words)

    monkeypatch.setattr(acc.backend, "write_words", failing)
    with pytest.raises(OSError):
        acc.select_task(1)
    with pytest.raises(MetabnnError, match="no inference"):
        acc.infer(np.zeros((1, 64), np.uint8))
    monkeypatch.setattr(acc.backend, "write_words", real)
    acc.select_task(1)
    assert acc.status()["consistent"] and acc.status()["modified_layers"] == []
    with pytest.raises(MetabnnError, match="no runtime memory"):
        acc.read_layer("nope")
    with pytest.raises(MetabnnError, match="outside"):
        acc.write_layer(0, np.zeros(3, np.uint32), offset=10 ** 6)


def test_bad_images_tasks_backends(pkg_dir):
    with pytest.raises(MetabnnError, match="unknown backend"):
        Accelerator.open(pkg_dir, backend="fpga")
    import metabnn.sim
    if not hasattr(metabnn.sim, "runtime_top"):  # until issue 4 provides it, the adapter says what it needs
        with pytest.raises(MetabnnError, match="needs metabnn.s Verilator simulation"):
            Accelerator.open(pkg_dir, backend="sim")
    acc = Accelerator.open(pkg_dir)
    with pytest.raises(MetabnnError, match=r"uint8 \[N, 64\]"):
        acc.infer(np.zeros((2, 63), np.uint8))
    with pytest.raises(MetabnnError, match="task 5 is not in"):
        acc.select_task(5)


def test_corrupt_or_foreign_packages_are_refused(pkg_dir, tmp_path):
    f = next((pkg_dir / "tasks/1/runtime_weights").glob("*.dat"))
    f.write_text(f.read_text().replace("0", "1", 1))
    with pytest.raises(MetabnnError) as e:
        open_package(pkg_dir)
    assert "corrupt" in str(e.value) and f.name in str(e.value) and "\n" not in str(e.value)
    f.unlink()
    with pytest.raises(MetabnnError, match="lacks tasks/1"):
        open_package(pkg_dir)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text(json.dumps({"artifact": "metabnn-export"}))
    with pytest.raises(MetabnnError, match="not a metabnn deployment"):
        open_package(tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetabnnError, match="has no manifest.json"):
        open_package(tmp_path / "empty")
    with pytest.raises(MetabnnError, match="not a directory"):
        Accelerator.open(tmp_path / "nope")
