import gzip

import numpy as np
import pytest
import torch

from metabnn.data.idx import encode_idx, parse_idx, read_idx, write_idx
from metabnn.errors import MetabnnError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([7, 0, 9], dtype=np.uint8),
        np.array([[-5, 70000], [1, 2]], dtype=np.int32),
        np.array([1.5, -2.25], dtype=np.float32),
    ],
)
def test_round_trip(tmp_path, suffix, array):
    path = tmp_path / f"x-idx{suffix}"
    write_idx(path, array)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    got = read_idx(path)
    assert tuple(got.shape) == array.shape
    np.testing.assert_array_equal(got.numpy(), array)
    if array.dtype == np.uint8:
        assert got.dtype == torch.uint8


def test_header_is_big_endian():
    buf = encode_idx(np.zeros((2, 300), dtype=np.uint8))
    assert buf[:4] == b"\x00\x00\x08\x02"
    assert buf[4:12] == (2).to_bytes(4, "big") + (300).to_bytes(4, "big")


def test_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(encode_idx(np.array([1, 2, 3], dtype=np.uint8))))
    assert read_idx(path).tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "buf, reason",
    [
        (b"", "only 0 bytes"),
        (b"\x00\x01\x08\x01" + (3).to_bytes(4, "big") + b"abc", "bad magic"),
        (b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc", "bad magic"),
        (b"\x00\x00\x08\x03\x00\x00", "file ends"),
        (b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + b"abc", "need 12 bytes"),
        (b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"abc", "need 10 bytes"),
    ],
)
def test_malformed(buf, reason):
    with pytest.raises(MetabnnError, match=reason):
        parse_idx(buf)


def test_malformed_file_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03junk")
    with pytest.raises(MetabnnError, match="train-images-idx3-ubyte is not a valid IDX file"):
        read_idx(path)


def test_damaged_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros(100, dtype=np.uint8)))[:-10])
    with pytest.raises(MetabnnError, match="damaged gzip"):
        read_idx(path)
