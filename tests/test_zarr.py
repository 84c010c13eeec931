"""zarr arrays of jet images: zarr v3 with `E2EZarrCodec` as the serializer (plain and sharded), zarr v2
format with the numcodecs `E2ECodec` as the compressor; float32 and float64, bounded and lossless, in a
directory store; the codec's zarr v3 metadata and its checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_numcodecs import float64_images, jet_images

zarr = pytest.importorskip("zarr")
zarr_codec = pytest.importorskip("e2ecompress.codec.zarr_codec")

from e2ecompress.codec.numcodecs_codec import E2ECodec  # noqa: E402
from e2ecompress.errors import DecodeError  # noqa: E402

E2EZarrCodec = zarr_codec.E2EZarrCodec
MODES = [{"mode": "lossless"}, {"mode": "bounded", "max_error": 0.01}]
CHUNKS = (2, 3, 125, 125)


def _images(dtype: str) -> np.ndarray:
    """5 jets (the last chunk is partial), float64 ones not float32-exact."""
    rng = np.random.default_rng(21)
    return jet_images(rng, 5) if dtype == "f4" else float64_images(rng, 5)


def _check(read: np.ndarray, images: np.ndarray, kw: dict) -> None:
    assert read.dtype == images.dtype and read.shape == images.shape
    if kw["mode"] == "lossless":
        assert np.array_equal(read.view(np.uint8), images.view(np.uint8))
    else:
        assert np.max(np.abs(read - images)) <= kw["max_error"]
        assert np.all(read[images == 0] == 0)


@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("kw", MODES, ids=["lossless", "bounded"])
def test_zarr_v3_serializer(tmp_path, dtype, kw):
    images = _images(dtype)
    path = tmp_path / "jets.zarr"
    z = zarr.create_array(
        str(path),
        shape=images.shape,
        chunks=CHUNKS,
        dtype=dtype,
        serializer=E2EZarrCodec(**kw),
        compressors=None,
    )
    z[:] = images
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["codecs"] == [E2EZarrCodec(**kw).to_dict()] and meta["codecs"][0]["name"] == "e2ecompress"
    chunk = (path / "c" / "0" / "0" / "0" / "0").read_bytes()
    assert chunk[:4] == b"E2EC"  # the chunk is an E2ECodec frame
    assert np.array_equal(E2ECodec(**kw).decode(chunk), zarr.open_array(str(path))[:2])
    again = zarr.open_array(str(path), mode="r")
    _check(again[:], images, kw)
    _check(again[3:5, 1], images[3:5, 1], kw)


@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("kw", MODES, ids=["lossless", "bounded"])
def test_zarr_v2_compressor(tmp_path, dtype, kw):
    images = _images(dtype)
    path = tmp_path / "jets.zarr"
    z = zarr.create_array(
        str(path), shape=images.shape, chunks=CHUNKS, dtype=dtype, compressors=E2ECodec(**kw), zarr_format=2
    )
    z[:] = images
    meta = json.loads((path / ".zarray").read_text())
    assert meta["compressor"]["id"] == "e2ecompress" and meta["dtype"] == "<" + dtype
    _check(zarr.open_array(str(path), mode="r")[:], images, kw)


def test_zarr_v3_sharded(tmp_path):
    images = _images("f4")
    z = zarr.create_array(
        str(tmp_path / "jets.zarr"), shape=images.shape, chunks=(1, 3, 125, 125), shards=(2, 3, 125, 125),
        dtype="f4", serializer=E2EZarrCodec(mode="lossless"), compressors=None,
    )  # fmt: skip
    z[:] = images
    assert np.array_equal(zarr.open_array(str(tmp_path / "jets.zarr"))[1:4], images[1:4])


def test_codec_metadata():
    codec = E2EZarrCodec(mode="bounded", max_error=0.02, channels=["ECAL", "HCAL", "Tracks"])
    d = codec.to_dict()
    assert d == {
        "name": "e2ecompress",
        "configuration": {
            "mode": "bounded", "quality": None, "max_error": 0.02, "predictor": "none",
            "keep_fraction": 1.0, "channels": ["ECAL", "HCAL", "Tracks"], "model": None,
        },
    }  # fmt: skip
    assert E2EZarrCodec.from_dict(json.loads(json.dumps(d))) == codec
    assert hash(E2EZarrCodec.from_dict(d)) == hash(codec)
    assert zarr.registry.get_codec_class("e2ecompress") is E2EZarrCodec
    with pytest.raises(ValueError, match="unknown e2ecompress codec options: level"):
        E2EZarrCodec.from_dict({"name": "e2ecompress", "configuration": {"mode": "lossless", "level": 3}})
    with pytest.raises(ValueError, match="max_error"):
        E2EZarrCodec(mode="bounded")
    with pytest.raises(NotImplementedError):
        codec.compute_encoded_size(100, None)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"dtype": "i4", "chunks": CHUNKS}, "float32 or float64"),
        ({"dtype": "f4", "chunks": (2, 1, 125, 125)}, "whole images with all 3 channels"),
        ({"dtype": "f4", "chunks": (2, 3, 64, 125)}, "whole images"),
        ({"dtype": "f4", "chunks": (2, 3, 125, 125), "shape": (5, 2, 125, 125)}, "arrays"),
    ],
)
def test_bad_arrays(kw, match):
    kw = {"shape": (5, 3, 125, 125), **kw}
    with pytest.raises(ValueError, match=match):
        zarr.create_array(
            zarr.storage.MemoryStore(), serializer=E2EZarrCodec(mode="lossless"), compressors=None, **kw
        )


def test_corrupt_chunk_raises(tmp_path):
    images = _images("f4")
    path = tmp_path / "jets.zarr"
    z = zarr.create_array(
        str(path), shape=images.shape, chunks=CHUNKS, dtype="f4", serializer=E2EZarrCodec(mode="lossless"),
        compressors=None,
    )  # fmt: skip
    z[:] = images
    chunk = path / "c" / "0" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="CRC32C"):
        zarr.open_array(str(path))[:2]
