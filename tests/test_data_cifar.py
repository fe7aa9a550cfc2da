import pickle

import numpy as np
import pytest
import torch

from metabnn.data import load_dataset
from metabnn.data.cifar import read_cifar
from metabnn.errors import MetabnnError


def _write_batch(path, n, label_key, rng, extra=None):
    # Like the official files: Python 2 pickles with bytes keys.
    entry = {
        b"batch_label": b"testing batch",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key.encode(): rng.integers(0, 100 if label_key == "fine_labels" else 10, size=n).tolist(),
        b"filenames": [b"x.png"] * n,
    }
    entry.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)
    return entry


def _make_cifar10(root, n=4):
    rng = np.random.default_rng(0)
    d = root / "cifar-10-batches-py"
    entries = [_write_batch(d / f"data_batch_{i}", n, "labels", rng) for i in range(1, 6)]
    test = _write_batch(d / "test_batch", n, "labels", rng)
    return d, entries, test


def test_cifar10_layout(tmp_path):
    d, entries, test = _make_cifar10(tmp_path)
    for where in (tmp_path, d):  # the parent or the batch folder itself
        train_x, train_y, test_x, test_y = read_cifar(where, "cifar10")
        assert train_x.shape == (20, 3, 32, 32) and train_x.dtype == torch.uint8
        assert train_y.dtype == torch.int64 and train_y.shape == (20,)
        assert test_x.shape == (4, 3, 32, 32)
        # Rows are channel-major: the first 1024 bytes are the red plane.
        row = entries[1][b"data"][0]
        assert torch.equal(train_x[4, 0].flatten(), torch.from_numpy(row[:1024]))
        assert torch.equal(train_x[4, 2, 31], torch.from_numpy(row[-32:]))
        assert train_y[4:8].tolist() == entries[1][b"labels"]
        assert test_y.tolist() == test[b"labels"]


def test_cifar100_layout(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-100-python"
    coarse = {b"coarse_labels": [0] * 6}
    train = _write_batch(d / "train", 6, "fine_labels", rng, coarse)
    test = _write_batch(d / "test", 3, "fine_labels", rng, {b"coarse_labels": [0] * 3})
    train_x, train_y, test_x, test_y = read_cifar(tmp_path, "cifar100")
    assert train_x.shape == (6, 3, 32, 32) and test_x.shape == (3, 3, 32, 32)
    assert train_y.tolist() == train[b"fine_labels"]
    assert test_y.tolist() == test[b"fine_labels"]


def test_missing_batches(tmp_path):
    with pytest.raises(MetabnnError, match="holds no cifar10 batches"):
        read_cifar(tmp_path, "cifar10")


def test_not_a_pickle(tmp_path):
    d, _, _ = _make_cifar10(tmp_path)
    (d / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(MetabnnError, match="data_batch_3 is not a CIFAR pickle batch"):
        read_cifar(d, "cifar10")


def test_wrong_variant_keys(tmp_path):
    d, _, _ = _make_cifar10(tmp_path)
    for name in ("train", "test"):
        (d / name).write_bytes((d / "test_batch").read_bytes())
    with pytest.raises(MetabnnError, match="lacks 'data' or 'fine_labels'"):
        read_cifar(d, "cifar100")


def test_load_dataset_verifies_cifar_checksums(tmp_path, monkeypatch):
    # Generated batches are not the official ones, so loading them through the
    # catalog must stop at the checksum check, naming the file.
    monkeypatch.setenv("METABNN_DATA", str(tmp_path / "cache"))
    _make_cifar10(tmp_path / "data")
    with pytest.raises(MetabnnError, match=r"checksum mismatch for .*data_batch_\d: expected md5"):
        load_dataset("cifar10", data_dir=tmp_path / "data")


def test_download_path_extracts_into_cache(tmp_path, monkeypatch):
    # The real mirrors are unreachable here, so serve a generated archive and pin
    # its checksums in a copy of the catalog entry.
    import dataclasses
    import shutil
    import tarfile

    import metabnn.data.sources as sources
    from metabnn.data.catalog import DATASETS, Download, FileSum
    from metabnn.data.checksums import file_md5

    src, _, _ = _make_cifar10(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    real = DATASETS["cifar10"]
    spec = dataclasses.replace(
        real,
        files={n: FileSum(None, file_md5(src / n)) for n in real.files},
        downloads=(Download("https://example.invalid/c.tar.gz", archive.name, file_md5(archive)),),
    )
    monkeypatch.setattr(sources, "download", lambda url, dest, timeout=10.0: shutil.copy(archive, dest))
    monkeypatch.setenv("METABNN_DATA", str(tmp_path / "cache"))
    found = sources.locate(spec)
    assert found.source.endswith("(downloaded)")
    assert found.directory == tmp_path / "cache" / "cifar10"
    assert sorted(p.name for p in found.directory.iterdir()) == sorted(real.files)
    assert read_cifar(found.directory, "cifar10")[0].shape == (20, 3, 32, 32)
