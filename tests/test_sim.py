"""The whole accelerator in Verilator: a tiny trained network, built, simulated image by image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metabnn.errors import MetabnnError


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_build):
    """A copy of the shared build: sim writes sim.json and rtl/ into it, synth report.json."""
    import shutil

    out = tmp_path_factory.mktemp("sim") / "build"
    shutil.copytree(tiny_build, out)
    return out


@pytest.mark.slow
def test_every_task_agrees_and_cycles_match_finn(built):
    from metabnn.sim import simulate

    report = json.loads((built / "report.json").read_text())
    for task in range(2):
        r = simulate(built, task, 300, progress=False)
        assert r["images"] == r["agree"] == 300, r["mismatched_images"]
        assert json.loads((built / "sim.json").read_text()) == json.loads(json.dumps(r))
        for k in ("images", "agree", "accuracy", "cycles", "cycles_per_image", "latency_cycles", "layers", "fps",
                  "estimate_cycles_per_image", "sim_cycles_per_s"):
            assert k in r
        est = r["estimate_cycles_per_image"]
        assert est == max(l["cycles"] for l in report["layers"])
        assert abs(r["cycles_per_image"] - est) <= 0.1 * est
        assert r["fps"] == pytest.approx(1e9 / report["clock_ns"] / r["cycles_per_image"])
        assert r["latency_cycles"] > r["cycles_per_image"] and 50 < r["accuracy"] <= 100  # percent
        for layer in r["layers"]:  # each FINN layer runs at FINN's predicted rate
            if layer["estimate_cycles"] is not None:
                assert layer["ii"] == pytest.approx(layer["estimate_cycles"], rel=0.1), layer
    assert (built / "rtl" / "metabnn_top.sv").is_file()
    amap = json.loads((built / "rtl" / "address_map.json").read_text())
    shared = sorted(p.stem for p in (built / "deploy" / "driver" / "runtime_weights").glob("*.dat"))
    assert sorted(amap["runtime"]) == shared


@pytest.mark.slow
def test_all_tasks_in_one_sim_json(built):
    from metabnn.sim import simulate_all

    r = simulate_all(built, 50, progress=False, jobs=2)  # both tasks at once
    assert r["images"] == r["agree"] == 100 and [t["task"] for t in r["tasks"]] == [0, 1]
    assert r["accuracy_per_task"] == [t["accuracy"] for t in r["tasks"]] and r["jobs"] == 2
    assert json.loads((built / "sim.json").read_text()) == json.loads(json.dumps(r))
    one = simulate_all(built, 50, progress=False, jobs=1)
    assert [t["agree"] for t in one["tasks"]] == [t["agree"] for t in r["tasks"]]
    with pytest.raises(MetabnnError, match="jobs"):
        simulate_all(built, 50, progress=False, jobs=0)


@pytest.mark.slow
def test_random_stalls_change_no_result(built):
    from metabnn.sim import simulate

    r = simulate(built, 1, 120, stalls=True, progress=False)
    assert r["stalls"] and r["agree"] == r["images"] == 120


@pytest.mark.slow
def test_task_switch_mid_run_and_initial_memories(built, tmp_path):
    """Memories start with FINN's init files (task 0); the task-1 files written mid-run read back
    exactly and the very next images follow them; writing task 0's files switches back."""
    from metabnn.sim import Accelerator
    from metabnn.sim.session import Session

    accel = Accelerator(built)
    x, _ = accel.art.test_set(0, 80)
    ref = [accel.art.reference_predict(x, k) for k in range(2)]
    assert not np.array_equal(ref[0], ref[1])
    data = accel.pack(x)
    sess = Session(accel.exe, accel.in_bytes, accel.out_bytes)
    sess.reset()
    sess.stream(data, accel.words_per_image * len(x))  # nothing written yet: the bitstream's contents
    want = accel.load(sess, 1, only_task_files=True)
    sess.stalls(5, 0.2, 0.5)
    sess.stream(data, accel.words_per_image * len(x))
    want += accel.load(sess, 0)  # all files: task 1 may have had its own weight rows
    sess.stream(data, accel.words_per_image * len(x))
    res = sess.run(tmp_path)
    accel.check_readback(res.reads, want)
    for s, task in zip(res.streams, (0, 1, 0)):
        assert np.array_equal(accel.predict(s.out, len(x), task), ref[task])


