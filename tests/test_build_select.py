"""SelectMetabnnMVAU on small hand-built graphs: what metabnn's MVAU RTL takes, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from metabnn.errors import MetabnnError

MW, MH = 8, 4


def mvau_model(idt: str = "BINARY", wdt: str = "BINARY", xnor: int = 1, **attrs):
    """One ``MVAU_hls`` node, x[1, MW] -> y[1, MH], as FINN's SpecializeLayers leaves it."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    attrs = dict(dict(MW=MW, MH=MH, PE=2, SIMD=4, inputDataType=idt, weightDataType=wdt, outputDataType="INT32",
                      binaryXnorMode=xnor, noActivation=1, mem_mode="internal_decoupled"), **attrs)
    node = helper.make_node("MVAU_hls", ["x", "w"], ["y"], domain="finn.custom_op.fpgadataflow.hls",
                            name="MVAU_hls_0", backend="fpgadataflow", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, MW])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, MH])])
    model = ModelWrapper(helper.make_model(g))
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2, (MW, MH)) if wdt == "BINARY" else rng.choice([-1, 1], (MW, MH))
    model.set_initializer("w", w.astype(np.float32))
    model.set_tensor_datatype("x", DataType[idt])
    model.set_tensor_datatype("w", DataType[wdt])
    return model


def select(model, tmp_path):
    from metabnn.hw.custom_op.select import SelectMetabnnMVAU
    from metabnn.hw.finn_env import finn_session

    with finn_session(tmp_path / "fw"):
        return model.transform(SelectMetabnnMVAU())


@pytest.mark.parametrize("idt,wdt,xnor", [("BINARY", "BINARY", 1), ("UINT8", "BIPOLAR", 0),
                                          ("INT4", "BIPOLAR", 0), ("BINARY", "BIPOLAR", 0)])
def test_supported_mvaus_are_selected(idt, wdt, xnor, tmp_path):
    from qonnx.custom_op.registry import getCustomOp

    from metabnn.hw.finn_env import finn_session

    model = select(mvau_model(idt, wdt, xnor), tmp_path)
    assert [n.op_type for n in model.graph.node] == ["MVAUBinary_rtl"]
    with finn_session(tmp_path / "fw"):
        cfg = getCustomOp(model.graph.node[0]).config()
    assert cfg.xnor == bool(xnor) and cfg.in_w == (1 if idt in ("BINARY",) else int(idt[-1]))


def test_bipolar_inputs_without_xnor_mode_are_refused(tmp_path):
    """FINN computes the XNOR popcount for BIPOLAR x BIPOLAR; the RTL's integer mode would read each
    packed input bit as a signed 1-bit integer (0 / -1): every output wrong. It must not be taken."""
    from metabnn.hw.custom_op.mvau_binary_rtl import MVAUBinary_rtl
    from metabnn.hw.finn_env import finn_session
    from metabnn.hw.rtl_model import pack_stream, unpack_stream

    model = mvau_model("BIPOLAR", "BIPOLAR", 0)
    with pytest.raises(MetabnnError) as e:
        select(model, tmp_path)
    msg = str(e.value)
    assert "MVAU_hls_0" in msg and "inputDataType=BIPOLAR" in msg and "binaryXnorMode=1" in msg and "\n" not in msg
    # what the RTL would have computed: the packed bit (1 for +1, 0 for -1) read as a signed 1-bit integer
    x = np.random.default_rng(1).choice([-1, 1], (1, MW))
    rtl_x = unpack_stream(pack_stream((x > 0).astype(int), 1, 4), 1, 4, signed=True)
    w = model.get_initializer("w")
    with finn_session(tmp_path / "fw"):
        finn = {"x": x.astype(np.float32), "w": w, "y": np.zeros((1, MH), np.float32)}
        rtl = MVAUBinary_rtl(model.graph.node[0])
        rtl.execute_node(finn, model.graph)  # FINN's MVAU model
        with pytest.raises(MetabnnError, match="inputDataType=BIPOLAR"):
            rtl.config()  # a saved graph holding such a node is refused too
    assert not np.array_equal(rtl_x @ w, finn["y"])


@pytest.mark.parametrize("attrs,named", [
    (dict(pumpedMemory=1), "pumpedMemory=1"),
    (dict(mem_mode="external"), "mem_mode=external"),
    (dict(mem_mode="internal_embedded"), "mem_mode=internal_embedded"),
    (dict(ram_style="ultra"), "ram_style=ultra"),
    (dict(resType="dsp"), "resType=dsp"),
    (dict(TH=2), "TH=2"),
    (dict(noActivation=0), "noActivation=0"),
])
def test_unimplemented_attributes_are_refused_by_name(attrs, named, tmp_path):
    model = mvau_model(**attrs)
    with pytest.raises(MetabnnError) as e:
        select(model, tmp_path)
    msg = str(e.value)
    attr = named.split("=")[0]
    assert msg.startswith("layer 'MVAU_hls_0': " + named) and f"supports {attr}=" in msg and "\n" not in msg


@pytest.mark.parametrize("idt,wdt,xnor,named", [
    ("BINARY", "BIPOLAR", 1, "weightDataType=BIPOLAR"),
    ("UINT8", "BINARY", 1, "inputDataType=UINT8"),
    ("BINARY", "BINARY", 0, "weightDataType=BINARY"),
    ("FLOAT32", "BIPOLAR", 0, "inputDataType=FLOAT32"),
])
def test_unimplemented_datatypes_are_refused_by_name(idt, wdt, xnor, named, tmp_path):
    with pytest.raises(MetabnnError) as e:
        select(mvau_model(idt, wdt, xnor), tmp_path)
    assert named in str(e.value) and "MVAU_hls_0" in str(e.value)


def test_wider_weights_are_left_to_finn(tmp_path):
    model = select(mvau_model("UINT8", "INT4", 0), tmp_path)
    assert [n.op_type for n in model.graph.node] == ["MVAU_hls"]
