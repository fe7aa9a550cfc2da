"""The IDX file format (MNIST, Fashion-MNIST), raw or gzipped.

Layout: two zero bytes, a type code, the number of dimensions, then one big-endian
uint32 per dimension, then the values in row-major order (multi-byte values big-endian).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from metabnn.atomic import atomic_write_bytes
from metabnn.errors import MetabnnError

_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("=") if v.itemsize > 1 else v: k for k, v in _TYPES.items()}


def read_bytes(path: str | Path) -> bytes:
    """The file's content, decompressed when it is gzipped (detected by its magic, not its name)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise MetabnnError(
            f"{path} is a damaged gzip file ({e}); delete it and fetch the dataset again"
        ) from None


def parse_idx(buf: bytes, what: str = "IDX data") -> torch.Tensor:
    """Decode an IDX buffer into a tensor (uint8 stays uint8; wider types become native-endian)."""

    def bad(reason: str) -> MetabnnError:
        return MetabnnError(f"{what} is not a valid IDX file ({reason}); delete it and fetch the dataset again")

    if len(buf) < 4:
        raise bad(f"only {len(buf)} bytes")
    zero, code, ndim = struct.unpack(">HBB", buf[:4])
    if zero != 0 or code not in _TYPES:
        raise bad(f"bad magic number 0x{buf[:4].hex()}")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise bad(f"header says {ndim} dimensions but the file ends at byte {len(buf)}")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = _TYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise bad(f"dims {list(dims)} need {expected} bytes, file has {len(buf)}")
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    # torch cannot hold big-endian data, and frombuffer views are read-only.
    return torch.from_numpy(arr.astype(dtype.newbyteorder("="), copy=True))


def read_idx(path: str | Path) -> torch.Tensor:
    """Read a raw or .gz IDX file; MetabnnError if it is malformed."""
    return parse_idx(read_bytes(path), what=str(path))


def encode_idx(array: np.ndarray | torch.Tensor) -> bytes:
    arr = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    native = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    if native not in _CODES:
        raise MetabnnError(f"IDX cannot store dtype {arr.dtype}; convert to uint8, int8, int16, int32, float32 or float64")
    code = _CODES[native]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=_TYPES[code]).tobytes()


def write_idx(path: str | Path, array: np.ndarray | torch.Tensor) -> None:
    """Write an IDX file atomically, gzipped when ``path`` ends in .gz."""
    data = encode_idx(array)
    if str(path).endswith(".gz"):
        # mtime=0 makes the .gz bytes reproducible, so checksums of written files are stable.
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
