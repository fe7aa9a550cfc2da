"""The real chain on a small network: Brevitas -> QONNX export -> FINN build, every task checked."""

import json

import numpy as np
import pytest

from metabnn.errors import MetabnnError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export_dir(tiny_export):
    return tiny_export


@pytest.fixture(scope="module")
def built(tiny_build):
    """The session's pynq-z2 build (50,000 images/s, 300 images per task) and its report."""
    return tiny_build, json.loads((tiny_build / "report.json").read_text())


def test_report_keys_and_target(built):
    out, r = built
    for k in ("board", "part", "clock_ns", "layers", "fps", "latency_us", "resources", "capacity", "fits", "agreement"):
        assert k in r
    assert r["part"] == "xc7z020clg400-1" and r["fits"] and r["fps"] >= 50000
    ops = [l["name"].rsplit("_", 1)[0] for l in r["layers"]]
    assert ops == ["MVAUBinary_rtl", "Thresholding_rtl", "MVAUBinary_rtl", "Thresholding_rtl", "MVAUBinary_rtl"]
    for l in r["layers"]:
        assert l["cycles"] <= 1e9 / r["clock_ns"] / 50000 and {"pe", "simd", "lut", "bram"} <= set(l)
    assert (out / "report.png").stat().st_size > 1000 and "images/s" in (out / "report.txt").read_text()


def test_every_task_agrees_with_pytorch(built, export_dir):
    """HW graph (FINN Python execution, per-task thresholds swapped in) == PyTorch, image by image."""
    from metabnn.export.source import read_run
    from metabnn.export.verify import torch_predict
    from metabnn.hw.export_artifact import read_export
    from metabnn.hw.finn_env import finn_session
    from metabnn.hw.hw_exec import execute_batched
    from metabnn.hw.passes import SetTaskParameters
    from metabnn.hw.task_params import host_logits

    out, r = built
    assert len(r["agreement"]) == 2
    for t in r["agreement"]:
        assert t["images"] == 300 and t["agreements"] == 300
    art = read_export(export_dir)
    src = read_run(art.manifest["source"]["run_dir"])
    with finn_session(out.parent / "fw"):
        from qonnx.core.modelwrapper import ModelWrapper
        hw = ModelWrapper(str(out / "intermediate_models" / "hw_layers.onnx"))
        preds = []
        for k in range(art.n_tasks):
            x, _ = art.test_set(k, 300)
            acc = execute_batched(hw.transform(SetTaskParameters(art, k)), x)
            pred = host_logits(art, acc, k, True).argmax(1)
            torch_pred, _ = torch_predict(src.model, src.bn_states[k], x)
            assert np.array_equal(pred, torch_pred)
            preds.append(pred)
    assert not np.array_equal(preds[0], preds[1])  # the thresholds really differ per task


def test_deploy_layout_per_task_thresholds(built):
    out, r = built
    deploy = out / "deploy"
    settings = json.loads((deploy / "driver" / "settings.json").read_text())
    assert settings["driver_information"]["runtime_weights"] is True
    shared = sorted(p.name for p in (deploy / "driver" / "runtime_weights").iterdir())
    assert sum("MVAU" in n for n in shared) == 3 and sum("Thresholding" in n for n in shared) == 2
    files = [sorted(p.name for p in (deploy / "tasks" / str(k) / "runtime_weights").iterdir()) for k in range(2)]
    assert files[0] == files[1] == [n for n in shared if "Thresholding" in n]
    t0 = (deploy / "tasks/0/runtime_weights" / files[0][0]).read_text()
    assert t0 == (deploy / "driver/runtime_weights" / files[0][0]).read_text()  # task 0 = FINN's own files
    assert t0 != (deploy / "tasks/1/runtime_weights" / files[0][0]).read_text()
    assert r["finn_threshold_crosscheck"]["differ_from_finn_streamlining"] == 0
    for k in range(3):  # metabnn's RTL for every binary MVAU: no HLS C++ left in the build
        d = out / "hw_codegen" / f"MVAUBinary_rtl_{k}"
        assert (d / "mvau_bin.sv").is_file() and (d / f"MVAUBinary_rtl_{k}.v").is_file()
    assert not any(p.suffix == ".cpp" for p in (out / "hw_codegen").rglob("*"))
    assert "XILINX_VIVADO" in r["vivado_message"] and r["vivado"]["vivado"] is False


