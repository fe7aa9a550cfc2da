"""Bad input: one clear line, exit code 2, nothing overwritten."""

import hashlib

import pytest

from conftest import run_cli, tiny_args


def one_error_line(proc):
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("metabnn: error: ")
    return lines[0]


@pytest.mark.parametrize("args,match", [
    (["--set", "optim.bogus=1"], "unknown config key 'optim.bogus'"),
    (["--set", "optim.meta=-1"], "must be >= 0"),
    (["--set", "model.widths=[]"], "empty"),
    (["--set", "data.stream.dataset=cifar10"], "cifar10"),
    (["--set", "data.stream.kind=spiral"], "spiral"),
    (["--set", "model.widths=[100,10]"], "do not fit the data"),
])
def test_bad_train_input(tmp_path, args, match, mnist_available):
    out = tmp_path / "run"
    proc = run_cli("train", "--preset", "demo", "--no-progress", *args, "--out", str(out),
                   check_rc=2)
    assert match in one_error_line(proc)
    assert not out.exists()  # nothing half-written


def test_missing_dataset_error_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv("METABNN_DATA", str(tmp_path / "cache"))
    proc = run_cli("train", "--preset", "demo", "--set", "data.stream.dataset=cifar10",
                   "--set", "model.widths=[3072,10]", "--out", str(tmp_path / "r"), check_rc=2)
    line = one_error_line(proc)
    assert "not found" in line and str(tmp_path / "cache") in line


def test_preset_and_config_exclusive(tmp_path):
    proc = run_cli("train", "--out", str(tmp_path / "r"), check_rc=2)
    assert "--preset" in one_error_line(proc)


def test_existing_run_is_not_overwritten(tmp_path, mnist_available):
    run = tmp_path / "run"
    run_cli("train", *tiny_args("data.stream.n_tasks=1", "train.epochs=1"), "--out", str(run))
    digest = hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest()
    proc = run_cli("train", *tiny_args(), "--out", str(run), check_rc=2)
    assert "already holds a run" in one_error_line(proc)
    assert hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest() == digest


def test_corrupted_and_foreign_checkpoints(tmp_path):
    import json

    import torch

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x00garbage")
    assert "no readable run manifest.json" in one_error_line(run_cli("train", "--resume", str(run), check_rc=2))

    def record(digest):
        (run / "manifest.json").write_text(json.dumps({"artifact": "metabnn-run", "checkpoint": {"sha256": digest}}))

    record("0" * 64)
    assert "corrupted" in one_error_line(run_cli("train", "--resume", str(run), check_rc=2))
    record(hashlib.sha256(b"\x00garbage").hexdigest())  # intact bytes that are no checkpoint
    assert "corrupted or unreadable" in one_error_line(run_cli("train", "--resume", str(run), check_rc=2))
    torch.save({"format": "someone-else", "model": {}}, run / "checkpoint.pt")
    record(hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest())
    assert "not a metabnn run checkpoint" in one_error_line(
        run_cli("train", "--resume", str(run), check_rc=2))
    assert "does not exist" in one_error_line(
        run_cli("train", "--resume", str(tmp_path / "nope"), check_rc=2))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a metabnn run directory" in one_error_line(
        run_cli("train", "--resume", str(empty), check_rc=2))


def test_cuda_requested_without_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = run_cli("train", *tiny_args(), "--device", "cuda", "--out", str(tmp_path / "r"), check_rc=2)
    assert "--device cpu" in one_error_line(proc)
