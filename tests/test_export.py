"""metabnn export end to end on a tiny trained run, and its refusals."""

import json

import numpy as np
import pytest

from conftest import read_json, run_cli, tiny_args
from metabnn.errors import MetabnnError
from metabnn.export import export_run, load_parameters, load_task_model, reference_predict
from metabnn.export.manifest import read_manifest
from metabnn.train.checkpoint import save_checkpoint, write_run_files
from metabnn.train.models import BinaryMLP

LIMIT = 400  # test images per task: the full 10,000 take a few seconds more per task


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mnist_available):
    run = tmp_path_factory.mktemp("run") / "run"
    run_cli("train", *tiny_args("train.epochs=1", "train.train_subset=1000"), "--out", str(run))
    return run


@pytest.fixture(scope="module")
def tiny_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "export"
    manifest = export_run(tiny_run, out, progress=False, limit=LIMIT)
    return out, manifest


@pytest.mark.slow
def test_export_verifies_every_task(tiny_run, tiny_export):
    out, manifest = tiny_export
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "parameters.npz",
                                                     "tasks.json", "verify.json"]
    assert read_manifest(out) == manifest  # sha256 of every file checks out
    assert manifest["artifact"] == "metabnn-export" and manifest["widths"] == [784, 32, 32, 10]
    assert manifest["source"]["run_complete"] is True
    verify = read_json(out / "verify.json")
    metrics = read_json(tiny_run / "metrics.json")
    assert len(verify["tasks"]) == 2 and verify["limit"] == LIMIT
    for t in verify["tasks"]:
        assert t["images"] == LIMIT
        for kind in ("qonnx", "reference"):
            assert t[kind]["agreements"] == LIMIT and t[kind]["agreement"] == 100.0
            assert t[kind]["accuracy"] == t["pytorch"]["accuracy"]
        assert 30 < t["pytorch"]["accuracy"] <= 100  # a percentage, as in metrics.json
    assert len(metrics["acc"][-1]) == 2
    # the full task specs, permutations included, let a later stage rebuild the test sets
    specs = read_json(out / "tasks.json")["tasks"]
    assert [len(s["permutation"]) for s in specs] == [784, 784]
    assert all("permutation" not in s for s in manifest["tasks"])
    layers = manifest["layers"]
    assert [L["onnx_node"] for L in layers] == ["BatchNormalization_0", "BatchNormalization_1",
                                                 "BatchNormalization_2"]


@pytest.mark.slow
def test_task_models_and_reference_from_the_export_dir(tiny_export):
    from metabnn.data import task_from_spec
    from qonnx.core.onnx_exec import execute_onnx

    out, manifest = tiny_export
    params = load_parameters(out)
    specs = read_json(out / "tasks.json")["tasks"]
    assert params["thr0"].shape == (2, 32) and params["flip1"].dtype == bool
    assert params["thr1_popcount"].min() >= 0 and params["thr1_popcount"].max() <= 33
    for k in range(2):
        model = load_task_model(out, k)
        bn = manifest["layers"][0]["onnx_initializers"]
        assert np.array_equal(model.get_initializer(bn["mean"]), params["bn0_mean"][k])
        task = task_from_spec(specs[k])
        x = task.test_x[:1].numpy()
        logits = execute_onnx(model, {"global_in": x.astype(np.float32) / np.float32(255)})["global_out"]
        cls, ref_logits = reference_predict(params, x, k)
        assert int(np.argmax(logits)) == int(cls[0])
        assert np.allclose(logits, ref_logits, atol=1e-4)
    with pytest.raises(MetabnnError, match="outside"):
        load_task_model(out, 2)


@pytest.mark.slow
def test_refuses_an_existing_export(tiny_run, tiny_export):
    out, _ = tiny_export
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(MetabnnError, match="already holds an export"):
        export_run(tiny_run, out, progress=False, limit=10)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp dir left beside it


def test_refuses_a_directory_that_is_not_a_run(tmp_path):
    out = tmp_path / "export"
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetabnnError, match="no manifest.json"):
        export_run(tmp_path / "empty", out, progress=False)
    with pytest.raises(MetabnnError, match="not a directory"):
        export_run(tmp_path / "missing", out, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"artifact": "metabnn-export"}))
    with pytest.raises(MetabnnError, match="not a training run"):
        export_run(other, out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "other"]


def test_refuses_a_run_without_a_finished_task(tmp_path):
    run = tmp_path / "run"
    config = {"model": {"kind": "bnn", "widths": [784, 8, 10], "input_bits": 8}, "train": {"scenario": "task"}}
    specs = [{"kind": "permuted", "name": "pmnist-1", "dataset": "mnist", "index": 0}]
    write_run_files(run, config, specs)
    save_checkpoint(run, {"config": config, "task_specs": specs, "model": BinaryMLP([784, 8, 10]).state_dict(),
                          "bn_states": [], "current_bn": None, "progress": {"task": 0, "epoch": 1}})
    with pytest.raises(MetabnnError, match="not finished any task"):
        export_run(run, tmp_path / "export", progress=False)
    assert not (tmp_path / "export").exists()


def test_refuses_a_non_empty_out_dir(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MetabnnError, match="not empty"):
        export_run(tmp_path / "run", out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"


def test_refuses_a_changed_export(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"abc")
    (out / "manifest.json").write_text(json.dumps({"artifact": "metabnn-export", "format_version": 1,
                                                  "files": {"model.onnx": "0" * 64}}))
    with pytest.raises(MetabnnError, match="changed since the export"):
        read_manifest(out)