def test_existing_build_dir_refused(built, export_dir):
    from metabnn.hw.build import build

    out, _ = built
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(MetabnnError, match="already holds a build"):
        build(export_dir, out, "pynq-z2", 1000, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before


def test_fit_error_names_layer_resource_best_fps(export_dir, tmp_path):
    from metabnn.hw.build import build

    with pytest.raises(MetabnnError) as e:
        build(export_dir, tmp_path / "b", "pynq-z1", 2e7, progress=False)
    msg = str(e.value)
    assert "MVAUBinary_rtl" in msg and "highest rate that fits" in msg and "boards that fit" in msg
    assert "\n" not in msg and not (tmp_path / "b").exists()
    assert not any(p.name.startswith(".b.") for p in tmp_path.iterdir())


def test_oversize_builds_for_simulation_but_not_for_vivado(export_dir, tmp_path, monkeypatch):
    """--oversize: the folding for the target although it does not fit; never a bitstream."""
    from metabnn.hw import vivado
    from metabnn.hw.build import build

    with monkeypatch.context() as m:
        m.setattr(vivado, "plan", lambda: {"vivado": True})
        with pytest.raises(MetabnnError, match="oversize"):
            build(export_dir, tmp_path / "v", "pynq-z1", 2e7, progress=False, verify_limit=50, oversize=True)
    assert list(tmp_path.iterdir()) == []
    report = build(export_dir, tmp_path / "b", "pynq-z1", 2e7, progress=False, verify_limit=50, oversize=True)
    assert report["fits"] is False and report["fps"] >= 2e7
    assert report["resources"]["LUT"] > report["budget"]["LUT"]
    assert json.loads((tmp_path / "b" / "report.json").read_text()) == json.loads(json.dumps(report))


def test_bad_inputs_write_nothing(export_dir, tmp_path):
    from metabnn.hw.build import build

    for kwargs, match in ((dict(board="pynq-z9", target_fps=1000), "unknown board"),
                          (dict(board="pynq-z2", target_fps=0), "target-fps"),
                          (dict(board="pynq-z2", target_fps=-3), "target-fps")):
        with pytest.raises(MetabnnError, match=match):
            build(export_dir, tmp_path / "b", progress=False, **kwargs)
    with pytest.raises(MetabnnError, match="metabnn export"):
        build(tmp_path, tmp_path / "b", "pynq-z2", 1000, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unmappable_layer_named(tmp_path):
    """A float (non-binary) layer cannot become an MVAU: the error names it and says why."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper

    from metabnn.hw.finn_env import finn_session
    from metabnn.hw.passes import CheckHWMapping

    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], np.random.rand(12).astype(np.float32))
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="MatMul_float")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    model = ModelWrapper(helper.make_model(g))
    with finn_session(tmp_path), pytest.raises(MetabnnError) as e:
        model.transform(CheckHWMapping())
    assert "MatMul_float" in str(e.value) and "binary" in str(e.value)


def test_one_bit_input_variant(tmp_path, mnist_available):
    """1-bit input: a Thresholding layer (pixel >= 128) in front of an all-XNOR network."""
    from conftest import run_cli, tiny_args
    from metabnn.export import export_run
    from metabnn.hw.build import build

    run_cli("train", *tiny_args("model.input_bits=1"), "--out", str(tmp_path / "run"))
    export_run(tmp_path / "run", tmp_path / "export", progress=False, limit=200)
    r = build(tmp_path / "export", tmp_path / "build", "ultra96", 50000, verify_limit=200, progress=False)
    assert r["layers"][0]["name"].startswith("Thresholding") and r["input_bits"] == 1
    assert all(t["agreements"] == t["images"] == 200 for t in r["agreement"])
    assert r["fits"] and r["part"] == "xczu3eg-sbva484-1-e"
    # The deployed memories (one broadcast threshold for the input quantizer) compute the same.
    from metabnn.hw.export_artifact import read_export
    from metabnn.runtime import Accelerator

    art = read_export(tmp_path / "export")
    with Accelerator.open(tmp_path / "build" / "deploy") as acc:
        for k in range(art.n_tasks):
            acc.select_task(k)
            x, _ = art.test_set(k, 200)
            assert np.array_equal(acc.infer(x).classes, art.reference_predict(x, k))


def test_task_gets_own_weights_where_it_differs_from_task0(built, export_dir, tmp_path, monkeypatch):
    """The shared driver weights are task 0's: a task differing from them (task 0 has negated rows,
    task 1 none) must ship its own weight file, and a task equal to them must not."""
    from qonnx.core.modelwrapper import ModelWrapper

    from metabnn.hw import runtime_files
    from metabnn.hw.export_artifact import read_export
    from metabnn.hw.finn_env import finn_session

    out, _ = built
    art = read_export(export_dir)
    real = runtime_files._task_tensors

    def task0_negated(folded, art_, task):
        tensors, own = real(folded, art_, task)
        if task == 0:
            name = next(n for n in tensors if n.startswith("MVAU"))
            tensors = dict(tensors)
            tensors[name] = tensors[name].copy()
            tensors[name][:, 0] *= -1  # one neuron of task 0 with gamma < 0
            own = own | {name}
        return tensors, own

    monkeypatch.setattr(runtime_files, "_task_tensors", task0_negated)
    with finn_session(tmp_path / "fw"):
        part = ModelWrapper(str(out / "intermediate_models" / "dataflow_partition.onnx"))
        folded = ModelWrapper(str(out / "intermediate_models" / "folding.onnx"))
        summary = runtime_files.write_task_files(part, folded, art, tmp_path / "deploy")
    assert not [f for f in summary[0]["files"] if "MVAU" in f]  # task 0 is what the driver loads
    assert len([f for f in summary[1]["files"] if "MVAU" in f]) == 1
