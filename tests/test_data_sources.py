import time
from pathlib import Path

import numpy as np
import pytest
import torch

import metabnn.data.checksums as checksums
import metabnn.data.sources as sources
from metabnn.data import data_cache_dir, fetch_dataset, load_dataset
from metabnn.data.catalog import FileSum, dataset_spec
from metabnn.data.checksums import Verifier
from metabnn.data.idx import write_idx
from metabnn.errors import MetabnnError


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("METABNN_DATA", str(cache))
    return cache


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(url, dest, timeout=10.0):
        calls.append(url)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(sources, "download", refuse)
    return calls


def _fake_mnist(d: Path, n=5):
    rng = np.random.default_rng(0)
    write_idx(d / "train-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(d / "train-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))
    write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(d / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("METABNN_DATA", str(tmp_path))
    assert data_cache_dir() == tmp_path
    monkeypatch.delenv("METABNN_DATA")
    assert data_cache_dir() == Path.home() / ".cache" / "metabnn" / "data"


def test_checksum_mismatch_names_file(tmp_path, tmp_cache, no_network):
    _fake_mnist(tmp_path / "data")
    with pytest.raises(MetabnnError) as e:
        load_dataset("mnist", data_dir=tmp_path / "data")
    msg = str(e.value)
    assert "checksum mismatch for" in msg and "-ubyte" in msg
    assert "expected md5" in msg and "got" in msg and "fetch the dataset again" in msg
    assert "\n" not in msg
    assert not (tmp_cache / "mnist" / "arrays.pt").exists()


def test_tampered_copy_of_real_file(tmp_path, tmp_cache, no_network):
    real = Path("/usr/share/datasets/fashion-mnist")
    if not real.is_dir():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    data = tmp_path / "data"
    data.mkdir()
    for f in real.iterdir():
        (data / f.name).symlink_to(f)
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    import gzip

    labels = bytearray(gzip.decompress((real / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10  # still a valid IDX file, but not the official one
    (data / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
    with pytest.raises(MetabnnError, match=r"checksum mismatch for .*t10k-labels-idx1-ubyte: expected md5 15d48437"):
        load_dataset("fashion-mnist", data_dir=data)


def test_missing_dataset_lists_places(tmp_path, tmp_cache, no_network):
    t0 = time.monotonic()
    with pytest.raises(MetabnnError) as e:
        load_dataset("cifar10", data_dir=tmp_path / "nowhere")
    msg = str(e.value)
    assert time.monotonic() - t0 < 5
    assert msg.startswith("dataset 'cifar10' not found: looked in")
    assert str(tmp_path / "nowhere") in msg
    assert str(tmp_cache / "cifar10") in msg
    assert "network disabled" in msg
    assert "--data-dir" in msg and "METABNN_DATA" in msg and "cifar-10-python.tar.gz" in msg
    assert "\n" not in msg
    assert no_network == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]


def test_partial_set_is_reported(tmp_path, tmp_cache, no_network):
    d = tmp_path / "data" / "cifar-100-python"
    d.mkdir(parents=True)
    (d / "train").write_bytes(b"x")
    with pytest.raises(MetabnnError, match=r"cifar-100-python has only 1 of 2 files"):
        load_dataset("cifar100", data_dir=tmp_path / "data")


def test_unknown_dataset():
    with pytest.raises(MetabnnError, match="unknown dataset 'svhn'; use one of mnist, fashion-mnist"):
        load_dataset("svhn")


def test_aliases():
    assert dataset_spec("FMNIST").name == "fashion-mnist"
    assert dataset_spec("cifar-10").name == "cifar10"


def test_verifier_stamps_skip_rehash(tmp_path, monkeypatch):
    f = tmp_path / "blob"
    f.write_bytes(b"hello")
    expected = FileSum(5, "5d41402abc4b2a76b9719d911017c592")
    calls = []
    real = checksums.content_md5
    monkeypatch.setattr(checksums, "content_md5", lambda p: calls.append(p) or real(p))

    v = Verifier(tmp_path / "stamps")
    v.verify(f, expected)
    v.save()
    Verifier(tmp_path / "stamps").verify(f, expected)
    assert len(calls) == 1  # the second check used the stamp

    f.write_bytes(b"jello")  # same size; mtime changes
    import os

    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(MetabnnError, match="checksum mismatch"):
        Verifier(tmp_path / "stamps").verify(f, expected)
    assert len(calls) == 2


def _mnist_or_skip():
    try:
        return load_dataset("mnist")
    except MetabnnError as e:
        pytest.skip(f"MNIST not available offline: {e}")


def test_real_mnist():
    ds = _mnist_or_skip()
    assert ds.name == "mnist" and ds.num_classes == 10
    assert ds.train_x.shape == (60000, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (10000, 28, 28) and ds.test_x.dtype == torch.uint8
    assert ds.train_y.shape == (60000,) and ds.train_y.dtype == torch.int64
    assert int(ds.train_y.min()) == 0 and int(ds.train_y.max()) == 9
    assert int(ds.test_y.min()) == 0 and int(ds.test_y.max()) == 9
    assert int(ds.train_x.max()) == 255
    # The second load comes from the parsed-array cache.
    t0 = time.monotonic()
    again = load_dataset("mnist")
    assert time.monotonic() - t0 < 1.0
    assert torch.equal(again.train_x, ds.train_x) and torch.equal(again.test_y, ds.test_y)


def test_fetch_mnist_returns_dir():
    _mnist_or_skip()
    d = fetch_dataset("mnist")
    assert any(d.glob("train-images-idx3-ubyte*"))


def test_real_fashion_mnist(tmp_cache, no_network):
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    ds = load_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 28, 28) and ds.test_x.shape == (10000, 28, 28)
    assert sorted(ds.train_y.unique().tolist()) == list(range(10))
    assert "fashion-mnist" in ds.source
    assert (tmp_cache / "fashion-mnist" / "arrays.pt").is_file()
    again = load_dataset("fashion-mnist")
    assert torch.equal(again.train_x, ds.train_x)


def test_digits():
    pytest.importorskip("sklearn")
    ds = load_dataset("digits")
    assert ds.train_x.shape == (1500, 8, 8) and ds.test_x.shape == (297, 8, 8)
    assert ds.train_x.dtype == torch.uint8 and int(ds.train_x.max()) == 255
