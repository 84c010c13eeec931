"""Sparse image codec: int streams, the runs predictor (against a Python reference), block planes,
occupancy, value coding, and ImageCodec round trips, error bounds and corruption."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sparse_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ecompress import _core
from e2ecompress.codec import ctxocc, sparse
from e2ecompress.codec.image import STEP_MARGIN, CodecConfig, ImageCodec
from e2ecompress.codec.intcode import DIRECT, MAX_TOKENS, compress_ints, decompress_ints, tokenize
from e2ecompress.errors import DecodeError, E2EError

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CHANNELS = ("ECAL", "HCAL", "Tracks")
SIZE = (125, 125)
K = 5  # HCAL tower size in crystals
I64 = np.iinfo(np.int64)
EPSILONS = (1e-3, 0.01, 0.5)


# --- test data ----------------------------------------------------------------------------------------------


def block_plane(rng: np.random.Generator, offset: tuple[int, int], occupancy: float, size=SIZE) -> np.ndarray:
    """A plane constant on 5x5 blocks whose grid starts at pixel (oy, ox) mod 5 (HCAL towers)."""
    h, w = size
    grid = np.zeros((h // K + 2, w // K + 2), np.float32)
    hit = rng.random(grid.shape) < occupancy
    grid[hit] = rng.exponential(0.2, int(hit.sum())).astype(np.float32) + np.float32(0.01)
    full = np.repeat(np.repeat(grid, K, 0), K, 1)
    oy, ox = offset
    return full[(K - oy) % K :, (K - ox) % K :][:h, :w].copy()


def jet_images(rng: np.random.Generator, n: int, occupancy: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Jet-like images [n, 3, 125, 125] and the HCAL plane codes the codec should find.

    ECAL and Tracks: sparse exponential energies. HCAL: every fourth jet a pixel plane (not block
    constant), the others block-constant planes at a random grid offset.
    """
    images = sparse_images(rng, n, occupancy=occupancy)
    images[:, 0] *= 3
    images[:, 2] *= 10
    codes = np.full(n, sparse.FULL)
    for j in range(n):
        if j % 4 == 3:
            continue
        oy, ox = (int(v) for v in rng.integers(0, K, 2))
        images[j, 1] = block_plane(rng, (oy, ox), 0.08)
        codes[j] = oy * K + ox
    return images, codes


def special_values() -> np.ndarray:
    """float32 values a lossless codec must keep bit for bit (no -0.0: it is a zero, not occupied)."""
    f = np.finfo(np.float32)
    values = [1e-45, 2e-45, 1.17e-38, f.tiny, f.smallest_subnormal, f.max, -f.max, 3e38, 1e30, -1e-40]
    values += [f.eps, 1.0, -1.0, 0.1, 123456.789, np.nextafter(np.float32(1), np.float32(2))]
    return np.array(values, np.float32)


def codec(mode: str, eps: float | None = None, size=SIZE, blocks=None) -> ImageCodec:
    kw = {"blocks": blocks} if blocks is not None else {}
    return ImageCodec(CodecConfig(mode=mode, max_error=eps, **kw), CHANNELS, size)


@pytest.fixture(scope="module")
def jets() -> tuple[np.ndarray, np.ndarray]:
    return jet_images(np.random.default_rng(7), 64)


# --- intcode ------------------------------------------------------------------------------------------------


def reference_tokens(v: int) -> tuple[int, int, int]:
    """The documented token of a value: (token, number of extra bits, extra bits)."""
    if v < DIRECT:
        return v, 0, 0
    n = v.bit_length()
    nbits = n - 3
    return DIRECT + 4 * (n - 6) + ((v >> nbits) & 3), nbits, v & ((1 << nbits) - 1)


def test_tokens_match_the_documented_layout():
    values = [0, 1, 31, 32, 33, 47, 48, 63, 64, 65, 100, 2**20 + 12345, 2**62, 2**63 - 1, 2**64 - 1]
    tokens, nbits, extra = tokenize(np.array(values, np.uint64))
    assert [(int(t), int(b), int(e)) for t, b, e in zip(tokens, nbits, extra, strict=True)] == [
        reference_tokens(v) for v in values
    ]
    assert int(tokens.max()) < MAX_TOKENS


def test_empty_stream():
    assert compress_ints(np.zeros(0, np.int64)) == b""
    assert compress_ints(np.zeros(0, np.int64), signed=True) == b""
    out = decompress_ints(b"", 0)
    assert out.dtype == np.int64 and out.shape == (0,)
    with pytest.raises(DecodeError):
        decompress_ints(b"\x00", 0)
    with pytest.raises(DecodeError):
        decompress_ints(b"", 1)


