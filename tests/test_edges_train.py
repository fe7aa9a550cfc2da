"""Edges of `metabnn train`, `plots` and the run directory: every bad input one line, rc 2, nothing written."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil

import pytest

from conftest import TINY, read_json, read_only, run_cli, run_cli_unprivileged
from metabnn.errors import MetabnnError
from metabnn.train.config import DEFAULTS, key_types, resolve_config
from test_cli_errors import one_error_line


def listing(d):
    return sorted((p.relative_to(d).as_posix(), p.read_bytes() if p.is_file() else None) for p in d.rglob("*"))


# ---- config: one typed validation for every key -------------------------------------------

@pytest.mark.parametrize("override,match", [
    ('seed="abc"', 'seed="abc" is not an integer'),
    ("seed=1.5", "seed=1.5 is not an integer"),
    ("seed=-1", "from 0 to"),
    ('optim.betas="x"', "is not a list of numbers"),
    ("optim.betas=[0.9]", "has 1 value; set two numbers in [0, 1)"),
    ("optim.betas=[0.9,1.5]", "two numbers in [0, 1)"),
    ('baseline.ewc_lambda="x"', 'baseline.ewc_lambda="x" is not a number'),
    ("optim.eps=-1", "optim.eps=-1 must be a number > 0"),
    ("optim.meta=true", "optim.meta=true is not a number or a list of numbers"),
    ("train.epochs=true", "train.epochs=true is not an integer"),
    ("model.input_bits=true", "model.input_bits=true is not an integer"),
    ("optim.lr=NaN", "optim.lr=NaN is not a number"),
    ("optim.reset_per_task=1", "is not true or false"),
    ("model.widths=[784,true,10]", "(true is not an integer)"),
    ("data.stream.n_task=3", "has key 'n_task', which a 'permuted' stream does not take"),
    ('data.dir="/nonexistent"', "data.dir '/nonexistent' is not a directory"),
])
def test_wrong_types_and_ranges_are_refused_and_nothing_is_written(tmp_path, override, match):
    out = tmp_path / "run"
    proc = run_cli("train", "--preset", "demo", "--set", override, "--out", str(out), check_rc=2)
    assert match in one_error_line(proc)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _wrong_values(types):
    """Values of every JSON type the key does not accept (bool never counts as a number)."""
    candidates = {"int": 7, "number": 0.5, "bool": True, "str": "x", "null": None, "object": {"a": 1},
                  "list": [1.5, "x"]}
    accepted = {t if isinstance(t, str) else "list" for t in types}
    if "number" in accepted:
        accepted.add("int")
    return [v for k, v in candidates.items() if k not in accepted and not (k == "bool" and "bool" in accepted)]


@pytest.mark.parametrize("key", list(key_types()))
def test_every_key_refuses_every_wrong_type(key):
    types = key_types()[key]
    wrong = _wrong_values(types)
    assert wrong, key
    for value in wrong:
        with pytest.raises(MetabnnError, match=f"^{key.replace('.', '[.]')}=") as e:
            resolve_config("demo", overrides=[f"{key}={json.dumps(value)}"])
        assert "\n" not in str(e.value)


def test_bool_is_never_a_number_for_any_numeric_key():
    for key, types in key_types().items():
        if types[0] in ("int", "number") or types == ("int", "null"):
            with pytest.raises(MetabnnError, match="is not"):
                resolve_config("demo", overrides=[f"{key}=true"])


def test_key_types_come_from_the_defaults():
    types = key_types()
    assert types["train.epochs"] == ("int",) and types["optim.lr"] == ("number",)
    assert types["optim.reset_per_task"] == ("bool",) and types["model.widths"] == (("list", "int"),)
    assert set(types) >= {"seed", "device", "baseline.si_xi", "train.per_task_affine"}
    assert DEFAULTS["optim"]["eps"] > 0  # the defaults pass their own validation
    resolve_config()


def test_config_file_edges(tmp_path):
    def err(text: str | None, name="c.json") -> str:
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(MetabnnError) as e:
            resolve_config(config_file=path)
        return str(e.value)

    assert "does not exist" in err(None, "missing.json")
    assert "is not valid JSON" in err("{not json")
    assert "holds a JSON array, not an object" in err("[1, 2]")
    assert "unknown config key 'optim.metta'" in err('{"optim": {"metta": 1}}')
    assert "unknown preset 'nope'" in err('{"preset": "nope"}')
    assert "is not an integer" in err('{"train": {"epochs": "3"}}')
    (tmp_path / "dir.json").mkdir()
    assert "cannot be read" in err(None, "dir.json")
    # a file may build on a preset: its "preset" key is applied, not dropped
    (tmp_path / "p.json").write_text('{"preset": "pmnist-cpu", "train": {"epochs": 2}}')
    cfg = resolve_config(config_file=tmp_path / "p.json")
    assert cfg["model"]["widths"] == [784, 1024, 1024, 10] and cfg["train"]["epochs"] == 2


@pytest.mark.parametrize("args,match", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "demo", "--config", "x.json"], "exactly one of --preset"),
    (["--preset", "demo", "--set", "optim"], "is not key=value"),
    (["--preset", "demo", "--device", "gpu"], "argument --device: 'gpu' is not a device"),
    (["--preset", "demo", "--data-dir", "/nonexistent"], "argument --data-dir: '/nonexistent' is not a directory"),
])
def test_bad_train_flags(tmp_path, args, match):
    proc = run_cli("train", *args, "--out", str(tmp_path / "run"), check_rc=2)
    assert match in one_error_line(proc)
    assert list(tmp_path.iterdir()) == []


def test_out_and_resume_targets(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert "is a file" in one_error_line(run_cli("train", "--preset", "demo", "--out", str(tmp_path / "file"),
                                                 check_rc=2))
    assert "holds other files" in one_error_line(
        run_cli("train", "--preset", "demo", "--out", str(tmp_path / "other"), check_rc=2))
    assert "is a file" in one_error_line(run_cli("train", "--resume", str(tmp_path / "file"), check_rc=2))
    assert "not a metabnn run directory" in one_error_line(
        run_cli("train", "--resume", str(tmp_path / "other"), check_rc=2))
    line = one_error_line(run_cli("train", "--resume", str(tmp_path / "other"), "--device", "cpu",
                                  "--data-dir", str(tmp_path), check_rc=2))
    assert "not --device, --data-dir" in line
    # a run made by an older metabnn, stopped before its first checkpoint
    half = tmp_path / "half"
    half.mkdir()
    (half / "manifest.json").write_text('{"artifact": "metabnn-run"}')
    assert "stopped before its first checkpoint; delete" in one_error_line(
        run_cli("train", "--resume", str(half), check_rc=2))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_unwritable_out_is_refused_before_any_work(tmp_path):
    (tmp_path / "ro").mkdir()
    ro = read_only(tmp_path / "ro")
    line = one_error_line(run_cli_unprivileged("train", "--preset", "demo", "--out", str(ro / "run")))
    assert "--out" in line and "read-only" in line
    line = one_error_line(run_cli_unprivileged("demo", "--out", str(ro / "demo")))
    assert "--out" in line and "read-only" in line
    assert list(ro.iterdir()) == []


# ---- Ctrl-C ---------------------------------------------------------------------------------

def _interrupt_in(monkeypatch, module, name, argv, after_start=False):
    from metabnn import cli

    def boom(*a, **k):
        if after_start:
            k["on_started"](a[1])
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, boom)
    return cli.main(argv)


def test_ctrl_c_in_train_says_what_is_kept(monkeypatch, capsys, tmp_path):
    from metabnn.train import continual

    argv = ["train", "--preset", "demo", "--out", str(tmp_path / "r")]
    assert _interrupt_in(monkeypatch, continual, "train", argv) == 130
    assert "nothing was written" in capsys.readouterr().err
    assert _interrupt_in(monkeypatch, continual, "train", argv, after_start=True) == 130
    assert f"continue with 'metabnn train --resume {tmp_path / 'r'}'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,module,name,says", [
    (["plots", "R"], "metabnn.train.plots", "plots_metrics", "every PNG is the old or the new one"),
    (["data", "fetch", "mnist"], "metabnn.data.dataset", "fetch_dataset", "only complete, verified files"),
    (["export", "R", "--out", "E"], "metabnn.export.request", "check_export_request", "nothing was written"),
    (["demo", "--out", "D"], "metabnn.demo", "run_demo", "run 'metabnn demo --out D' again"),
])
def test_ctrl_c_messages_of_the_other_commands(monkeypatch, capsys, argv, module, name, says):
    import importlib

    from metabnn import cli

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), name, boom)
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "last completed epoch" not in err


# ---- plots ----------------------------------------------------------------------------------

def _metrics(n_tasks=2, widths=(784, 32, 32, 10)):
    layers = [f"{3 * i + 1}.weight" for i in range(len(widths) - 1)]
    hist = [0] * 80
    hist[38], hist[41], hist[79] = 5, 7, 2  # -0.15, +0.15 and the clamped tail at +4
    return {
        "tasks": [f"pmnist-{t + 1}" for t in range(n_tasks)],
        "acc": [[90.0 if j <= i else 10.0 for j in range(n_tasks)] for i in range(n_tasks)],
        "curves": {"epoch": list(range(1, n_tasks + 1)),
                   "acc": [[80.0] * (i + 1) + [None] * (n_tasks - i - 1) for i in range(n_tasks)]},
        "flips": [{k: 0.1 for k in layers} for _ in range(n_tasks)],
        "hidden_hist": [{k: list(hist) for k in layers} for _ in range(n_tasks)],
        "hist_range": [-4.0, 4.0], "epochs_per_task": 1, "train_samples": 10, "train_seconds": 1.0,
    }


def test_plot_titles_name_the_run_m_and_readable_layers(tmp_path, monkeypatch):
    from metabnn.train import plots
    from metabnn.train.metrics import summarize

    run = tmp_path / "my-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"widths": [784, 32, 32, 10]}, "optim": {"meta": 10.0}}))
    seen: dict[str, list[str]] = {}

    def record(fig, path):
        texts = [t.get_text() for ax in fig.axes for t in (ax.title, ax.xaxis.label)]
        texts += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        seen[path.name] = texts + [fig._suptitle.get_text() if fig._suptitle else ""]
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", record)
    plots.write_plots(run, summarize(_metrics()))
    assert len(seen) == 4
    for name, texts in seen.items():
        assert any("my-run, m = 10" in t for t in texts), (name, texts)
    hist = " | ".join(seen["hidden_weight_histograms.png"])
    assert "hidden layer 1 (784->32)" in hist and "output layer (32->10)" in hist and "|W_h|" in hist
    assert ".weight" not in hist and "layer 1.weight" not in " ".join(seen["flips.png"])
    assert "hidden layer 2 (32->32)" in " ".join(seen["flips.png"])


def test_histograms_fold_into_magnitudes():
    from metabnn.train.plots import magnitude_histogram

    hist = _metrics()["hidden_hist"][0]["1.weight"]
    counts, edges = magnitude_histogram(hist, -4.0, 4.0)
    assert len(counts) == 40 and edges[0] == 0.0 and edges[-1] == 4.0
    assert counts[1] == 5 + 7 and counts[-1] == 2 and counts.sum() == sum(hist)


def test_plots_of_what_is_not_a_run(tmp_path):
    (tmp_path / "f").write_text("x")
    assert "is a file" in one_error_line(run_cli("plots", str(tmp_path / "f"), check_rc=2))
    assert "is missing" in one_error_line(run_cli("plots", str(tmp_path / "nope"), check_rc=2))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text('{"acc": [[1, 2]]}')
    assert "is damaged" in one_error_line(run_cli("plots", str(tmp_path / "r"), check_rc=2))
    (tmp_path / "r" / "metrics.json").write_text('{"acc": ')
    assert "unreadable" in one_error_line(run_cli("plots", str(tmp_path / "r"), check_rc=2))
    assert not (tmp_path / "r" / "plots").exists()


# ---- the checkpoint's checksum --------------------------------------------------------------

def _state(value: float = 1.0):
    import torch

    return {"config": {"seed": 0}, "task_specs": [{"name": "t", "permutation": [1, 0]}],
            "model": {"w": torch.full((64,), value)}}


def test_checkpoint_checksum_survives_a_crash_between_its_two_writes(tmp_path, monkeypatch):
    from metabnn.train import checkpoint as ckpt

    run = tmp_path / "run"
    run.mkdir()
    ckpt.save_checkpoint(run, _state(1.0))
    assert ckpt.load_checkpoint(run)["model"]["w"][0] == 1.0
    manifest = read_json(run / "manifest.json")
    assert manifest["checkpoint"]["sha256"] == hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest()
    assert manifest["tasks"] == [{"name": "t"}]

    def crash(path, data):
        raise KeyboardInterrupt  # killed after the manifest was written, before the checkpoint

    monkeypatch.setattr(ckpt, "atomic_write_bytes", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(run, _state(2.0))
    monkeypatch.undo()
    assert ckpt.load_checkpoint(run)["model"]["w"][0] == 1.0  # the old checkpoint is still accepted
    ckpt.save_checkpoint(run, _state(3.0))  # and the run goes on
    assert ckpt.load_checkpoint(run)["model"]["w"][0] == 3.0


def test_one_flipped_byte_is_refused(tmp_path):
    from metabnn.train import checkpoint as ckpt

    run = tmp_path / "run"
    run.mkdir()
    ckpt.save_checkpoint(run, _state())
    data = bytearray((run / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0x10
    (run / "checkpoint.pt").write_bytes(bytes(data))
    with pytest.raises(MetabnnError, match=r"is corrupted \(its sha256"):
        ckpt.load_checkpoint(run)
    with pytest.raises(MetabnnError, match=r"is corrupted \(its sha256"):
        ckpt.load_checkpoint(run, expected_sha256="0" * 64)


def test_run_without_checksum_is_read_with_a_warning(tmp_path, capsys):
    from metabnn.train import checkpoint as ckpt

    run = tmp_path / "run"
    run.mkdir()
    ckpt.save_checkpoint(run, _state())
    manifest = read_json(run / "manifest.json")
    del manifest["checkpoint"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert ckpt.load_checkpoint(run)["model"]["w"][0] == 1.0
    assert "records no checksum" in capsys.readouterr().err
    ckpt.save_checkpoint(run, _state(2.0))  # the next save adds it
    assert "sha256" in read_json(run / "manifest.json")["checkpoint"]


# ---- real runs ------------------------------------------------------------------------------

@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


@pytest.mark.slow
def test_resume_of_a_finished_run_reports_it_and_writes_nothing(run_copy):
    before = listing(run_copy)
    proc = run_cli("train", "--resume", str(run_copy), "--no-progress")
    assert "is already complete (2 tasks trained)" in proc.stdout and "resuming" not in proc.stdout
    assert "accuracy matrix" in proc.stdout and "after T2" in proc.stdout
    assert listing(run_copy) == before


@pytest.mark.slow
def test_flipped_byte_in_a_run_checkpoint_is_refused_by_every_reader(run_copy, tmp_path):
    path = run_copy / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[int(len(data) * 0.6)] ^= 0x01
    path.write_bytes(bytes(data))
    for args in (["train", "--resume", str(run_copy)], ["export", str(run_copy), "--out", str(tmp_path / "e")]):
        assert "is corrupted (its sha256" in one_error_line(run_cli(*args, check_rc=2))
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    assert "is corrupted" in one_error_line(run_cli("train", "--resume", str(run_copy), check_rc=2))
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_read_only_run_refuses_plots_and_resume(run_copy):
    from metabnn.train import checkpoint as ckpt

    state = ckpt.load_checkpoint(run_copy)
    state["progress"] = {"task": 1, "epoch": 1}  # an unfinished run, as an interruption leaves it
    ckpt.save_checkpoint(run_copy, {k: v for k, v in state.items()
                                    if k not in ("format", "version", "metabnn_version")})
    read_only(run_copy)
    before = listing(run_copy)
    line = one_error_line(run_cli_unprivileged("plots", str(run_copy)))
    assert "read-only" in line and "copy the run somewhere writable" in line
    line = one_error_line(run_cli_unprivileged("train", "--resume", str(run_copy), "--no-progress"))
    assert "--resume" in line and "read-only" in line
    assert listing(run_copy) == before


@pytest.mark.slow
def test_damaged_metrics_json_is_plotted_from_the_checkpoint(run_copy):
    (run_copy / "metrics.json").write_text('{"acc": [[5')
    proc = run_cli("plots", str(run_copy))
    assert "plotting the metrics saved in checkpoint.pt" in proc.stderr
    assert proc.stdout.count(".png") == 4


@pytest.mark.slow
def test_interrupted_first_epoch_leaves_a_resumable_run(tmp_path, monkeypatch, mnist_available):
    from metabnn.train import continual
    from metabnn.train.config import resolve_config

    config = resolve_config("demo", overrides=[*TINY, "data.stream.n_tasks=1", "train.epochs=1"])

    def interrupted(self, task, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(continual.ContinualTrainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        continual.train(config, tmp_path / "run", log=lambda s: None, progress=False)
    assert {"checkpoint.pt", "manifest.json", "config.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert not list(tmp_path.glob(".run.*.tmp"))
    monkeypatch.undo()
    proc = run_cli("train", "--resume", str(tmp_path / "run"), "--no-progress")
    assert "resuming" in proc.stdout and "task 1, epoch 1" in proc.stdout
    assert "weights flipped during this task: layer 1 " in proc.stdout and "output " in proc.stdout


def test_parser_has_ctrl_c_message_for_data_fetch():
    from metabnn import cli

    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    data = next(a for a in sub.choices["data"]._actions if isinstance(a, argparse._SubParsersAction))
    assert "verified files" in data.choices["fetch"].get_default("interrupted")


@pytest.mark.slow
def test_out_of_memory_is_one_line_and_writes_nothing(tmp_path, mnist_available):
    # the 2^20 x 2^20 layer (4 TiB) cannot be allocated anywhere; the first two layers are small
    proc = run_cli("train", "--preset", "demo", "--no-progress", "--set", "model.widths=[784,16,1048576,1048576,10]",
                   "--set", "data.stream.n_tasks=1", "--out", str(tmp_path / "run"), check_rc=2)
    assert "out of memory" in one_error_line(proc) and "smaller model.widths" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_run_being_trained_cannot_be_resumed_twice(run_copy):
    from metabnn.train import checkpoint as ckpt
    from metabnn.train.rundir import RunLock

    state = ckpt.load_checkpoint(run_copy)
    state["progress"] = {"task": 1, "epoch": 1}
    ckpt.save_checkpoint(run_copy, {k: v for k, v in state.items()
                                    if k not in ("format", "version", "metabnn_version")})
    before = (run_copy / "checkpoint.pt").read_bytes()
    lock = RunLock(run_copy)  # as a training process holds it
    try:
        line = one_error_line(run_cli("train", "--resume", str(run_copy), "--no-progress", check_rc=2))
    finally:
        lock.release()
    assert "is being trained right now by another metabnn process" in line and str(os.getpid()) in line
    assert (run_copy / "checkpoint.pt").read_bytes() == before


def test_a_verified_copy_of_a_checkpoint_reads_as_a_run(tmp_path, capsys):
    """What a deploy package (or a benchmark) does: copy a checkpoint, verify it by its own record."""
    from metabnn.train import checkpoint as ckpt

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ckpt.save_checkpoint(tmp_path / "a", _state())
    recorded = read_json(tmp_path / "a" / "manifest.json")["checkpoint"]["sha256"]
    shutil.copyfile(tmp_path / "a" / "checkpoint.pt", tmp_path / "b" / "checkpoint.pt")
    with pytest.raises(MetabnnError, match="no readable run manifest.json"):
        ckpt.load_checkpoint(tmp_path / "b")
    state, digest = ckpt.load_checkpoint_verified(tmp_path / "b", expected_sha256=recorded)
    ckpt.write_run_files(tmp_path / "b", state["config"], state["task_specs"], checkpoint_sha256=digest)
    assert ckpt.load_checkpoint(tmp_path / "b")["model"]["w"][0] == 1.0
    assert "warning" not in capsys.readouterr().err
