"""The numcodecs codec class: config round trip, registry, encode/decode within the bound, corrupt frames."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sparse_images

from e2ecompress.codec.numcodecs_codec import E2ECodec
from e2ecompress.errors import DecodeError

numcodecs = pytest.importorskip("numcodecs")


@pytest.fixture
def images():
    return sparse_images(np.random.default_rng(3), 6)


def test_config_round_trip_and_registry(images):
    numcodecs.register_codec(E2ECodec)
    codec = E2ECodec(mode="bounded", max_error=0.02)
    again = numcodecs.get_codec(codec.get_config())
    assert isinstance(again, E2ECodec) and again.get_config() == codec.get_config()
    assert np.array_equal(again.decode(codec.encode(images)), codec.decode(codec.encode(images)))


@pytest.mark.parametrize("kw", [{"mode": "bounded", "max_error": 0.05}, {"mode": "lossless"}])
def test_encode_decode(images, kw):
    codec = E2ECodec(**kw)
    frame = codec.encode(images)
    out = codec.decode(frame)
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.all((out == 0) == (images == 0)) or kw["mode"] == "bounded"
    assert np.all(out[images == 0] == 0)
    bound = kw.get("max_error", 0.0)
    assert np.max(np.abs(out - images)) <= bound
    single = codec.decode(codec.encode(images[2]))  # one image [C, H, W]
    assert single.shape == images.shape[1:]
    buf = np.empty_like(images)
    assert codec.decode(frame, out=buf) is buf and np.array_equal(buf, out)


def test_corrupt_frames_raise(images):
    codec = E2ECodec(mode="bounded", max_error=0.01)
    frame = bytearray(codec.encode(images))
    for pos in np.random.default_rng(0).integers(0, len(frame), 40):
        bad = bytearray(frame)
        bad[pos] ^= 0x10
        with pytest.raises(DecodeError):
            codec.decode(bytes(bad))
    with pytest.raises(DecodeError):
        codec.decode(bytes(frame[: len(frame) // 2]))


def test_bad_input():
    codec = E2ECodec(mode="bounded", max_error=0.01)
    with pytest.raises(ValueError, match="expected images"):
        codec.encode(np.zeros((2, 5, 8, 8), np.float32))
    nan = np.zeros((1, 3, 8, 8), np.float32)
    nan[0, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(nan)