@pytest.mark.parametrize("value", [0, 1, 31, 32, 33, 63, 64, 1000, 2**31, 2**32 + 1, 2**62, 2**63 - 1])
def test_single_value(value):
    data = compress_ints(np.array([value]))
    got = decompress_ints(data, 1)
    assert got.dtype == np.int64 and got.tolist() == [value]


@pytest.mark.parametrize("value", [0, -1, 1, -32, 2**62, -(2**62), I64.max, I64.min])
def test_single_signed_value(value):
    assert decompress_ints(compress_ints(np.array([value]), signed=True), 1, signed=True).tolist() == [value]


def _distributions(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 3000
    widths = rng.integers(0, 63, n)
    return {
        "zeros": np.zeros(n, np.int64),
        "constant": np.full(n, 12345),
        "geometric": rng.geometric(0.3, n) - 1,
        "uniform small": rng.integers(0, 32, n),
        "uniform big": rng.integers(0, 2**62, n),
        "all bit lengths": (rng.integers(0, 2**62, n) >> widths).astype(np.int64),
        "uint8": rng.integers(0, 256, n).astype(np.uint8),
        "int32 max": np.full(5, np.iinfo(np.int32).max, np.int32),
    }


DISTRIBUTIONS = ("zeros", "constant", "geometric", "uniform small", "uniform big", "all bit lengths", "uint8")


@pytest.mark.parametrize("name", [*DISTRIBUTIONS, "int32 max"])
def test_round_trip_distributions(rng, name):
    values = _distributions(rng)[name]
    got = decompress_ints(compress_ints(values), len(values))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, values.astype(np.int64))


def test_round_trip_signed(rng):
    n = 2000
    for values in (
        rng.normal(0, 5, n).round().astype(np.int64),
        rng.integers(I64.min, I64.max, n, endpoint=True),
        -(rng.geometric(0.1, n)),
        np.array([I64.min, I64.max, 0, -1, 1] * 3),
        rng.integers(-100, 100, n).astype(np.int8),
    ):
        got = decompress_ints(compress_ints(values, signed=True), len(values), signed=True)
        np.testing.assert_array_equal(got, values.astype(np.int64))


def test_constant_streams_cost_little():
    # a one-symbol table codes 100k values in the table plus the rANS states' final flush
    assert len(compress_ints(np.zeros(100_000, np.int64))) < 200
    assert len(compress_ints(np.full(100_000, 7))) < 200


def test_encode_rejects_bad_input():
    with pytest.raises(TypeError, match="integers"):
        compress_ints(np.array([1.5]))
    with pytest.raises(ValueError, match="negative"):
        compress_ints(np.array([3, -1]))


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_wrong_count_is_detected(rng, signed):
    for n in (1, 2, 7, 100, 1000):
        values = rng.integers(-50 if signed else 0, 1000, n)
        data = compress_ints(values, signed=signed)
        for count in {0, n - 1, n + 1, 2 * n} - {n}:
            with pytest.raises(DecodeError):
                decompress_ints(data, count, signed=signed)


INT_LISTS = st.lists(st.integers(0, 2**63 - 1) | st.integers(0, 40), max_size=60)
SIGNED_LISTS = st.lists(st.integers(I64.min, I64.max) | st.integers(-40, 40), max_size=60)


@FUZZ
@given(INT_LISTS)
def test_fuzz_round_trip(values):
    arr = np.array(values, np.int64)
    np.testing.assert_array_equal(decompress_ints(compress_ints(arr), len(arr)), arr)


@FUZZ
@given(SIGNED_LISTS)
def test_fuzz_round_trip_signed(values):
    arr = np.array(values, np.int64)
    np.testing.assert_array_equal(
        decompress_ints(compress_ints(arr, signed=True), len(arr), signed=True), arr
    )


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None, extra: bytes) -> bytes:
    """data with bytes xor-ed at positions (mod its length), cut short, and bytes appended."""
    buf = bytearray(data)
    for pos, xor in edits:
        if buf:
            buf[pos % len(buf)] ^= xor
    if cut is not None:
        buf = buf[: cut % (len(buf) + 1)]
    return bytes(buf) + extra


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=3)
CUTS = st.none() | st.integers(0, 10**6)


