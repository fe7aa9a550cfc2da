"""Metric formulas, configuration presets, overrides and their errors."""

import pytest
import torch

from metabnn.errors import MetabnnError
from metabnn.train.config import PRESETS, resolve_config
from metabnn.train.metrics import backward_transfer, flip_fractions, mean_final_accuracy


def test_bwt_and_mean_final():
    acc = [[90.0, 10.0, 10.0], [80.0, 95.0, 10.0], [70.0, 85.0, 99.0]]
    assert mean_final_accuracy(acc) == pytest.approx((70 + 85 + 99) / 3)
    assert backward_transfer(acc) == pytest.approx(((70 - 90) + (85 - 95)) / 2)
    assert backward_transfer([[90.0]]) == 0.0


def test_flip_fraction():
    a = {"l": torch.tensor([1, 1, -1, -1], dtype=torch.int8)}
    b = {"l": torch.tensor([1, -1, -1, 1], dtype=torch.int8)}
    assert flip_fractions(a, b) == {"l": 0.5}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves(name):
    cfg = resolve_config(name)
    assert cfg["model"]["widths"][0] == 784


def test_paper_preset_matches_paper():
    cfg = resolve_config("pmnist-paper")
    assert cfg["model"]["widths"] == [784, 4096, 4096, 10]
    assert cfg["train"]["epochs"] == 40 and cfg["train"]["batch_size"] == 100
    assert cfg["optim"]["lr"] == 0.005 and cfg["optim"]["weight_decay"] == 1e-7
    assert cfg["optim"]["meta"] == 1.35 and cfg["data"]["stream"]["n_tasks"] == 6
    assert resolve_config("pmnist-cpu-nometa")["optim"]["meta"] == 0.0


def test_overrides_parse_json_and_stream_keys():
    cfg = resolve_config("demo", overrides=["optim.meta=[1,2,3]", "data.stream.n_tasks=4",
                                             "train.scenario=domain"])
    assert cfg["optim"]["meta"] == [1, 2, 3]
    assert cfg["data"]["stream"] == {"kind": "permuted", "dataset": "mnist", "n_tasks": 4, "seed": 0}
    assert cfg["train"]["scenario"] == "domain"


@pytest.mark.parametrize("override,match", [
    ("optim.metta=1", "unknown config key 'optim.metta'"),
    ("optim.meta=-0.5", "must be >= 0"),
    ("model.widths=[]", "empty"),
    ("train.epochs=0", "positive"),
    ("train.scenario=class", "task' or 'domain"),
    ("baseline.kind=lwf", "none, ewc or si"),
    ("optim", "key=value"),
    ("optim.meta=[1,2]", "3 layers"),
])
def test_bad_config(override, match):
    with pytest.raises(MetabnnError, match=match):
        resolve_config("demo", overrides=[override])


def test_unknown_preset_and_bad_file(tmp_path):
    with pytest.raises(MetabnnError, match="unknown preset"):
        resolve_config("nope")
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(MetabnnError, match="not valid JSON"):
        resolve_config(config_file=bad)
    with pytest.raises(MetabnnError, match="does not exist"):
        resolve_config(config_file=tmp_path / "missing.json")
    good = tmp_path / "g.json"
    good.write_text('{"optim": {"meta": 2.0}, "train": {"epochs": 3}}')
    cfg = resolve_config(config_file=good)
    assert cfg["optim"]["meta"] == 2.0 and cfg["train"]["epochs"] == 3
