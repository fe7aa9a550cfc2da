"""The continual loop end to end on a tiny network: metrics, plots, resume, baselines, errors."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import read_json, run_cli, tiny_args


def checkpoint_weights(run_dir):
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    return state["model"], state["progress"]


def deterministic(metrics):
    return {k: v for k, v in metrics.items() if k not in ("samples_per_s", "train_seconds")}


def test_train_writes_metrics_and_plots(tmp_path, mnist_available):
    run = tmp_path / "run"
    proc = run_cli("train", *tiny_args(), "--out", str(run))
    assert "accuracy matrix" in proc.stdout and "task 2/2" in proc.stdout
    m = read_json(run / "metrics.json")
    assert m["tasks"] == ["pmnist-1", "pmnist-2"]
    assert len(m["acc"]) == 2 and all(len(r) == 2 for r in m["acc"])
    assert m["acc"][0][0] > 50  # it learned something
    assert len(m["curves"]["epoch"]) == 4 and m["curves"]["acc"][0][1] is None
    assert set(m["flips"][0]) == {"1.weight", "4.weight", "7.weight"}
    assert 0 < m["flips"][0]["1.weight"] < 1
    assert m["samples_per_s"] > 0 and "bwt" in m and "mean_final_acc" in m
    for name in ("accuracy_curves", "accuracy_matrix", "hidden_weight_histograms", "flips"):
        png = run / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = read_json(run / "manifest.json")
    assert manifest["artifact"] == "metabnn-run"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    perms = [s["permutation"] for s in state["task_specs"]]
    assert sorted(perms[0]) == list(range(784)) and perms[0] != perms[1]
    assert len(state["bn_states"]) == 2


def test_resume_after_kill_equals_uninterrupted(tmp_path, mnist_available):
    extra = ("train.epochs=3", "train.train_subset=3000", "model.widths=[784,64,64,10]")
    full = tmp_path / "full"
    run_cli("train", *tiny_args(*extra), "--out", str(full))

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "metabnn.cli", "train", *tiny_args(*extra), "--out", str(killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        metrics = killed / "metrics.json"
        if metrics.exists() and len(read_json(metrics)["curves"]["epoch"]) >= 1:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, progress = checkpoint_weights(killed)
    assert (progress["task"], progress["epoch"]) < (2, 0), "the run finished before it was killed"

    out = run_cli("train", "--resume", str(killed), "--no-progress")
    assert "resuming" in out.stdout
    w_full, p_full = checkpoint_weights(full)
    w_res, p_res = checkpoint_weights(killed)
    assert p_full == p_res == {"task": 2, "epoch": 0}
    differ = [k for k in w_full if not torch.equal(w_full[k], w_res[k])]
    assert not differ, f"killed at {progress}: {differ} differ"
    assert deterministic(read_json(full / "metrics.json")) == deterministic(read_json(killed / "metrics.json"))


@pytest.mark.parametrize("baseline", ["ewc", "si"])
def test_baselines_run(tmp_path, mnist_available, baseline):
    run = tmp_path / baseline
    run_cli("train", *tiny_args(f"baseline.kind={baseline}", "optim.meta=0",
                                "baseline.ewc_samples=50"), "--out", str(run))
    m = read_json(run / "metrics.json")
    assert len(m["acc"]) == 2


def test_domain_scenario_and_float_model(tmp_path, mnist_available):
    run = tmp_path / "dom"
    run_cli("train", *tiny_args("train.scenario=domain", "model.kind=float", "optim.meta=0"),
            "--out", str(run))
    assert read_json(run / "metrics.json")["scenario"] == "domain"


def test_ewc_pulls_toward_anchor():
    from metabnn.train.baselines import EWC

    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    ewc = EWC([p], lam=2.0, samples=1)
    ewc.end_task(lambda: iter([(p * torch.tensor([1.0, 0.0])).sum()]))  # Fisher = [1, 0]
    with torch.no_grad():
        p.add_(torch.tensor([0.5, 0.5]))
    p.grad = torch.zeros(2)
    ewc.before_step()
    assert torch.allclose(p.grad, torch.tensor([2.0 * 1.0 * 0.5, 0.0]))


def test_si_importance_grows_with_path():
    from metabnn.train.baselines import SynapticIntelligence

    p = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    si = SynapticIntelligence([p], c=1.0, xi=0.1)
    si.start_task()
    p.grad = torch.tensor([-1.0, 0.0])  # descending the loss along the first weight
    si.before_step()
    with torch.no_grad():
        p.add_(torch.tensor([0.5, 0.0]))
    si.after_step()
    si.end_task()
    assert si.omega[0][0] == pytest.approx(0.5 / (0.25 + 0.1)) and si.omega[0][1] == 0


def test_blas_is_set_for_reproducible_results():
    """Resume ≡ uninterrupted needs BLAS to give the same bits in every process."""
    code = ("import metabnn.cli, torch\n"
            "a = torch.ones(100, 784); b = torch.ones(784, 64)\n"
            "print(float((a @ b)[0, 0]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKL_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(env, MKL_VERBOSE="1"), check=True)
    if "MKL_VERBOSE" not in proc.stdout + proc.stderr:
        pytest.skip("this torch build does not use oneMKL")
    assert "CNR:AUTO" in proc.stdout + proc.stderr and "Dyn:0" in proc.stdout + proc.stderr