@FUZZ
@given(SIGNED_LISTS.filter(len), st.booleans(), EDITS, CUTS, st.binary(max_size=3), st.integers(-1, 1))
def test_fuzz_corrupt_stream_only_decode_error(values, signed, edits, cut, extra, dcount):
    arr = np.array(values, np.int64)
    if not signed:
        arr = np.abs(arr + (arr == I64.min))
    data = mutate(compress_ints(arr, signed=signed), edits, cut, extra)
    count = len(arr) + dcount
    try:
        got = decompress_ints(data, count, signed=signed)
    except DecodeError:
        return
    assert got.dtype == np.int64 and got.shape == (count,)
    if not signed:
        assert got.min(initial=0) >= 0


# --- runs predictor (C++) against a plain-Python reference -------------------------------------------------


def _run_start(plane, index, width, i) -> bool:
    return i == 0 or plane[i - 1] != plane[i] or index[i - 1] != index[i] - 1 or index[i] % width == 0


def ref_runs_quantize(plane, index, width, x, base, step):
    """csrc/kernels/runs.h: runs start at the decoded cell above (else base); Q relative to that start."""
    r, rec, decoded = [], [], {}
    start, q_prev = 0.0, 0
    for i in range(len(index)):
        p, (row, col) = int(plane[i]), divmod(int(index[i]), width)
        if _run_start(plane, index, width, i):
            start, q_prev = decoded.get((p, row - 1, col), float(base[i])), 0
        q = float(np.rint((float(x[i]) - start) / step))
        r.append(int(q) - q_prev)
        q_prev = int(q)
        rec.append(start + step * q)
        decoded[p, row, col] = rec[-1]
    return np.array(r, np.int64), np.array(rec, np.float64)


def ref_runs_dequantize(plane, index, width, r, base, step):
    rec, decoded = [], {}
    start, q = 0.0, 0
    for i in range(len(index)):
        p, (row, col) = int(plane[i]), divmod(int(index[i]), width)
        if _run_start(plane, index, width, i):
            start, q = decoded.get((p, row - 1, col), float(base[i])), 0
        q = _wrap(q + int(r[i]))
        rec.append(start + step * float(q))
        decoded[p, row, col] = rec[-1]
    return np.array(rec, np.float64)


def _wrap(v: int) -> int:
    return (v + 2**63) % 2**64 - 2**63


def ref_runs_int(plane, index, width, values, decode: bool):
    """Lossless variant: run starts predicted by the cell above (else 0), the others by their left cell."""
    out, b, seen = [], [], {}
    for i in range(len(index)):
        p, (row, col) = int(plane[i]), divmod(int(index[i]), width)
        if _run_start(plane, index, width, i):
            pred = seen.get((p, row - 1, col), 0)
        else:
            pred = b[i - 1]
        v = int(values[i])
        b.append(_wrap(v + pred) if decode else v)
        out.append(b[i] if decode else _wrap(v - pred))
        seen[p, row, col] = b[i]
    return np.array(out, np.int64)


def random_cells(rng: np.random.Generator, n_planes: int, shape: tuple[int, int], occupancy: float):
    planes = rng.random((n_planes, *shape)) < occupancy
    plane, index = np.nonzero(planes.reshape(n_planes, -1))
    return plane.astype(np.int64), index.astype(np.int64), shape[1]


CELL_CASES = [(4, (7, 9), 0.6), (3, (5, 5), 1.0), (6, (11, 4), 0.3), (2, (1, 13), 0.8), (5, (9, 1), 0.7)]


@pytest.mark.parametrize("case", range(len(CELL_CASES)))
@pytest.mark.parametrize("step", [1e-3, 0.0197, 0.5, 3.0])
def test_runs_quantize_matches_reference(case, step):
    rng = np.random.default_rng(case)
    plane, index, width = random_cells(rng, *CELL_CASES[case])
    n = len(index)
    x = rng.exponential(2.0, n).astype(np.float32).astype(np.float64)
    for base in (np.zeros(n), rng.normal(1.0, 1.0, n)):
        r, rec = _core.runs_quantize(plane, index, width, x, base, step)
        want_r, want_rec = ref_runs_quantize(plane, index, width, x, base, step)
        np.testing.assert_array_equal(r, want_r)
        assert rec.tobytes() == want_rec.tobytes()
        assert np.all(np.abs(rec - x) <= step / 2 * (1 + 1e-9))
        again = _core.runs_dequantize(plane, index, width, r, base, step)
        assert again.tobytes() == rec.tobytes()


@pytest.mark.parametrize("case", range(len(CELL_CASES)))
def test_runs_dequantize_matches_reference_on_any_ints(case):
    rng = np.random.default_rng(100 + case)
    plane, index, width = random_cells(rng, *CELL_CASES[case])
    n = len(index)
    base = rng.normal(0.0, 10.0, n)
    for r in (rng.integers(-5, 6, n), rng.integers(I64.min, I64.max, n, endpoint=True)):
        got = _core.runs_dequantize(plane, index, width, r, base, 0.25)
        assert got.tobytes() == ref_runs_dequantize(plane, index, width, r, base, 0.25).tobytes()


