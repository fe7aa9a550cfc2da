"""Edges of `metabnn export`, `data fetch` and `demo`: one line, rc 2, nothing written."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import read_json, read_only, run_cli, run_cli_unprivileged
from metabnn.errors import MetabnnError
from test_cli_errors import one_error_line


@pytest.mark.parametrize("args,match", [
    (["--limit", "0"], "argument --limit: 0 must be a positive number of test images per task"),
    (["--limit", "-3"], "argument --limit: -3 must be a positive"),
    (["--limit", "x"], "argument --limit: 'x' is not a whole number"),
    (["--data-dir", "/nonexistent"], "argument --data-dir: '/nonexistent' is not a directory"),
])
def test_bad_export_flags(tmp_path, args, match):
    line = one_error_line(run_cli("export", str(tmp_path), "--out", str(tmp_path / "e"), *args, check_rc=2))
    assert match in line and "limit=" not in line
    assert list(tmp_path.iterdir()) == []


def test_export_api_speaks_of_flags(tmp_path):
    from metabnn.export.request import check_export_request

    with pytest.raises(MetabnnError, match=r"^--limit 0 must be .*leave --limit out") as e:
        check_export_request(tmp_path, tmp_path / "e", None, 0)
    assert "None" not in str(e.value)
    with pytest.raises(MetabnnError, match="^--data-dir '/nonexistent' is not a directory"):
        check_export_request(tmp_path, tmp_path / "e", "/nonexistent", None)


def test_export_out_targets(tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_error_line(run_cli("export", str(tmp_path), "--out", str(tmp_path / "file"), check_rc=2))
    assert "exists and is not a directory" in line
    (tmp_path / "ro").mkdir()
    ro = read_only(tmp_path / "ro")
    line = one_error_line(run_cli_unprivileged("export", str(tmp_path), "--out", str(ro / "e")))
    assert "--out" in line and "read-only" in line
    assert list(ro.iterdir()) == []


def test_export_of_foreign_and_half_made_runs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("[1]")
    assert "not a training run" in one_error_line(run_cli("export", str(run), "--out", str(tmp_path / "e"),
                                                          check_rc=2))
    (run / "manifest.json").write_text('{"artifact": "metabnn-run"}')
    assert "stopped before its first checkpoint" in one_error_line(
        run_cli("export", str(run), "--out", str(tmp_path / "e"), check_rc=2))
    (run / "checkpoint.pt").write_bytes(b"junk")
    (run / "manifest.json").write_text('{"artifact": "metabnn-run", "checkpoint": {"sha256": "00"}}')
    assert "is corrupted" in one_error_line(run_cli("export", str(run), "--out", str(tmp_path / "e"),
                                                    check_rc=2))
    assert not (tmp_path / "e").exists()


def test_verify_summary_reads_percentages():
    from metabnn.export.verify import _percent, summary_lines

    import numpy as np

    assert _percent(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 50.0
    lines = summary_lines({"tasks": [{"name": "pmnist-1", "images": 10,
                                      "qonnx": {"agreements": 10, "accuracy": 97.5}}]})
    assert lines == ["task pmnist-1: QONNX agrees with PyTorch on 10/10 test images, accuracy 97.50%"]


def test_data_fetch_edges(tmp_path, monkeypatch):
    line = one_error_line(run_cli("data", "fetch", "mnist", "nope", check_rc=2))
    assert "unknown dataset 'nope'" in line
    line = one_error_line(run_cli("data", "fetch", "mnist", "--data-dir", "/nonexistent", check_rc=2))
    assert "--data-dir: '/nonexistent' is not a directory" in line
    (tmp_path / "cache").mkdir()
    monkeypatch.setenv("METABNN_DATA", str(read_only(tmp_path / "cache")))
    line = one_error_line(run_cli_unprivileged("data", "fetch", "mnist"))
    assert "is not in the cache" in line and "read-only" in line and "METABNN_DATA" in line
    assert list((tmp_path / "cache").iterdir()) == []


def test_demo_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    assert "is a file" in one_error_line(run_cli("demo", "--out", str(tmp_path / "f"), check_rc=2))
    assert "argument --device" in one_error_line(run_cli("demo", "--device", "tpu", check_rc=2))


# ---- real runs ------------------------------------------------------------------------------

@pytest.mark.slow
def test_export_of_an_unfinished_run_holds_its_finished_tasks(tiny_run, tmp_path):
    from metabnn.train import checkpoint as ckpt

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    state = ckpt.load_checkpoint(run)
    state.update(progress={"task": 1, "epoch": 1}, bn_states=state["bn_states"][:1])
    ckpt.save_checkpoint(run, {k: v for k, v in state.items() if k not in ("format", "version", "metabnn_version")})
    proc = run_cli("export", str(run), "--out", str(tmp_path / "e"), "--limit", "50", "--no-progress")
    assert "the export holds the 1 finished ones" in proc.stdout
    assert read_json(tmp_path / "e" / "manifest.json")["source"]["run_complete"] is False


@pytest.mark.slow
def test_export_is_staged_and_removes_stale_stages(tiny_run, tmp_path, monkeypatch):
    from metabnn.export import export as exp

    stale = tmp_path / ".e.12345.tmp"
    stale.mkdir()
    (stale / ".metabnn-owner").write_text("999999999\n")  # a process that no longer exists

    def interrupted(path, arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(exp, "_write_npz", interrupted)
    with pytest.raises(KeyboardInterrupt):
        exp.export_run(tiny_run, tmp_path / "e", progress=False, limit=20)
    assert list(tmp_path.iterdir()) == []  # no export, no stage, and the stale stage is gone
    monkeypatch.undo()
    exp.export_run(tiny_run, tmp_path / "e", progress=False, limit=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]
    verify = read_json(tmp_path / "e" / "verify.json")
    for t in verify["tasks"]:
        assert 1 < t["qonnx"]["accuracy"] <= 100 and t["qonnx"]["agreement"] == 100.0
    assert oct(os.stat(tmp_path / "e").st_mode & 0o777) != oct(0o700)
