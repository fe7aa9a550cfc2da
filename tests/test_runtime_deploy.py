"""The real chain: tiny train -> export -> FINN build -> deploy manifest -> accelerator -> learning on it."""

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from metabnn.errors import MetabnnError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory, tiny_build):
    base = tmp_path_factory.mktemp("rt")
    shutil.copytree(tiny_build, base / "build")  # the shared build stays as it was
    return base / "build"


@pytest.fixture()
def deploy(build_dir, tmp_path):
    shutil.copytree(build_dir, tmp_path / "build")
    return tmp_path / "build" / "deploy"


def cli(*argv):
    from metabnn.runtime.cli import add_runtime_parsers

    p = argparse.ArgumentParser()
    add_runtime_parsers(p.add_subparsers())
    args = p.parse_args([str(a) for a in argv])
    args.func(args)


def test_manifest_and_reference_equal_export(build_dir, capsys):
    from metabnn.hw.export_artifact import read_export
    from metabnn.runtime import Accelerator, open_package

    pkg = open_package(build_dir)  # a BUILD_DIR is accepted for its deploy/
    m = pkg.manifest
    assert [l["name"] for l in pkg.layers] == ["MVAUBinary_rtl_0", "Thresholding_rtl_0", "MVAUBinary_rtl_1",
                                               "Thresholding_rtl_1", "MVAUBinary_rtl_2"]
    assert {"host/checkpoint.pt", "host/parameters.npz", "driver/settings.json"} <= set(m["files"])
    import json

    from metabnn.hw.rtl_model import words_per_line

    l0 = json.loads((build_dir / "report.json").read_text())["layers"][0]  # 784 -> 32 at the build's folding
    words = (784 // l0["simd"]) * (32 // l0["pe"]) * words_per_line(l0["pe"] * l0["simd"])
    assert pkg.layers[0]["memory"] == {**pkg.layers[0]["memory"], "ip": "StreamingDataflowPartition_1",
                                       "base": 0, "words": words}
    assert pkg.layers[1]["weight_dtype"] == "INT19" and pkg.layers[2]["xnor"] and not pkg.layers[0]["xnor"]
    assert pkg.live_tasks == [0, 1]
    art = read_export(m["source"]["export_dir"])
    with Accelerator.open(build_dir / "deploy") as acc:
        for k in range(2):
            acc.select_task(k)
            x, _ = art.test_set(k, 200)
            assert np.array_equal(acc.infer(x).classes, art.reference_predict(x, k))
    cli("status", build_dir / "deploy", "--backend", "reference")
    out = capsys.readouterr().out
    assert "generation 0" in out and "tasks: T1 (pmnist-1), T2 (pmnist-2)" in out and "consistent: True" in out


def test_infer_cli(deploy, tmp_path, capsys):
    x = np.random.default_rng(0).integers(0, 256, (50, 784)).astype(np.uint8)
    np.savez(tmp_path / "im.npz", images=x, labels=np.zeros(50, np.int64))
    cli("infer", deploy, "--task", 2, "--images", tmp_path / "im.npz", "--out", tmp_path / "o.npz")
    out = capsys.readouterr().out
    assert "T2 (pmnist-2) on reference: 50 images" in out and "accuracy" in out
    with np.load(tmp_path / "o.npz") as z:
        assert z["raw"].shape == (50, 10) and z["classes"].shape == (50,)
    cli("infer", deploy, "--dataset", "task", "--limit", 100)
    assert "100 images" in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    with pytest.raises(MetabnnError, match=r"uint8 pixels \[N, 784\]"):
        cli("infer", deploy, "--images", tmp_path / "bad.npy")


def test_stale_checkpoint_is_refused(build_dir, tmp_path):
    from metabnn.runtime import write_deploy_manifest

    b = tmp_path / "b"
    shutil.copytree(build_dir, b)
    before = (b / "deploy" / "manifest.json").read_bytes()
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"another run's checkpoint")
    with pytest.raises(MetabnnError, match="not the checkpoint the export was made from"):
        write_deploy_manifest(b, run_dir=run)
    assert (b / "deploy" / "manifest.json").read_bytes() == before
    with pytest.raises(MetabnnError, match="not a finished metabnn build"):
        write_deploy_manifest(tmp_path / "run")