@pytest.mark.slow
def test_bad_task_and_count(built):
    from metabnn.sim import simulate

    with pytest.raises(MetabnnError, match="task index 7 is not in this build"):
        simulate(built, 7, 10, progress=False)
    with pytest.raises(MetabnnError, match="positive number of test images"):
        simulate(built, 0, 0, progress=False)


def test_not_a_build_dir(tmp_path):
    from metabnn.sim import simulate

    with pytest.raises(MetabnnError, match="not a BUILD_DIR"):
        simulate(tmp_path, 0, 10, progress=False)
    (tmp_path / "manifest.json").write_text('{"artifact": "metabnn-export"}')
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(MetabnnError, match="not a BUILD_DIR"):
        simulate(tmp_path, 0, 10, progress=False)
    assert not (tmp_path / "sim.json").exists()


@pytest.mark.slow
def test_one_bit_input_network(tmp_path, mnist_available):
    """1-bit input: a Thresholding layer (pixel >= 128) first, then XNOR layers only."""
    from conftest import run_cli, tiny_args
    from metabnn.export import export_run
    from metabnn.hw.build import build
    from metabnn.sim import simulate

    run_cli("train", *tiny_args("model.input_bits=1"), "--out", str(tmp_path / "run"))
    export_run(tmp_path / "run", tmp_path / "export", progress=False, limit=150)
    build(tmp_path / "export", tmp_path / "build", "pynq-z2", 50000, verify_limit=150, progress=False)
    r = simulate(tmp_path / "build", 1, 150, stalls=True, progress=False)
    assert r["layers"][0]["op_type"] == "Thresholding_rtl"
    assert r["agree"] == r["images"] == 150
    assert abs(r["cycles_per_image"] - r["estimate_cycles_per_image"]) <= 0.1 * r["estimate_cycles_per_image"]


@pytest.mark.slow
def test_yosys_resources_in_report(built):
    from metabnn.hw.synth import synth

    before = json.loads((built / "report.json").read_text())
    s = synth(built, progress=False)
    r = json.loads((built / "report.json").read_text())
    assert r["synth"] == json.loads(json.dumps(s))
    assert {k: v for k, v in r.items() if k != "synth"} == {k: v for k, v in before.items() if k != "synth"}
    mvau = [l for l in s["layers"] if l["op_type"] == "MVAUBinary_rtl"]
    assert len(mvau) == 3 and all(l["source"] == "yosys" and l["LUT"] > 0 and l["FF"] > 0 for l in mvau)
    assert all(l["finn_lut_estimate"] > 0 for l in mvau)
    assert s["totals"]["LUT"] > sum(l["LUT"] for l in mvau) and s["fits"]


def test_resource_counts_from_cells():
    from metabnn.hw.synth import counts

    c = counts({"LUT2": 3, "LUT6": 2, "INV": 1, "RAM32M": 2, "FDRE": 7, "FDSE": 1, "CARRY4": 4, "RAMB36E1": 1,
                "RAMB18E1": 3, "IBUF": 9})
    assert c == {"LUT": 14, "LUTRAM": 8, "FF": 8, "CARRY4": 4, "BRAM_18K": 5, "DSP": 0}


