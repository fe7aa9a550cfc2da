import json

import pytest
import torch

import metabnn.data.tasks as tasks_mod
from metabnn.data import ArrayDataset, build_tasks, load_dataset, permutation, task_from_spec
from metabnn.errors import MetabnnError


def _fake(name, n=30, m=7, shape=(4, 5), classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(
        name=name,
        train_x=torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8),
        train_y=torch.randint(0, classes, (n,), generator=g),
        test_x=torch.randint(0, 256, (m, *shape), generator=g, dtype=torch.uint8),
        test_y=torch.randint(0, classes, (m,), generator=g),
        num_classes=classes,
        source="fake",
    )


@pytest.fixture
def fake_data(monkeypatch):
    sets = {
        "mnist": _fake("mnist", seed=1),
        "fashion-mnist": _fake("fashion-mnist", seed=2),
        "cifar10": _fake("cifar10", shape=(3, 2, 2), seed=3),
    }
    monkeypatch.setattr(tasks_mod, "load_dataset", lambda name, data_dir=None: sets[name])
    return sets


def test_permutation_deterministic():
    a, b = permutation(3, 784), permutation(3, 784)
    assert a.dtype == torch.int64 and torch.equal(a, b)
    assert torch.equal(torch.sort(a).values, torch.arange(784))
    assert not torch.equal(a, permutation(4, 784))


def test_permuted_tasks(fake_data):
    ds = fake_data["mnist"]
    ts = build_tasks({"kind": "permuted", "dataset": "mnist", "n_tasks": 3, "seed": 5})
    assert [t.name for t in ts] == ["pmnist-1", "pmnist-2", "pmnist-3"]
    flat = ds.train_x.reshape(30, -1)
    for k, t in enumerate(ts):
        perm = permutation(5 + k, 20)
        assert t.spec["seed"] == 5 + k and t.spec["permutation"] == perm.tolist()
        assert t.train_x.shape == (30, 20) and t.train_x.dtype == torch.uint8
        assert torch.equal(t.train_x, flat[:, perm])
        assert torch.equal(t.test_x, ds.test_x.reshape(7, -1)[:, perm])
        assert torch.equal(t.train_y, ds.train_y) and t.num_classes == 10
    assert not torch.equal(ts[0].train_x, ts[1].train_x)


def _same(a, b):
    assert a.name == b.name and a.num_classes == b.num_classes and a.spec == b.spec
    for f in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


@pytest.mark.parametrize(
    "stream",
    [
        {"kind": "permuted", "dataset": "mnist", "n_tasks": 2, "seed": 0},
        {"kind": "sequence", "datasets": ["mnist", "fashion-mnist"]},
        {"kind": "stream", "dataset": "fashion-mnist", "n_subsets": 4, "seed": 1},
    ],
)
def test_spec_round_trip_through_json(fake_data, stream):
    for t in build_tasks(stream):
        _same(task_from_spec(json.loads(json.dumps(t.spec))), t)


def test_spec_uses_recorded_permutation(fake_data, monkeypatch):
    t = build_tasks({"kind": "permuted", "dataset": "mnist", "n_tasks": 1, "seed": 0})[0]
    spec = json.loads(json.dumps(t.spec))
    # If torch's RNG changed, the recorded permutation must still win.
    monkeypatch.setattr(tasks_mod, "permutation", lambda seed, n: torch.arange(n))
    _same(task_from_spec(spec), t)


@pytest.mark.parametrize(
    "perm, match",
    [
        (list(range(19)), "not a permutation of range\\(20\\)"),
        ([0] * 20, "not a permutation"),
        ([*range(19), 20], "not a permutation"),
        ("0,1", "list of integers"),
    ],
)
def test_spec_bad_permutation(fake_data, perm, match):
    t = build_tasks({"kind": "permuted", "dataset": "mnist", "n_tasks": 1, "seed": 0})[0]
    spec = {**t.spec, "permutation": perm}
    with pytest.raises(MetabnnError, match=match):
        task_from_spec(spec)
    del spec["permutation"]
    with pytest.raises(MetabnnError, match="lacks 'permutation'"):
        task_from_spec(spec)


