"""The numcodecs codec class: numcodecs' own conformance checks (numcodecs.tests.common) in every mode,
buffers and `out`, float64 kept, config round trip, registry, encode/decode within the bound, corrupt
frames, and frames of earlier releases (tests/fixtures/numcodecs, laid out as numcodecs' helper wants)."""

from __future__ import annotations

import array
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import sparse_images

from e2ecompress.codec.numcodecs_codec import E2ECodec
from e2ecompress.errors import DecodeError

numcodecs = pytest.importorskip("numcodecs")
common = pytest.importorskip("numcodecs.tests.common")

FIXTURES = Path(__file__).parent / "fixtures" / "numcodecs"
MODES = {
    "lossless": {"mode": "lossless"},
    "bounded": {"mode": "bounded", "max_error": 0.01},
    "lossy": {"mode": "lossy", "quality": 3},
}
PRECISION = {"lossless": None, "bounded": 2}  # decimals for numcodecs' fuzzy compare (|d| < 1.5e-2)


def jet_images(rng: np.random.Generator, n: int, size: int = 125, dtype=np.float32) -> np.ndarray:
    """[n, 3, size, size]: ~1% positive pixels, HCAL (channel 1) constant on 5x5 towers."""
    images = sparse_images(rng, n, 3, size, occupancy=0.01)
    g = -(-size // 5)
    towers = np.where(rng.random((n, g, g)) < 0.05, rng.exponential(2.0, (n, g, g)), 0.0)
    images[:, 1] = towers.repeat(5, 1).repeat(5, 2)[:, :size, :size]
    return images.astype(dtype)


def float64_images(rng: np.random.Generator, n: int, size: int = 125) -> np.ndarray:
    """Images whose float64 values are not float32 numbers (plus -0.0 and a float64 subnormal)."""
    images = jet_images(rng, n, size, np.float64)
    hit = images != 0
    images[hit] *= 1.0 + rng.uniform(-1e-6, 1e-6, int(hit.sum()))
    images[0, 0, 0, 0] = -0.0
    images[0, 2, 0, 1] = 5e-324
    return images


@pytest.fixture
def images():
    return sparse_images(np.random.default_rng(3), 6)


@pytest.fixture
def jets():
    return jet_images(np.random.default_rng(11), 3)


@pytest.fixture
def lossy_ready(request):
    """Lossy mode needs the ml extra (torch, safetensors) and the shipped latent model."""
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    request.getfixturevalue("one_torch_thread")


def _codec(mode: str, **kw) -> E2ECodec:
    return E2ECodec(**MODES[mode], **kw)


def _buffers(arr: np.ndarray) -> list:
    raw = arr.tobytes(order="A")
    return [arr, raw, bytearray(raw), array.array("b", raw), memoryview(raw)]


# --- numcodecs conformance (numcodecs.tests.common) ---------------------------------------------------------


@pytest.mark.parametrize("dtype", ["<f4", "<f8"])
@pytest.mark.parametrize("mode", ["lossless", "bounded"])
def test_check_encode_decode(jets, mode, dtype):
    """ndarray, bytes, bytearray and array.array in; bytes, bytearray, array.array, uint8 arrays in to
    decode, and decoding into an ndarray and into a bytearray."""
    codec = _codec(mode, dtype=dtype)
    arr = jets.astype(dtype)
    for a in (arr, arr[1], np.asfortranarray(arr)):
        common.check_encode_decode(a, codec, precision=PRECISION[mode])


@pytest.mark.parametrize("mode", ["lossless", "bounded"])
def test_check_config_repr_and_errors(mode, monkeypatch):
    codec = _codec(mode)
    common.check_config(codec)
    common.check_config(_codec(mode, dtype="<f8", image_size=(32, 40), channels=["a", "b"]))
    monkeypatch.setattr(common, "E2ECodec", E2ECodec, raising=False)  # check_repr evals in its module
    common.check_repr(repr(codec))
    if mode == "lossless":
        common.check_repr(
            "E2ECodec(mode='lossless', quality=None, max_error=None, predictor='none', keep_fraction=1.0, "
            "channels=['ECAL', 'HCAL', 'Tracks'], model=None, dtype='<f4', image_size=[125, 125])"
        )
    common.check_err_encode_object_buffer(codec)
    for dtype, size in (("<f4", (4, 5)), ("<f8", (2, 5))):  # np.arange(10) is 80 raw bytes: one image
        common.check_err_decode_object_buffer(_codec(mode, channels=["x"], dtype=dtype, image_size=size))


def test_conformance_lossy(jets, lossy_ready, monkeypatch):
    """Lossy mode (latent model): the contract's buffer handling, with the codec's own error as tolerance."""
    codec = _codec("lossy")
    ref = codec.decode(codec.encode(jets))
    assert ref.dtype == np.float32 and np.all((ref == 0) == (jets == 0))
    err = float(np.max(np.abs(ref - jets)))
    decimals = int(np.floor(-np.log10(max(err, 1e-3) / 1.5)))
    common.check_encode_decode(jets, codec, precision=decimals)
    for buf in _buffers(jets):
        assert np.array_equal(codec.decode(codec.encode(buf)).reshape(jets.shape), ref)
    common.check_config(codec)
    monkeypatch.setattr(common, "E2ECodec", E2ECodec, raising=False)
    common.check_repr(repr(codec))
    common.check_err_encode_object_buffer(codec)
    with pytest.raises(TypeError):  # check_err_decode_object_buffer's np.arange(10) holds no 3-channel image
        codec.decode(codec.encode(jets), out=np.empty(jets.size, object))


def _compat(prefix: str, arrays, codecs, precision, monkeypatch):
    where = FIXTURES / "fixture" / "e2ecompress" / prefix
    assert (where / "array.00.npy").exists() and (where / "codec.00" / "encoded.00.dat").exists(), where
    monkeypatch.chdir(FIXTURES)  # numcodecs' helper reads fixture/<codec id>/<prefix> from the cwd
    common.check_backwards_compatibility(
        E2ECodec.codec_id, arrays, codecs, precision=precision, prefix=prefix
    )


def test_backwards_compatibility_float32(monkeypatch):
    """Frames and configs written by the first release (version 1 frames, configs without dtype /
    image_size) still decode to the same images."""
    rng = np.random.default_rng(5)
    arrays = [jet_images(rng, 2, 24), jet_images(rng, 1, 24)[0]]
    _compat("f4", arrays, [_codec("lossless"), _codec("bounded")], [None, 2], monkeypatch)


def test_backwards_compatibility_float64(monkeypatch):
    rng = np.random.default_rng(6)
    arrays = [float64_images(rng, 2, 24), np.asfortranarray(float64_images(rng, 2, 24))]
    _compat("f8", arrays, [_codec("lossless"), _codec("bounded")], [None, 2], monkeypatch)


def test_fixture_frames_versions():
    """The float32 fixtures are version 1 frames without a dtype (as first written); float64 ones are v2."""
    f4 = (FIXTURES / "fixture/e2ecompress/f4/codec.00/encoded.00.dat").read_bytes()
    f8 = (FIXTURES / "fixture/e2ecompress/f8/codec.00/encoded.00.dat").read_bytes()
    assert f4[4] == 1 and b'"dtype"' not in f4[:200]
    assert f8[4] == 2 and b'"dtype": "<f8"' in f8[:200]
    config = json.loads((FIXTURES / "fixture/e2ecompress/f4/codec.01/config.json").read_text())
    assert "dtype" not in config and numcodecs.get_codec(config) == _codec("bounded")


# --- buffers and out ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["lossless", "bounded"])
def test_buffers_in_and_out(jets, mode):
    codec = _codec(mode)
    ref = codec.decode(codec.encode(jets))
    bound = MODES[mode].get("max_error", 0.0)
    assert np.max(np.abs(ref - jets)) <= bound
    frame = codec.encode(jets)
    for buf in _buffers(jets):
        dec = codec.decode(codec.encode(buf))
        assert dec.dtype == np.float32 and np.array_equal(dec.reshape(jets.shape), ref)
    for buf in (
        frame,
        bytearray(frame),
        array.array("b", frame),
        np.frombuffer(frame, np.uint8),
        memoryview(frame),
    ):
        assert np.array_equal(codec.decode(buf), ref)
    for out in (
        np.empty_like(jets),
        bytearray(jets.nbytes),
        np.empty(jets.size, np.float32),
        np.empty((3, 4, jets.nbytes // 12), np.uint8),
        np.empty(jets.nbytes // 2, np.uint16),
    ):
        assert codec.decode(frame, out=out) is out
        assert np.array_equal(np.frombuffer(out, np.float32).reshape(jets.shape), ref)


def test_raw_buffer_shapes_and_errors(jets):
    codec = E2ECodec(mode="lossless")
    dec = codec.decode(codec.encode(jets.tobytes()))  # a raw buffer decodes flat, in the codec's dtype
    assert dec.shape == (jets.size,) and dec.dtype == np.float32
    with pytest.raises(ValueError, match=r"cannot read 3 values as images \[-1, 3, 125, 125\]"):
        codec.encode(np.zeros(3, np.float32).tobytes())
    with pytest.raises(ValueError, match="whole float32 values"):
        codec.encode(b"12345")
    small = E2ECodec(mode="lossless", channels=["ECAL"], image_size=(2, 3), dtype="<f8")
    raw = np.arange(12, dtype=np.float64)
    assert np.array_equal(small.decode(small.encode(raw.tobytes())), raw)
    assert np.array_equal(small.decode(small.encode(raw)), raw)  # a flat float array keeps its shape
    with pytest.raises(ValueError, match="contiguous"):
        codec.encode(np.zeros((4, 3 * 125 * 125 * 2), np.uint8)[:, ::2])
    with pytest.raises(TypeError, match="float32 or float64"):
        codec.encode(jets.astype(np.float16))
    with pytest.raises(TypeError, match="object"):
        codec.encode(np.array([jets[0]], dtype=object))
    with pytest.raises(TypeError, match="object"):
        codec.decode(np.array([b"E2EC"], dtype=object))
    for bad in ("text", array.array("u", "abc"), None):
        with pytest.raises(TypeError, match="expected an array or a buffer"):
            codec.encode(bad)


def test_decode_out_errors(jets):
    codec = E2ECodec(mode="lossless")
    frame = codec.encode(jets)
    with pytest.raises(ValueError, match="bytes"):
        codec.decode(frame, out=bytearray(jets.nbytes - 4))
    with pytest.raises(ValueError, match="bytes"):
        codec.decode(frame, out=np.empty(jets.shape, np.float64))
    with pytest.raises(ValueError, match="read-only"):
        codec.decode(frame, out=bytes(jets.nbytes))
    with pytest.raises(TypeError):
        codec.decode(frame, out=np.empty(jets.size, object))
    strided = np.zeros((*jets.shape[:3], 250), np.float32)[..., ::2]  # same dtype and shape: any layout
    assert codec.decode(frame, out=strided) is strided and np.array_equal(strided, jets)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"dtype": "<f2"}, "dtype must be"),
        ({"dtype": ">f4"}, "dtype must be"),
        ({"dtype": "int32"}, "dtype must be"),
        ({"image_size": (125,)}, "image_size"),
        ({"image_size": (0, 125)}, "image_size"),
        ({"channels": "ECAL"}, "channels"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        E2ECodec(mode="lossless", **kw)


# --- float64 ------------------------------------------------------------------------------------------------


def test_float64_lossless_exact():
    """float64 through numcodecs comes back float64, bit for bit (no silent float32 rounding)."""
    x = float64_images(np.random.default_rng(8), 3)
    x[1, 0, 5, 5] = 1e300  # beyond float32
    codec = E2ECodec(mode="lossless")
    for arr in (x, x[2], np.asfortranarray(x), x.astype(">f8")):
        dec = codec.decode(codec.encode(arr))
        assert dec.dtype == arr.dtype and dec.shape == arr.shape
        assert np.array_equal(dec.view(np.uint64), arr.view(np.uint64))
        assert dec.flags.f_contiguous == (arr.flags.f_contiguous and not arr.flags.c_contiguous)
    raw = E2ECodec(mode="lossless", dtype="<f8")
    assert np.array_equal(raw.decode(raw.encode(x.tobytes())).view(np.uint64), x.reshape(-1).view(np.uint64))


def test_float64_bounded_within_bound():
    x = float64_images(np.random.default_rng(9), 3)
    x[1, 0, 5, 5] = 1000.0 + 1e-9
    for eps in (1e-3, 0.01, 0.3):
        codec = E2ECodec(mode="bounded", max_error=eps)
        for arr in (x, x[0]):
            dec = codec.decode(codec.encode(arr))
            assert dec.dtype == np.float64 and dec.shape == arr.shape
            assert np.max(np.abs(dec - arr)) <= eps
            assert np.all(dec[arr == 0] == 0)
    big = x.copy()
    big[0, 0, 1, 1] = 1e39
    with pytest.raises(ValueError, match="float32 range"):
        E2ECodec(mode="bounded", max_error=0.01).encode(big)


def test_float32_frames_stay_version_1(jets):
    frame = E2ECodec(mode="lossless").encode(jets)
    assert frame[4] == 1 and b'"dtype": "<f4"' in frame[:200]
    assert E2ECodec(mode="lossless").encode(jets.astype(np.float64))[4] == 2


# --- earlier tests ------------------------------------------------------------------------------------------


def test_config_round_trip_and_registry(images):
    codec = E2ECodec(mode="bounded", max_error=0.02)
    again = numcodecs.get_codec(codec.get_config())  # importing the module registered it
    assert isinstance(again, E2ECodec) and again.get_config() == codec.get_config()
    assert np.array_equal(again.decode(codec.encode(images)), codec.decode(codec.encode(images)))
    old = {k: v for k, v in codec.get_config().items() if k not in ("dtype", "image_size")}
    assert numcodecs.get_codec(old) == codec  # configs from before dtype / image_size


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
    with pytest.raises(DecodeError, match="channels"):
        E2ECodec(mode="bounded", max_error=0.01, channels=["a", "b"]).decode(bytes(frame))


def test_bad_input():
    codec = E2ECodec(mode="bounded", max_error=0.01)
    with pytest.raises(ValueError, match="expected images"):
        codec.encode(np.zeros((2, 5, 8, 8), np.float32))
    nan = np.zeros((1, 3, 8, 8), np.float32)
    nan[0, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(nan)


def test_import_needs_neither_numcodecs_nor_zarr():
    code = (
        "import sys; sys.modules['numcodecs'] = None; sys.modules['zarr'] = None\n"
        "import numpy as np, e2ecompress\n"
        "from e2ecompress.codec.numcodecs_codec import E2ECodec\n"
        "c = E2ECodec(mode='lossless'); x = np.zeros((1, 3, 125, 125), np.float32); x[0, 0, 3, 4] = 1\n"
        "assert np.array_equal(c.decode(c.encode(x)), x)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
