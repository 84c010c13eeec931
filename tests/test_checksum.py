"""CRC-32C kernel (the container's chunk checksum): golden vectors and streaming."""

from __future__ import annotations

import numpy as np
import pytest

from e2ecompress import _core

# Check values of CRC-32C (Castagnoli) from RFC 3720 (iSCSI), appendix B.4, and the usual "123456789" check.
GOLDEN = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


@pytest.mark.parametrize("data, expected", GOLDEN)
def test_golden(data, expected):
    assert _core.crc32c(data) == expected


def test_streaming_equals_one_shot():
    data = np.random.default_rng(0).integers(0, 256, 10_001, dtype=np.uint8).tobytes()
    for cut in (0, 1, 7, 8, 9, 4096, 10_000, 10_001):
        assert _core.crc32c(data[cut:], _core.crc32c(data[:cut])) == _core.crc32c(data)


def test_buffers_and_errors():
    arr = np.arange(100, dtype=np.float32)
    assert _core.crc32c(arr) == _core.crc32c(arr.tobytes()) == _core.crc32c(memoryview(arr.tobytes()))
    assert _core.crc32c(bytearray(b"123456789")) == 0xE3069283
    with pytest.raises(ValueError, match="contiguous"):
        _core.crc32c(np.arange(10, dtype=np.uint8)[::2])
    with pytest.raises(TypeError):
        _core.crc32c("text")