@pytest.mark.parametrize("case", range(len(CELL_CASES)))
def test_runs_int_matches_reference(case):
    rng = np.random.default_rng(200 + case)
    plane, index, width = random_cells(rng, *CELL_CASES[case])
    n = len(index)
    bits = rng.random(n).astype(np.float32).view(np.int32).astype(np.int64)
    wild = rng.integers(I64.min, I64.max, n, endpoint=True)  # wrapping arithmetic
    for b in (bits, wild):
        r = _core.runs_int_encode(plane, index, width, b)
        np.testing.assert_array_equal(r, ref_runs_int(plane, index, width, b, decode=False))
        np.testing.assert_array_equal(_core.runs_int_decode(plane, index, width, r), b)
        np.testing.assert_array_equal(ref_runs_int(plane, index, width, r, decode=True), b)


def test_runs_predict_from_the_cell_above():
    # two full rows of width 3: the second row's start is predicted by the decoded cell above it
    plane, index = np.zeros(6, np.int64), np.arange(6, dtype=np.int64)
    b = np.array([10, 12, 15, 11, 11, 20])
    assert _core.runs_int_encode(plane, index, 3, b).tolist() == [10, 2, 3, 1, 0, 9]
    # the same cells in two planes: no prediction across planes
    plane = np.array([0, 0, 0, 1, 1, 1])
    index = np.array([0, 1, 2, 0, 1, 2])
    assert _core.runs_int_encode(plane, index, 3, b).tolist() == [10, 2, 3, 11, 0, 9]


def test_runs_empty():
    empty = np.zeros(0, np.int64)
    r, rec = _core.runs_quantize(empty, empty, 5, np.zeros(0), np.zeros(0), 0.1)
    assert r.shape == rec.shape == (0,)
    assert _core.runs_int_decode(empty, empty, 5, empty).shape == (0,)


BAD_CELLS = {
    "unsorted": ([0, 0, 0], [0, 2, 1], 5),
    "repeated": ([0, 0, 0], [0, 1, 1], 5),
    "planes unsorted": ([1, 0, 0], [0, 1, 2], 5),
    "negative index": ([0, 0, 0], [-1, 0, 1], 5),
    "negative plane": ([-1, 0, 0], [0, 1, 2], 5),
    "zero width": ([0, 0, 0], [0, 1, 2], 0),
}


@pytest.mark.parametrize("name", list(BAD_CELLS))
def test_runs_reject_bad_cells(name):
    plane, index, width = (np.array(v, np.int64) if isinstance(v, list) else v for v in BAD_CELLS[name])
    x, r = np.ones(3), np.ones(3, np.int64)
    calls = [
        lambda: _core.runs_quantize(plane, index, width, x, x, 0.1),
        lambda: _core.runs_dequantize(plane, index, width, r, x, 0.1),
        lambda: _core.runs_int_encode(plane, index, width, r),
        lambda: _core.runs_int_decode(plane, index, width, r),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


def test_runs_reject_bad_arguments():
    cells = (np.zeros(3, np.int64), np.arange(3, dtype=np.int64), 5)
    x = np.ones(3)
    for step in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="step"):
            _core.runs_quantize(*cells, x, x, step)
        with pytest.raises(ValueError, match="step"):
            _core.runs_dequantize(*cells, np.ones(3, np.int64), x, step)
    with pytest.raises(ValueError, match="one entry per cell"):
        _core.runs_quantize(*cells, np.ones(2), x, 0.1)
    with pytest.raises(ValueError, match="one entry per cell"):
        _core.runs_int_encode(*cells, np.ones(4, np.int64))
    with pytest.raises(ValueError):
        _core.runs_int_decode(np.zeros(3, np.int64), np.arange(2, dtype=np.int64), 5, np.ones(3, np.int64))