def _learn_subprocess(deploy, state, kill):
    code = ("import sys; from metabnn.runtime.learn import learn; "
            f"learn({str(deploy)!r}, 'next', 'reference', log=lambda s: None, state_file={str(state)!r})")
    env = dict(os.environ, METABNN_TEST_KILL=kill)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def _device_words(state, pkg):
    from metabnn.runtime.words import memory_words

    arr = np.fromfile(state, dtype=np.uint32)
    sizes = np.cumsum([0] + [memory_words(l) for l in pkg.layers])
    return [arr[sizes[i]:sizes[i + 1]] for i in range(len(pkg.layers))]


def test_update_killed_half_way_is_detected_and_repaired(deploy, tmp_path, capsys):
    """SIGKILL in the middle of the device write: the board keeps half-new memories; the next open
    rolls the package forward, rewrites exactly the wrong words, and infers with the new weights only."""
    from metabnn.export.reference import reference_predict
    from metabnn.hw.export_artifact import read_export
    from metabnn.runtime import Accelerator, open_package
    from metabnn.runtime.package import JOURNAL

    state = tmp_path / "board.mem"
    old = open_package(deploy)
    Accelerator.open(deploy, state_file=state).close()  # the board holds task 0
    old_img = old.image(0)

    proc = _learn_subprocess(deploy, state, "device_write:2")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (deploy / JOURNAL).is_file()
    staged = json.loads((deploy / ".staging" / "manifest.json").read_text())
    assert staged["generation"] == 1 and staged["tasks"][-1]["name"] == "pmnist-3"
    with pytest.raises(MetabnnError, match="interrupted update"):
        open_package(deploy, repair=False)
    mixed = _device_words(state, old)
    assert any(not np.array_equal(a, b) for a, b in zip(mixed, old_img))  # some words were written

    acc = Accelerator.open(deploy, state_file=state, task=2)
    assert "rolled forward" in acc.pkg.repaired and not (deploy / JOURNAL).exists()
    assert acc.pkg.manifest["generation"] == 1 and acc.pkg.live_tasks == [0, 1, 2]
    new_img = acc.pkg.image(2)
    assert any(not np.array_equal(a, b) for a, b in zip(mixed, new_img))  # it really was mixed
    assert all(np.array_equal(a, b) for a, b in zip(_device_words(state, acc.pkg), new_img))
    # Every result now comes from the committed weights: equal to the integer model of the new parameters.
    with np.load(deploy / "host" / "parameters.npz") as z:
        params = {k: z[k] for k in z.files}
    art = read_export(old.manifest["source"]["export_dir"])
    for k in (0, 1):
        acc.select_task(k)
        x, _ = art.test_set(k, 200)
        assert np.array_equal(acc.infer(x).classes, reference_predict(params, x, k)[0])
    acc.close()  # an open accelerator holds the package (shared): learn would be refused

    # An update killed before it was sealed leaves the package as it was.
    before = (deploy / "manifest.json").read_bytes()
    proc = _learn_subprocess(deploy, state, "before_seal:1")
    assert proc.returncode == -9
    pkg = open_package(deploy)
    assert "discarded" in pkg.repaired and (deploy / "manifest.json").read_bytes() == before

    # A complete update through the CLI function: learn.json with the accuracy matrix measured on the device.
    cli("learn", deploy, "--backend", "reference", "--no-progress")
    out = capsys.readouterr().out
    assert "learned T4 (pmnist-4)" in out and "PyTorch (float64) on the same images: accuracy identical, 2000/2000 predictions equal" in out
    log = json.loads((deploy / "learn.json").read_text())
    u = log["updates"][-1]
    assert log["tasks"] == ["pmnist-1", "pmnist-2", "pmnist-3", "pmnist-4"]
    assert u["acc"] == u["torch_acc"] and len(u["acc"]) == 4
    assert all(v == 500 for v in u["agreements_with_pytorch"].values())
    assert sum(u["bits_flipped"].values()) > 0 and u["words_written"]["MVAUBinary_rtl_0"] > 0
    # pmnist-3 went live through the repair: the log lists it too, as not measured
    assert set(log["bits_flipped"]) == {"pmnist-3", "pmnist-4"} and u["update_s"] > 0
    assert [x["measured"] for x in log["updates"]] == [False, True] and log["acc"][0] == [None] * 4