def test_stream_split(fake_data):
    ds = fake_data["fashion-mnist"]
    ts = build_tasks({"kind": "stream", "dataset": "fashion-mnist", "n_subsets": 4, "seed": 0})
    assert [t.name for t in ts] == [f"fmnist-subset-{i}" for i in range(1, 5)]
    sizes = [t.train_x.shape[0] for t in ts]
    assert sum(sizes) == 30 and max(sizes) - min(sizes) <= 1
    order = permutation(0, 30)
    idx = torch.cat([order[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(4)])
    assert torch.equal(torch.sort(idx).values, torch.arange(30))  # disjoint and complete
    rows = torch.cat([t.train_x for t in ts])
    assert torch.equal(rows, ds.train_x.reshape(30, -1)[order])
    for i, t in enumerate(ts):
        assert t.spec["subset"] == i and t.spec["n_subsets"] == 4 and t.spec["seed"] == 0
        assert torch.equal(t.test_x, ds.test_x.reshape(7, -1))


def test_stream_detects_changed_subset(fake_data):
    t = build_tasks({"kind": "stream", "dataset": "fashion-mnist", "n_subsets": 3, "seed": 0})[1]
    with pytest.raises(MetabnnError, match="differs from the recorded one"):
        task_from_spec({**t.spec, "indices_sha256": "0" * 64})


def test_sequence(fake_data):
    ts = build_tasks({"kind": "sequence", "datasets": ["mnist", "fashion-mnist"]})
    assert [t.name for t in ts] == ["mnist", "fashion-mnist"]
    assert ts[0].train_x.shape == (30, 20)


def test_sequence_shape_mismatch(fake_data):
    with pytest.raises(MetabnnError, match="sequence datasets differ: mnist has 20 inputs.*cifar10 has 12"):
        build_tasks({"kind": "sequence", "datasets": ["mnist", "cifar10"]})


@pytest.mark.parametrize(
    "stream, match",
    [
        ({"kind": "rotated", "dataset": "mnist"}, "unknown kind 'rotated'; use one of permuted"),
        ({"dataset": "mnist"}, "lacks 'kind'"),
        ([1, 2], "must be a mapping"),
        ({"kind": "permuted", "dataset": "mnist", "seed": 0}, "lacks 'n_tasks'"),
        ({"kind": "permuted", "dataset": "mnist", "n_tasks": 2}, "lacks 'seed'"),
        ({"kind": "permuted", "n_tasks": 2, "seed": 0}, "lacks 'dataset'"),
        ({"kind": "permuted", "dataset": "mnist", "n_tasks": 0, "seed": 0}, "n_tasks=0; set n_tasks to 1 or more"),
        ({"kind": "permuted", "dataset": "mnist", "n_tasks": "6", "seed": 0}, "expected int"),
        ({"kind": "permuted", "dataset": "mnist", "n_tasks": True, "seed": 0}, "expected int"),
        ({"kind": "sequence", "datasets": []}, "non-empty list"),
        ({"kind": "stream", "dataset": "fashion-mnist", "n_subsets": 31, "seed": 0}, "use 1..30"),
        ({"kind": "stream", "dataset": "fashion-mnist", "seed": 0}, "lacks 'n_subsets'"),
    ],
)
def test_bad_stream_configs(fake_data, stream, match):
    with pytest.raises(MetabnnError, match=match):
        build_tasks(stream)


def test_unknown_dataset_in_stream():
    with pytest.raises(MetabnnError, match="unknown dataset 'kmnist'"):
        build_tasks({"kind": "permuted", "dataset": "kmnist", "n_tasks": 1, "seed": 0})


def test_real_permuted_mnist():
    try:
        load_dataset("mnist")
    except MetabnnError as e:
        pytest.skip(f"MNIST not available offline: {e}")
    ts = build_tasks({"kind": "permuted", "dataset": "mnist", "n_tasks": 2, "seed": 0})
    assert [t.name for t in ts] == ["pmnist-1", "pmnist-2"]
    assert ts[0].train_x.shape == (60000, 784) and ts[0].test_x.shape == (10000, 784)
    assert len(ts[1].spec["permutation"]) == 784
    _same(task_from_spec(json.loads(json.dumps(ts[1].spec))), ts[1])