# --- block planes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [SIZE, (12, 12), (7, 7)], ids=["125", "12", "7"])
def test_block_planes_round_trip_at_every_offset(size):
    rng = np.random.default_rng(size[0])
    offsets = [(oy, ox) for oy in range(K) for ox in range(K)]
    # every block non-zero: only one offset fits
    dense = np.stack([block_plane(rng, o, 1.0, size) for o in offsets])
    sparse_ = np.stack([block_plane(rng, o, 0.2, size) for o in offsets])
    want = np.array([oy * K + ox for oy, ox in offsets])
    np.testing.assert_array_equal(sparse.find_block_offsets(dense, K), want)
    g = sparse.block_grid_size(size[0], K)
    for planes in (dense, sparse_):
        codes = sparse.find_block_offsets(planes, K)
        assert (codes != sparse.FULL).all()
        grids = sparse.to_blocks(planes, codes, K)
        assert grids.shape == (len(planes), g, g)
        np.testing.assert_array_equal(sparse.from_blocks(grids, codes, K, size), planes)
        np.testing.assert_array_equal(sparse.block_mean(planes, codes, K), planes)
        # expand the occupied block cells to pixels: exactly the plane's non-zero pixels
        pid, idx = sparse.occupied_cells(grids)
        cells = sparse.CellSet(pid, idx, g)
        plane, pix, src = sparse.expand_blocks(cells, codes, K, size)
        out = np.zeros_like(planes).reshape(len(planes), -1)
        out[plane, pix] = grids.reshape(len(planes), -1)[pid, idx][src]
        np.testing.assert_array_equal(out.reshape(planes.shape), planes)
        assert len(pix) == np.count_nonzero(planes)


def test_find_block_offsets_rejects_non_block_planes(rng):
    planes = np.stack([block_plane(rng, (2, 3), 0.3) for _ in range(4)])
    planes[1, 60, 61] += 1.0  # one pixel off its block's value
    planes[2, 0, 0] = 0.5 if planes[2, 0, 0] == 0 else 0.0
    planes[3] = sparse_images(rng, 1, 1)[0, 0]
    codes = sparse.find_block_offsets(planes, K)
    assert codes[0] == 2 * K + 3
    assert (codes[1:] == sparse.FULL).all()
    assert sparse.find_block_offsets(np.zeros((2, 125, 125), np.float32), K).tolist() == [0, 0]
    assert sparse.find_block_offsets(np.zeros((0, 125, 125), np.float32), K).shape == (0,)


def test_expand_blocks_rejects_cells_outside_the_image():
    # offset 0 on 125 pixels uses blocks 0..24 of the 26-block grid: block row 25 is padding
    g = sparse.block_grid_size(125, K)
    cells = sparse.CellSet(np.array([0]), np.array([25 * g + 3]), g)
    with pytest.raises(DecodeError, match="outside"):
        sparse.expand_blocks(cells, np.array([0]), K, SIZE)
    cells = sparse.CellSet(np.array([0]), np.array([24 * g + 3]), g)
    assert len(sparse.expand_blocks(cells, np.array([0]), K, SIZE)[1]) == K * K


# --- occupancy ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("occupancy", [0.0, 0.001, 0.03, 0.5, 1.0])
def test_occupancy_round_trip(rng, occupancy):
    planes = sparse_images(rng, 6, 1, 20, 30, occupancy)[:, 0]
    planes[2] = 0  # an empty plane between others
    pid, idx = sparse.occupied_cells(planes)
    streams = sparse.compress_occupancy(pid, idx, len(planes))
    got_pid, got_idx = sparse.decompress_occupancy(streams, len(planes), 600)
    np.testing.assert_array_equal(got_pid, pid)
    np.testing.assert_array_equal(got_idx, idx)


def test_occupancy_of_no_planes():
    empty = np.zeros(0, np.int64)
    streams = sparse.compress_occupancy(empty, empty, 0)
    pid, idx = sparse.decompress_occupancy(streams, 0, 100)
    assert pid.shape == idx.shape == (0,)


@pytest.fixture(scope="module")
def occupancy_streams():
    planes = sparse_images(np.random.default_rng(3), 5, 1, 16, 16, 0.2)[:, 0]
    pid, idx = sparse.occupied_cells(planes)
    return sparse.compress_occupancy(pid, idx, 5)


def test_occupancy_corrupt_cases(occupancy_streams):
    counts, gaps = occupancy_streams
    with pytest.raises(DecodeError, match="more than"):
        sparse.decompress_occupancy(sparse.compress_occupancy(np.zeros(5, np.int64), np.arange(5), 1), 1, 4)
    with pytest.raises(DecodeError, match="range"):  # a gap past the end of the plane
        sparse.decompress_occupancy([compress_ints(np.array([1])), compress_ints(np.array([100]))], 1, 100)
    with pytest.raises(DecodeError, match="range"):  # gaps that add up past the end of the plane
        sparse.decompress_occupancy([compress_ints(np.array([2])), compress_ints(np.array([60, 60]))], 1, 100)
    for bad in ([gaps, counts], [counts, b""], [b"", gaps], [counts, gaps[:-1]], [counts, gaps + b"\x00"]):
        with pytest.raises(DecodeError):
            sparse.decompress_occupancy(bad, 5, 256)
    for n in (4, 6):
        with pytest.raises(DecodeError):
            sparse.decompress_occupancy(occupancy_streams, n, 256)


