"""Context-modelled occupancy coder (e2ecompress.codec.ctxocc, csrc/kernels/ctxcode.h)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ecompress import _core
from e2ecompress.codec import sparse
from e2ecompress.codec.ctxocc import compress_planes, decompress_planes, near_context
from e2ecompress.errors import DecodeError

FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def round_trip(occ: np.ndarray, context: np.ndarray | None = None) -> bytes:
    data = compress_planes(occ, context)
    got = decompress_planes(data, *occ.shape, context=context)
    assert got.dtype == np.bool_ and got.shape == occ.shape
    np.testing.assert_array_equal(got, occ != 0)
    return data


def jet_like(rng: np.random.Generator, n: int, size: int = 125, hits: int = 60, noise: int = 20):
    """Planes with a Gaussian cluster of hits around the centre plus uniform noise hits."""
    occ = np.zeros((n, size, size), bool)
    c = (size - 1) / 2
    for i in range(n):
        yx = np.rint(rng.normal(c, size / 12, (hits, 2))).astype(int).clip(0, size - 1)
        occ[i, yx[:, 0], yx[:, 1]] = True
        occ[i, rng.integers(0, size, noise), rng.integers(0, size, noise)] = True
    return occ


@st.composite
def planes(draw, with_context: bool):
    n = draw(st.integers(0, 4))
    h = draw(st.integers(1, 23))
    w = draw(st.integers(1, 23))
    kind = draw(st.sampled_from(["random", "empty", "full", "sparse"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = {"random": rng.random(), "empty": 0.0, "full": 1.0, "sparse": 0.03}[kind]
    occ = rng.random((n, h, w)) < density
    ctx = rng.integers(0, 6, (n, h, w)).astype(np.uint8) if with_context else None
    return occ, ctx


@FUZZ
@given(planes(with_context=False))
def test_round_trip_random_shapes(case):
    round_trip(*case)


@FUZZ
@given(planes(with_context=True))
def test_round_trip_random_shapes_with_context(case):
    round_trip(*case)


EDGE_SHAPES = [(1, 1, 1), (3, 1, 1), (2, 1, 17), (2, 17, 1), (2, 5, 5), (2, 6, 4), (1, 125, 125)]


@pytest.mark.parametrize("shape", EDGE_SHAPES)
@pytest.mark.parametrize("fill", ["empty", "full", "corners", "checker"])
def test_edge_planes(shape, fill):
    occ = np.zeros(shape, bool)
    if fill == "full":
        occ[:] = True
    elif fill == "corners":
        occ[:, 0, 0] = occ[:, -1, -1] = occ[:, 0, -1] = occ[:, -1, 0] = True
    elif fill == "checker":
        occ[:] = (np.indices(shape).sum(0) % 2).astype(bool)
    round_trip(occ)
    round_trip(occ, np.full(shape, 2, np.uint8))


def test_zero_sized():
    for shape in [(0, 125, 125), (3, 0, 5), (3, 5, 0), (0, 0, 0)]:
        data = round_trip(np.zeros(shape, bool))
        assert len(data) < 16


def test_jet_like_round_trip_and_smaller_than_count_gap(rng):
    occ = jet_like(rng, 64)
    data = round_trip(occ)
    round_trip(occ, near_context(occ[::-1]))
    pid, idx = sparse.occupied_cells(occ.astype(np.float32))
    counts, gaps = sparse.compress_occupancy(pid, idx, len(occ))
    assert len(data) < 0.95 * (len(counts) + len(gaps))


def test_input_dtypes_and_layouts(rng):
    occ = rng.random((3, 9, 14)) < 0.2
    ref = compress_planes(occ)
    values = occ * rng.integers(1, 256, occ.shape)
    assert compress_planes(values.astype(np.uint8)) == ref  # any non-zero byte is occupied
    assert compress_planes(values.astype(np.float32)) == ref  # other dtypes: non-zero
    wide = np.zeros((3, 9, 28), bool)
    wide[:, :, ::2] = occ
    assert compress_planes(wide[:, :, ::2]) == ref  # not contiguous
    ctx = rng.integers(0, 4, occ.shape).astype(np.uint8)
    big = (ctx + 200 * (ctx == 3)).astype(np.uint8)
    assert compress_planes(occ, big) == compress_planes(occ, ctx)  # values above 3 count as 3
    assert compress_planes(occ, ctx.astype(bool)) == compress_planes(occ, (ctx != 0).astype(np.uint8))


def test_deterministic_and_fixed_length():
    rng = np.random.default_rng(7)
    occ = jet_like(rng, 8, size=31, hits=25, noise=4)
    ctx = near_context(occ[::-1])
    a, b = compress_planes(occ), compress_planes(occ.copy())
    assert a == b
    assert compress_planes(occ, ctx) == compress_planes(occ, ctx.copy())
    assert compress_planes(occ, ctx) != a
    # Golden-ish: the length of this stream only changes when the model or the format does.
    assert len(a) == GOLDEN_LENGTH, len(a)


GOLDEN_LENGTH = 146


def test_same_bytes_from_threads():
    rng = np.random.default_rng(11)
    stacks = [jet_like(rng, 16, size=40, hits=30, noise=5) for _ in range(4)]
    ref = [compress_planes(o) for o in stacks]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(compress_planes, stacks * 3))
        dec = list(pool.map(lambda d: decompress_planes(d, 16, 40, 40), got))
    assert got == ref * 3
    for d, o in zip(dec, stacks * 3, strict=True):
        np.testing.assert_array_equal(d, o)


def small_stream(with_context: bool) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(3)
    occ = jet_like(rng, 3, size=12, hits=12, noise=2)
    ctx = near_context(occ[::-1]) if with_context else None
    return compress_planes(occ, ctx), occ, ctx


@pytest.mark.parametrize("with_context", [False, True])
def test_every_truncation_is_a_decode_error(with_context):
    data, occ, ctx = small_stream(with_context)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decompress_planes(data[:cut], *occ.shape, context=ctx)
    with pytest.raises(DecodeError):
        decompress_planes(data + b"\0", *occ.shape, context=ctx)


TINY = [(1, 2, 10), (2, 1, 6), (1, 6, 5), (1, 1, 1), (3, 4, 4)]


def tiny_stream(shape, seed: int, with_context: bool) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    occ = rng.random(shape) < rng.random()
    ctx = rng.integers(0, 4, shape).astype(np.uint8) if with_context else None
    return compress_planes(occ, ctx), occ, ctx


def flips_caught(data: bytes, occ: np.ndarray, ctx: np.ndarray | None) -> int:
    """Decodes every single-byte flip of data (4 xor values per byte) -> how many gave wrong planes."""
    undetected = 0
    for pos in range(len(data)):
        for xor in (1, 0x10, 0x80, 0xFF):
            buf = bytearray(data)
            buf[pos] ^= xor
            try:
                got = decompress_planes(bytes(buf), *occ.shape, context=ctx)
            except DecodeError:
                continue
            assert got.shape == occ.shape and got.dtype == np.bool_
            undetected += not np.array_equal(got, occ)
    return undetected


@pytest.mark.parametrize("with_context", [False, True])
def test_every_single_byte_flip_is_caught(with_context):
    assert flips_caught(*small_stream(with_context)) == 0
    for i, shape in enumerate(TINY):
        for seed in range(4):
            assert flips_caught(*tiny_stream(shape, 10 * i + seed, with_context)) == 0


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 3), st.integers(0, 9), st.integers(0, 9), st.booleans())
def test_garbage_only_decode_error(data, n, h, w, with_context):
    ctx = np.ones((n, h, w), np.uint8) if with_context else None
    try:
        got = decompress_planes(data, n, h, w, ctx)
    except DecodeError:
        return
    assert got.shape == (n, h, w) and got.dtype == np.bool_


def test_wrong_sizes_or_context_are_decode_errors():
    data, occ, _ = small_stream(False)
    n, h, w = occ.shape
    for shape in [(n + 1, h, w), (n - 1, h, w), (n, h + 1, w), (n, h, w - 1), (0, h, w), (n, 1, 1)]:
        with pytest.raises(DecodeError, match="expected"):
            decompress_planes(data, *shape)
    with pytest.raises(DecodeError, match="context"):
        decompress_planes(data, n, h, w, np.zeros(occ.shape, np.uint8))
    cdata, _, _ = small_stream(True)
    with pytest.raises(DecodeError, match="context"):
        decompress_planes(cdata, n, h, w)


def test_bad_arguments():
    occ = np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match="3-D"):
        compress_planes(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="shape"):
        compress_planes(occ, np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        compress_planes(occ, np.zeros(occ.shape, np.int32))
    with pytest.raises(ValueError, match=">= 0"):
        decompress_planes(compress_planes(occ), -1, 4, 4)
    with pytest.raises(TypeError):
        decompress_planes(12345, 2, 4, 4)
    with pytest.raises(TypeError):
        _core.ctx_encode(np.zeros((2, 4, 4), np.int16))
    with pytest.raises(ValueError, match="block"):
        _core.ctx_encode(occ, None, 0)


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64])
def test_other_block_sizes_decode(block, rng):
    occ = jet_like(rng, 3, size=29, hits=20, noise=3)
    data = _core.ctx_encode(occ, None, block)
    np.testing.assert_array_equal(decompress_planes(data, *occ.shape), occ)


def test_near_context():
    o = np.zeros((1, 4, 5), bool)
    o[0, 1, 1] = True
    ctx = near_context(o)
    assert ctx.dtype == np.uint8
    assert ctx[0, 1, 1] == 2 and ctx[0, 0, 0] == 1 and ctx[0, 2, 2] == 1 and ctx[0, 3, 3] == 0
    assert ctx.sum() == 2 + 8