@pytest.mark.slow
def test_custom_op_stands_in_for_mvau_hls(built, tmp_path):
    """SelectMetabnnMVAU: same estimates, Python execution equal, HDL that FINN can stitch and
    that computes the layer from the weights FINN initialises it with."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP
    from metabnn.hw.custom_op.select import SelectMetabnnMVAU
    from metabnn.hw.export_artifact import read_export
    from metabnn.hw.finn_env import finn_session
    from metabnn.hw.hw_exec import execute_batched
    from metabnn.hw.rtl_model import mvau_acc, pack_stream, unpack_stream
    from metabnn.sim.session import Session
    from metabnn.sim.verilator import build

    with finn_session(tmp_path / "fw"):
        folded = ModelWrapper(str(built / "intermediate_models" / "estimates.onnx"))
        ours = folded.transform(SelectMetabnnMVAU())
        assert [n.op_type for n in ours.graph.node] == [n.op_type.replace("MVAU_hls", "MVAUBinary_rtl")
                                                        for n in folded.graph.node]
        assert "MVAUBinary_rtl" in {n.op_type for n in ours.graph.node}
        for a, b in zip(folded.graph.node, ours.graph.node):
            ia, ib = getCustomOp(a), getCustomOp(b)
            assert ia.get_exp_cycles() == ib.get_exp_cycles()
            assert ia.node_res_estimation("xc7z020clg400-1") == ib.node_res_estimation("xc7z020clg400-1")
        for n in ours.graph.node:
            getCustomOp(n).set_nodeattr("exec_mode", "cppsim")  # Python models for every layer
        export_dir = json.loads((built / "manifest.json").read_text())["source"]["export_dir"]
        x, _ = read_export(Path(export_dir)).test_set(0, 50)
        hw = ModelWrapper(str(built / "intermediate_models" / "hw_layers.onnx"))
        assert np.array_equal(execute_batched(ours, x), execute_batched(hw, x))

        ours = ours.transform(PrepareIP("xc7z020clg400-1", 10.0))
        node = [n for n in ours.graph.node if n.op_type == "MVAUBinary_rtl"][-1]
        inst = getCustomOp(node)
        files = inst.get_rtl_file_list(abspath=True)
        assert all(Path(f).is_file() for f in files)
        assert inst.code_generation_ipi()[-1] == f"create_bd_cell -type module -reference {node.name} {node.name}"
        assert inst.get_verilog_top_module_intf_names()["axilite"] == ["s_axilite"]
        cfg = inst.config()
        w = ours.get_initializer(node.input[1])
        exe = build([Path(f) for f in files], node.name, None, {"IN_BYTES": cfg.in_bytes, "OUT_BYTES": cfg.out_bytes},
                    cache_dir=tmp_path / "vcache")
    xb = np.random.default_rng(3).integers(0, 2, (6, cfg.mw))
    sess = Session(exe, cfg.in_bytes, cfg.out_bytes)
    sess.reset()
    sess.stream(pack_stream(xb, 1, cfg.simd), 6 * cfg.nf)  # no AXI-lite writes: FINN's memblock.dat
    res = sess.run(tmp_path)
    got = unpack_stream(res.streams[0].out, cfg.out_w, cfg.pe).reshape(6, cfg.mh)
    assert np.array_equal(got, mvau_acc(xb, w, True))


@pytest.mark.slow
def test_build_with_metabnn_mvau_simulates(built, tiny_export, tmp_path, monkeypatch):
    """The build hook the lead wires in (SelectMetabnnMVAU after SpecializeLayers): every FINN step
    after it (folding, estimates, codegen, partition, driver files) runs on MVAUBinary_rtl."""
    from metabnn.hw import steps
    from metabnn.hw.build import build
    from metabnn.hw.custom_op.select import SelectMetabnnMVAU
    from metabnn.sim import simulate

    orig = steps.step_specialize_layers

    def specialize_with_rtl(ctx):
        orig(ctx)
        ctx.model = steps._tidy(ctx.model.transform(SelectMetabnnMVAU()))

    monkeypatch.setattr(steps, "STEPS", [(name, specialize_with_rtl if name == "specialize_layers" else fn)
                                         for name, fn in steps.STEPS])
    r = build(tiny_export, tmp_path / "b", "pynq-z2", 50000, verify_limit=100, progress=False)
    assert [l["op_type"] for l in r["layers"]] == ["MVAUBinary_rtl", "Thresholding_rtl"] * 2 + ["MVAUBinary_rtl"]
    assert all(t["agreements"] == t["images"] for t in r["agreement"])
    assert sum("MVAUBinary_rtl" in p.name for p in (tmp_path / "b/deploy/driver/runtime_weights").iterdir()) == 3
    s = simulate(tmp_path / "b", 1, 100, progress=False)
    assert s["agree"] == s["images"] == 100
    assert s["cycles_per_image"] == pytest.approx(s["estimate_cycles_per_image"], rel=0.1)