@FUZZ
@given(st.integers(0, 1), EDITS, CUTS)
def test_fuzz_corrupt_occupancy(occupancy_streams, which, edits, cut):
    streams = list(occupancy_streams)
    streams[which] = mutate(streams[which], edits, cut, b"")
    try:
        pid, idx = sparse.decompress_occupancy(streams, 5, 256)
    except DecodeError:
        return
    assert len(pid) == len(idx) and (idx >= 0).all() and (idx < 256).all()
    key = pid * 256 + idx
    assert (np.diff(key) > 0).all()  # sorted by plane then index, no repeats


# --- value coding -------------------------------------------------------------------------------------------


def _cells(rng) -> tuple[sparse.CellSet, np.ndarray]:
    planes = sparse_images(rng, 4, 1, 30, 30, 0.2)[:, 0]
    pid, idx = sparse.occupied_cells(planes)
    return sparse.CellSet(pid, idx, 30), planes.reshape(4, -1)[pid, idx]


def test_values_lossless_round_trip(rng):
    cells, x = _cells(rng)
    x[: len(special_values())] = special_values()
    coding = sparse.ValueCoding("lossless")
    data, rec = sparse.compress_values(cells, x, None, coding)
    assert rec.tobytes() == x.tobytes()
    assert sparse.decompress_values(data, cells, None, coding).tobytes() == x.tobytes()


@pytest.mark.parametrize("eps", EPSILONS)
def test_values_bounded_round_trip(rng, eps):
    cells, x = _cells(rng)
    step = CodecConfig(mode="bounded", max_error=eps).step_for(float(np.abs(x).max()) + 1.0)
    coding = sparse.ValueCoding("bounded", step)
    for base in (None, x + rng.normal(0, 0.1, len(x)).astype(np.float32)):
        data, rec = sparse.compress_values(cells, x, base, coding)
        assert data[0] in (0, 1)  # the predictor byte: direct or runs
        np.testing.assert_array_equal(sparse.decompress_values(data, cells, base, coding), rec)
        assert np.abs(rec.astype(np.float64) - x).max() <= eps


def test_values_corrupt_cases(rng):
    cells, _ = _cells(rng)
    lossless = sparse.ValueCoding("lossless")
    with pytest.raises(DecodeError, match="empty"):
        sparse.decompress_values(b"", cells, None, lossless)
    with pytest.raises(DecodeError, match="predictor"):
        sparse.decompress_values(
            b"\x07" + compress_ints(np.zeros(len(cells), np.int64), signed=True), cells, None, lossless
        )
    big = bytes([0]) + compress_ints(np.full(len(cells), 2**40), signed=True)
    with pytest.raises(DecodeError, match="out of range"):
        sparse.decompress_values(big, cells, None, lossless)
    none = sparse.CellSet(np.zeros(0, np.int64), np.zeros(0, np.int64), 30)
    assert sparse.decompress_values(b"", none, None, lossless).shape == (0,)


# --- ImageCodec ---------------------------------------------------------------------------------------------


def test_config_validation():
    for eps in (None, 0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_error"):
            CodecConfig(mode="bounded", max_error=eps)
    with pytest.raises(ValueError, match="mode"):
        CodecConfig(mode="lossy-ish")
    with pytest.raises(ValueError, match="quality"):
        CodecConfig(mode="lossy")
    with pytest.raises(ValueError, match="predictor"):
        CodecConfig(mode="lossless", predictor="psychic")
    with pytest.raises(ValueError, match="latent model"):
        ImageCodec(CodecConfig(mode="bounded", max_error=0.1, predictor="model"), CHANNELS, SIZE)
    config = CodecConfig(mode="bounded", max_error=0.01)
    assert CodecConfig.from_dict(config.to_dict()) == config
    assert CodecConfig.from_dict({**config.to_dict(), "future_key": 1}) == config
    assert config.step_for(0.0) == pytest.approx(0.02 * (1 - STEP_MARGIN), rel=1e-6)
    big = config.step_for(1000.0)  # leaves room for float32 rounding of a 1 TeV pixel
    assert big < 0.02 * (1 - STEP_MARGIN) - 2 * float(np.spacing(np.float32(1000))) * 0.99


def test_stream_names(jets):
    images, _ = jets
    streams, _ = codec("lossless").compress(images[:8])
    names = ["blocks", "planes"]
    for c, kinds in enumerate([("px",), ("px", "blk"), ("px",)]):
        names += [f"c{c}.{kind}.{s}" for kind in kinds for s in ("o", "v")]
    assert sorted(streams) == sorted(names)
    assert all(type(v) is bytes for v in streams.values())


def test_encode_can_skip_the_decoded_images(jets):
    c = codec("bounded", 0.01)
    streams, rec = c.compress(jets[0][:8])
    again, none = c.compress(jets[0][:8], decoded=False)
    assert none is None and again == streams
    np.testing.assert_array_equal(c.decompress(again, 8), rec)


def test_block_planes_are_found(jets):
    images, want = jets
    streams, _ = codec("lossless").compress(images)
    codes = decompress_ints(streams["planes"], images.shape[0] * 3).reshape(-1, 3)
    np.testing.assert_array_equal(codes[:, 1], want)
    assert (codes[:, [0, 2]] == sparse.FULL).all()
    assert decompress_ints(streams["blocks"], 3).tolist() == [0, K, 0]  # found in the data, not by name
    renamed = ImageCodec(CodecConfig(mode="lossless"), ("a", "b", "c"), SIZE)
    assert renamed.compress(images)[0]["planes"] == streams["planes"]
    streams, _ = codec("lossless", blocks={}).compress(images)  # block detection off
    assert (decompress_ints(streams["planes"], images.shape[0] * 3) == sparse.FULL).all()


def test_lossless_is_bit_exact(jets, rng):
    images = jets[0].copy()
    specials = special_values()
    hit = rng.choice(images.size, 40 * len(specials), replace=False)
    images.reshape(-1)[hit] = np.resize(specials, len(hit))
    images[0, 1] = block_plane(rng, (1, 4), 0.5) * np.float32(1e-40)  # denormal block plane
    c = codec("lossless")
    streams, rec = c.compress(images)
    assert rec.tobytes() == images.tobytes()
    assert c.decompress(streams, len(images)).tobytes() == images.tobytes()


@pytest.mark.parametrize("eps", EPSILONS)
def test_bounded_error_and_exact_zeros(jets, eps):
    # energies up to 250 GeV: the float32 rounding of x' (half an ulp) fits in the step's 2**-7 margin of
    # EPS = 1e-3 below 256 GeV
    images = jets[0].copy()
    images[::4, 0, 60:63, 61] = np.linspace(30, 250, 3 * len(images[::4]), dtype=np.float32).reshape(-1, 3)
    c = codec("bounded", eps)
    streams, rec = c.compress(images)
    dec = c.decompress(streams, len(images))
    np.testing.assert_array_equal(dec, rec)
    assert np.abs(dec.astype(np.float64) - images.astype(np.float64)).max() <= eps
    assert (dec[images == 0] == 0).all()
    assert (images[dec != 0] != 0).all()
    # block planes stay block planes: HCAL of block jets is still constant on the same blocks
    codes = sparse.find_block_offsets(images[:, 1], K)
    blocks = dec[codes != sparse.FULL, 1]
    grids = sparse.to_blocks(blocks, codes[codes != sparse.FULL], K)
    np.testing.assert_array_equal(sparse.from_blocks(grids, codes[codes != sparse.FULL], K, SIZE), blocks)


@pytest.mark.parametrize("mode", ["lossless", "bounded"])
def test_independent_of_chunking(jets, mode):
    """Lossless: identical bits whatever the chunking. Bounded: the step depends on the chunk's largest
    value (float32 headroom), so decoded values may differ between chunkings, but never the bound."""
    images = jets[0]
    c = codec(mode, 0.01 if mode == "bounded" else None)
    whole = c.decompress(c.compress(images)[0], 64)
    parts = np.concatenate([c.decompress(c.compress(images[a : a + 32])[0], 32) for a in (0, 32)])
    one_by_one = np.concatenate([c.compress(images[j : j + 1])[1] for j in range(0, 64, 9)])
    if mode == "lossless":
        assert parts.tobytes() == whole.tobytes()
        assert one_by_one.tobytes() == whole[::9].tobytes()
    for dec, ref in ((whole, images), (parts, images), (one_by_one, images[::9])):
        assert np.abs(dec - ref).max() <= (0.01 if mode == "bounded" else 0.0)
        assert not dec[ref == 0].any()


@pytest.mark.parametrize("mode", ["lossless", "bounded"])
def test_all_zero_chunk(mode):
    c = codec(mode, 0.01 if mode == "bounded" else None)
    zeros = np.zeros((3, 3, *SIZE), np.float32)
    streams, rec = c.compress(zeros)
    assert rec.shape == zeros.shape and not rec.any()
    dec = c.decompress(streams, 3)
    assert dec.shape == zeros.shape and dec.dtype == np.float32 and not dec.any()
    assert sum(len(s) for s in streams.values()) < 200


@pytest.mark.parametrize("mode", ["lossless", "bounded"])
def test_small_images(rng, mode):
    images, _ = jet_images(rng, 5)
    images = images[:, :, :12, :12].copy()
    images[0, 1] = block_plane(rng, (3, 1), 0.5, (12, 12))
    c = codec(mode, 0.5 if mode == "bounded" else None, size=(12, 12))
    streams, rec = c.compress(images)
    dec = c.decompress(streams, 5)
    np.testing.assert_array_equal(dec, rec)
    assert np.abs(dec - images).max() <= (0.5 if mode == "bounded" else 0.0)


def test_decode_needs_every_stream_and_the_right_count(jets):
    images = jets[0][:8]
    c = codec("bounded", 0.01)
    streams, _ = c.compress(images)
    for name in streams:
        if name == "blocks":  # absent in files written before it existed: sizes by channel name
            continue
        with pytest.raises(DecodeError, match=name.replace(".", r"\.")):
            c.decompress({k: v for k, v in streams.items() if k != name}, 8)
    legacy = {k: v for k, v in streams.items() if k != "blocks"}
    assert c.decompress(legacy, 8).tobytes() == c.decompress(streams, 8).tobytes()
    for n in (7, 9):
        with pytest.raises(DecodeError):
            c.decompress(streams, n)


@pytest.fixture(scope="module")
def chunk_streams(jets) -> dict[str, tuple[ImageCodec, dict[str, bytes]]]:
    images = jets[0][:6]
    out = {}
    for mode, eps in (("lossless", None), ("bounded", 0.01)):
        c = codec(mode, eps)
        out[mode] = (c, c.compress(images)[0])
    return out


@FUZZ
@given(st.sampled_from(["lossless", "bounded"]), st.data(), EDITS, CUTS)
def test_fuzz_corrupt_chunk_only_decode_error(chunk_streams, mode, data, edits, cut):
    c, streams = chunk_streams[mode]
    name = data.draw(st.sampled_from(sorted(streams)))
    bad = dict(streams)
    bad[name] = mutate(streams[name], edits, cut, b"")
    try:
        dec = c.decompress(bad, 6)
    except DecodeError:
        return
    # without a container CRC a changed value stream may decode to other numbers; it must still be images
    assert dec.shape == (6, 3, *SIZE) and dec.dtype == np.float32


@pytest.mark.parametrize("value", [419.15854, 3000.0, 1e-3])
def test_bounded_keeps_the_bound_for_large_values(value):
    """The step leaves room for float32 rounding of the largest value in the chunk."""
    images = np.zeros((2, 3, *SIZE), np.float32)
    images[0, 0, 3, 4] = value
    images[1, 2, 5, 5] = np.float32(value) * 0.77
    c = codec("bounded", 0.001)
    streams, rec = c.compress(images)
    dec = c.decompress(streams, 2)
    assert np.array_equal(dec, rec)
    assert np.abs(dec.astype(np.float64) - images).max() <= np.float32(0.001)


def test_bounded_rejects_an_impossible_bound():
    images = np.zeros((1, 3, *SIZE), np.float32)
    images[0, 0, 0, 0] = 3e7  # float32 spacing there is 2 > 2 EPS
    with pytest.raises(E2EError, match="too small"):
        codec("bounded", 0.5).compress(images)


def test_channels_sharing_positions_code_them_once(rng):
    """Track-like channels with the same occupied pixels: the second is coded with the first as context."""
    images = sparse_images(rng, 12, 3, occupancy=0.01)
    images[:, 1] = np.where(images[:, 0] != 0, rng.normal(size=images[:, 0].shape), 0).astype(np.float32)
    images[:, 1][images[:, 0] != 0] += np.float32(5)  # never exactly 0 where channel 0 is occupied
    c = ImageCodec(CodecConfig(mode="lossless"), ("a", "b", "c"), SIZE)
    streams, _ = c.compress(images)
    assert ctxocc.uses_context(streams["c1.px.o"]) and not ctxocc.uses_context(streams["c0.px.o"])
    assert len(streams["c1.px.o"]) < len(streams["c0.px.o"]) / 4
    assert c.decompress(streams, len(images)).tobytes() == images.tobytes()
    bad = {**streams, "c0.px.o": streams["c1.px.o"]}  # a context the first channel cannot have
    with pytest.raises(DecodeError, match="context"):
        c.decompress(bad, len(images))
