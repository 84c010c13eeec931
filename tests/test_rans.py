"""rANS coder: bitstream (reference encoder, golden vectors), round trips, entropy, tables, corruption."""

from __future__ import annotations

import concurrent.futures
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ecompress import codec
from e2ecompress.codec import EscapeTable, RansTable
from e2ecompress.codec.rans import _unzigzag, _varint_decode, _varint_encode, _zigzag
from e2ecompress.errors import DecodeError

SETTINGS = settings(max_examples=100, deadline=None)
FUZZ = settings(max_examples=1000, deadline=None)
STATES = (1, 2, 4, 8, 16, 32, 64)

# A fixed small table and symbol block; the expected bytes are also checked against the reference encoder.
GOLDEN_FREQS = np.array([[128, 64, 32, 32], [16, 16, 16, 208]])
GOLDEN_SYMBOLS = np.array([[0, 3], [1, 3], [0, 3], [2, 0], [3, 3], [0, 1], [0, 3], [1, 2], [0, 3], [3, 3]])
GOLDEN_TABLE_HEX = "45325254010802048001402020101010d001"
GOLDEN_STREAMS = {
    1: "0101080a0271110100ab041030",
    4: "0104080a026002800030d4020080e70008b0284018",
}


@pytest.fixture(params=[True, False], ids=["simd", "scalar"])
def simd(request):
    """Runs a test with the AVX2 decoder on (when the CPU has it) and off."""
    before = codec.simd()
    codec.simd(request.param)
    yield request.param
    codec.simd(before)


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


def reference_encode(symbols: np.ndarray, freqs: np.ndarray, prob_bits: int, n_states: int) -> bytes:
    """Plain-Python encoder of the documented bitstream (csrc/kernels/rans.h), one symbol at a time."""
    n_rows, dims = symbols.shape
    cum = np.concatenate([np.zeros((dims, 1), np.int64), np.cumsum(freqs, axis=1)], axis=1)
    flat = symbols.ravel().tolist()
    states = [1 << 16] * n_states
    words: list[int] = []
    for i in range(len(flat) - 1, -1, -1):
        d, s, j = i % dims, flat[i], i % n_states
        f, c, x = int(freqs[d, s]), int(cum[d, s]), states[j]
        if x >= f << (32 - prob_bits):
            words.append(x & 0xFFFF)
            x >>= 16
        states[j] = ((x // f) << prob_bits) + x % f + c
    head = bytes([1, n_states, prob_bits]) + _varint(n_rows) + _varint(dims)
    body = b"".join(x.to_bytes(4, "little") for x in states)
    return head + body + b"".join(w.to_bytes(2, "little") for w in reversed(words))


def header_size(n_rows: int, dims: int, n_states: int) -> int:
    return 3 + len(_varint(n_rows)) + len(_varint(dims)) + 4 * n_states


def laplace_symbols(rng, n, scales, n_symbols):
    centre = n_symbols // 2
    x = np.round(rng.laplace(0.0, scales, (n, len(scales)))) + centre
    return np.clip(x, 0, n_symbols - 1).astype(np.int32)


# ---------------------------------------------------------------------------------------------------------
# Bitstream


def test_golden_table_bytes():
    table = RansTable(GOLDEN_FREQS, 8)
    assert table.to_bytes().hex() == GOLDEN_TABLE_HEX
    parsed = RansTable.from_bytes(bytes.fromhex(GOLDEN_TABLE_HEX))
    assert parsed == table and codec.table_sha256(parsed) == codec.table_sha256(table)


@pytest.mark.parametrize("n_states", sorted(GOLDEN_STREAMS))
def test_golden_streams(n_states, simd):
    table = RansTable(GOLDEN_FREQS, 8)
    data = codec.compress_symbols(GOLDEN_SYMBOLS, table, n_states)
    assert data.hex() == GOLDEN_STREAMS[n_states]
    assert data == reference_encode(GOLDEN_SYMBOLS, GOLDEN_FREQS, 8, n_states)
    np.testing.assert_array_equal(codec.decompress_symbols(data, table, len(GOLDEN_SYMBOLS)), GOLDEN_SYMBOLS)


@SETTINGS
@given(
    dims=st.integers(1, 5),
    n_symbols=st.integers(1, 40),
    n_rows=st.integers(0, 60),
    n_states=st.sampled_from(STATES),
    prob_bits=st.integers(6, 16),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_reference_encoder(dims, n_symbols, n_rows, n_states, prob_bits, seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, (dims, n_symbols)) * (rng.random((dims, n_symbols)) < 0.7)
    table = RansTable.from_counts(counts, prob_bits)
    symbols = rng.integers(0, n_symbols, (n_rows, dims))
    data = codec.compress_symbols(symbols, table, n_states)
    assert data == reference_encode(symbols, table.freqs.astype(np.int64), prob_bits, n_states)


# ---------------------------------------------------------------------------------------------------------
# Round trips


@SETTINGS
@given(
    dims=st.sampled_from([1, 3, 32]),
    n_symbols=st.integers(2, 4096),
    n_rows=st.integers(0, 3000),
    skew=st.sampled_from(["uniform", "laplace", "spike"]),
    prob_bits=st.sampled_from([12, 14, 16]),
    n_states=st.sampled_from((0, *STATES)),
    use_simd=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip(dims, n_symbols, n_rows, skew, prob_bits, n_states, use_simd, seed):
    rng = np.random.default_rng(seed)
    n_rows = min(n_rows, 40_000 // dims)
    if skew == "uniform":
        symbols = rng.integers(0, n_symbols, (n_rows, dims))
    elif skew == "laplace":
        symbols = laplace_symbols(rng, n_rows, rng.uniform(0.1, n_symbols / 8, dims), n_symbols)
    else:  # nearly constant, with rare other symbols
        symbols = np.where(rng.random((n_rows, dims)) < 0.995, 0, rng.integers(0, n_symbols, (n_rows, dims)))
    prob_bits = max(prob_bits, int(np.ceil(np.log2(n_symbols))))
    table = RansTable.from_counts(codec.histogram(symbols, n_symbols), prob_bits)
    data = codec.compress_symbols(symbols, table, n_states)
    before = codec.simd()
    try:
        codec.simd(use_simd)
        out = codec.decompress_symbols(data, table, n_rows)
    finally:
        codec.simd(before)
    assert out.dtype == np.int32 and out.shape == (n_rows, dims)
    np.testing.assert_array_equal(out, symbols)


@pytest.mark.parametrize("dims", [1, 3, 5, 7, 8, 32, 48, 100])
def test_simd_and_scalar_agree(dims):
    """Long streams for every state count, dims that do and do not divide the group size, K <= and > 256."""
    rng = np.random.default_rng(dims)
    for n_symbols in (200, 1000):
        symbols = laplace_symbols(rng, 30_000 // dims, rng.uniform(0.2, 30, dims), n_symbols)
        table = RansTable.from_counts(codec.histogram(symbols, n_symbols), 14)
        for n_states in STATES:
            data = codec.compress_symbols(symbols, table, n_states)
            outs = []
            for use_simd in (True, False):
                codec.simd(use_simd)
                outs.append(codec.decompress_symbols(data, table, len(symbols)))
            codec.simd(True)
            np.testing.assert_array_equal(outs[0], symbols)
            np.testing.assert_array_equal(outs[1], symbols)


def test_buffers_dtypes_and_out():
    rng = np.random.default_rng(1)
    symbols = rng.integers(0, 100, (500, 6))
    table = RansTable.from_counts(codec.histogram(symbols, 100))
    data = codec.compress_symbols(symbols, table)
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64):
        assert codec.compress_symbols(symbols.astype(dtype), table) == data
    assert codec.compress_symbols(np.asfortranarray(symbols), table) == data
    assert codec.compress_symbols(symbols.T.copy().T, table) == data
    for buf in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(codec.decompress_symbols(buf, table, 500), symbols)
    out = np.full((500, 6), -1, np.int32)
    assert codec.decompress_symbols(data, table, 500, out=out) is out
    np.testing.assert_array_equal(out, symbols)


def test_empty_and_degenerate():
    table = RansTable(np.array([[1 << 14], [1 << 14]]), 14)  # one symbol of probability 1: zero bits
    data = codec.compress_symbols(np.zeros((1000, 2), np.int32), table, 4)
    assert len(data) == header_size(1000, 2, 4)
    np.testing.assert_array_equal(codec.decompress_symbols(data, table, 1000), 0)
    empty = codec.compress_symbols(np.zeros((0, 2), np.int32), table)
    assert codec.decompress_symbols(empty, table, 0).shape == (0, 2)


def test_decoding_threads_release_the_gil():
    rng = np.random.default_rng(2)
    symbols = laplace_symbols(rng, 20_000, np.geomspace(0.5, 20, 8), 256)
    table = RansTable.from_counts(codec.histogram(symbols, 256))
    data = codec.compress_symbols(symbols, table)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: codec.decompress_symbols(data, table, len(symbols)), range(4)))
        encoded = list(pool.map(lambda _: codec.compress_symbols(symbols, table), range(4)))
    for out in outs:
        np.testing.assert_array_equal(out, symbols)
    assert all(e == data for e in encoded)


# ---------------------------------------------------------------------------------------------------------
# Compression


@pytest.mark.parametrize("prob_bits", [12, 14, 16])
@pytest.mark.parametrize("shape", ["laplace", "skewed", "uniform"])
def test_size_within_one_percent_of_entropy(prob_bits, shape):
    rng = np.random.default_rng(prob_bits)
    n, dims, n_symbols = 200_000 // 8, 8, 256
    if shape == "laplace":
        symbols = laplace_symbols(rng, n, np.geomspace(0.3, 40, dims), n_symbols)
    elif shape == "skewed":
        symbols = np.minimum(rng.geometric(rng.uniform(0.3, 0.9, dims), (n, dims)) - 1, n_symbols - 1)
    else:
        symbols = rng.integers(0, n_symbols, (n, dims))
    table = RansTable.from_counts(codec.histogram(symbols, n_symbols), prob_bits)
    cost_bytes = codec.cost_bits(symbols, table) / 8
    for n_states in (1, 8, 64):
        size = len(codec.compress_symbols(symbols, table, n_states))
        assert size <= 1.01 * cost_bytes + header_size(n, dims, n_states), (n_states, size, cost_bytes)


def test_build_tables_is_optimal():
    """Equals greedy allocation from scratch (optimal for this concave objective); no 1-slot move helps."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        k, bits = int(rng.integers(1, 20)), int(rng.integers(5, 9))
        counts = rng.integers(0, 1000, k) * (rng.random(k) < 0.8)
        counts[rng.integers(k)] += 1
        freqs = codec.build_tables(counts[None], bits)[0].astype(np.int64)
        assert freqs.sum() == 1 << bits and freqs.min() >= 1

        def objective(f, counts=counts):
            return float(np.sum(counts * np.log2(f)))

        greedy = np.ones(k, np.int64)
        for _ in range((1 << bits) - k):
            gain = counts * np.log2((greedy + 1) / greedy)
            greedy[int(np.argmax(gain))] += 1
        assert objective(freqs) == pytest.approx(objective(greedy), rel=1e-12, abs=1e-6)
        for a, b in itertools.permutations(range(k), 2):
            if freqs[b] > 1:
                moved = freqs.copy()
                moved[a] += 1
                moved[b] -= 1
                assert objective(moved) <= objective(freqs) + 1e-6


def test_build_tables_edge_cases():
    freqs = codec.build_tables(np.zeros((2, 5), np.int64), 4)
    assert (freqs.sum(1) == 16).all() and freqs.max() - freqs.min() <= 1
    assert (codec.build_tables([[7, 0, 0]], 2) == [[2, 1, 1]]).all()
    huge = np.array([[2**62, 1, 2**61]])
    assert codec.build_tables(huge, 10).sum() == 1024
    assert (codec.build_tables(np.ones((1, 16), np.int64), 4) == 1).all()


# ---------------------------------------------------------------------------------------------------------
# Tables


def test_table_properties_and_serialization():
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 100, (5, 300))
    table = RansTable.from_counts(counts, 13)
    assert (table.dims, table.n_symbols, table.prob_bits) == (5, 300, 13)
    assert table.freqs.dtype == np.uint32 and table.freqs.shape == (5, 300)
    np.testing.assert_array_equal(table.freqs, codec.build_tables(counts, 13))
    back = RansTable.from_bytes(table.to_bytes())
    assert back == table and back.to_bytes() == table.to_bytes()
    assert RansTable(table.freqs, 13) == table
    assert RansTable.from_counts(counts + 1, 13) != table
    assert repr(table) == "RansTable(dims=5, n_symbols=300, prob_bits=13)"
    assert len(codec.table_sha256(table)) == 64


def test_table_zero_frequencies():
    table = RansTable(np.array([[0, 8, 0, 8], [16, 0, 0, 0]]), 4)
    symbols = np.array([[1, 0], [3, 0], [1, 0]])
    data = codec.compress_symbols(symbols, table)
    np.testing.assert_array_equal(codec.decompress_symbols(data, table, 3), symbols)
    with pytest.raises(ValueError, match="frequency 0"):
        codec.compress_symbols(np.array([[2, 0]]), table)
    assert RansTable.from_bytes(table.to_bytes()) == table


@pytest.mark.parametrize(
    "freqs, prob_bits, match",
    [
        ([[8, 7]], 4, "sum to 15"),
        ([[8, 9]], 4, "sum to more"),
        ([[-1, 17]], 4, "out of range"),
        ([[16]], 0, "prob_bits"),
        ([[1 << 17]], 17, "out of range"),
        ([16], 4, "2-D"),
        (np.zeros((0, 4)), 4, "at least one dimension"),
        (np.zeros((1, 0)), 4, "number of symbols"),
        (np.ones((1, 65537)), 16, "number of symbols"),
        (np.ones((1 << 11, 1 << 4)), 14, "too large"),
    ],
)
def test_table_bad_arguments(freqs, prob_bits, match):
    with pytest.raises(ValueError, match=match):
        RansTable(np.asarray(freqs), prob_bits)


def test_build_tables_bad_arguments():
    with pytest.raises(ValueError, match=">= 0"):
        codec.build_tables([[1, -1]])
    with pytest.raises(ValueError, match="do not fit"):
        codec.build_tables(np.ones((1, 17), np.int64), 4)
    with pytest.raises(ValueError, match="prob_bits"):
        codec.build_tables([[1, 2]], 17)
    with pytest.raises(ValueError, match="2-D"):
        codec.build_tables([1, 2])


def test_table_from_bytes_rejects_garbage():
    good = RansTable.from_counts(np.arange(1, 41).reshape(2, 20), 10).to_bytes()
    for cut in range(len(good)):
        with pytest.raises(DecodeError):
            RansTable.from_bytes(good[:cut])
    bad = [
        good + b"\x00",
        b"XXXX" + good[4:],
        good[:4] + b"\x02" + good[5:],  # version
        good[:5] + b"\x11" + good[6:],  # prob_bits 17
        good[:5] + b"\x00" + good[6:],  # prob_bits 0
        good[:6] + b"\x80\x00" + good[7:],  # non-minimal varint
        good[:6] + b"\xff\xff\xff\xff\x0f" + good[7:],  # absurd dims
    ]
    for data in bad:
        with pytest.raises(DecodeError):
            RansTable.from_bytes(data)
    with pytest.raises(ValueError, match="contiguous"):
        RansTable.from_bytes(np.frombuffer(good, np.uint8)[::2])


@FUZZ
@given(data=st.data())
def test_table_from_bytes_fuzz(data):
    good = bytearray(RansTable.from_counts(np.arange(1, 41).reshape(2, 20), 10).to_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        good[data.draw(st.integers(0, len(good) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        table = RansTable.from_bytes(bytes(good))
    except DecodeError:
        return
    assert (table.freqs.sum(1) == 1 << table.prob_bits).all()


# ---------------------------------------------------------------------------------------------------------
# Corruption and bad arguments


def _small_stream(n_states=4, n_rows=40):
    rng = np.random.default_rng(5)
    symbols = laplace_symbols(rng, n_rows, np.array([0.5, 3.0, 10.0]), 64)
    table = RansTable.from_counts(codec.histogram(symbols, 64) + 1, 12)
    return symbols, table, codec.compress_symbols(symbols, table, n_states)


@pytest.mark.parametrize("n_states", [1, 4, 64])
def test_every_truncation_and_extension_raises(n_states, simd):
    symbols, table, data = _small_stream(n_states, 200 if n_states == 64 else 40)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decompress_symbols(data[:cut], table, len(symbols))
    for extra in (b"\x00", b"\x00\x00", b"\x01\x02\x03\x04"):
        with pytest.raises(DecodeError):
            codec.decompress_symbols(data + extra, table, len(symbols))


@FUZZ
@given(data=st.data())
def test_byte_flips_never_crash(data):
    n_states = data.draw(st.sampled_from([1, 4, 64]))
    symbols, table, clean = _small_stream(n_states, 200 if n_states == 64 else 40)
    stream = bytearray(clean)
    for _ in range(data.draw(st.integers(1, 4))):
        stream[data.draw(st.integers(0, len(stream) - 1))] ^= data.draw(st.integers(1, 255))
    codec.simd(data.draw(st.booleans()))
    try:
        out = codec.decompress_symbols(bytes(stream), table, len(symbols))
    except DecodeError:
        return
    finally:
        codec.simd(True)
    assert out.shape == symbols.shape and out.min() >= 0 and out.max() < 64  # undetected: still in range


def test_random_flips_are_nearly_always_detected():
    symbols, table, clean = _small_stream(64, 2000)
    rng = np.random.default_rng(6)
    detected = 0
    for _ in range(300):
        stream = bytearray(clean)
        stream[rng.integers(len(stream))] ^= int(rng.integers(1, 256))
        try:
            codec.decompress_symbols(bytes(stream), table, len(symbols))
        except DecodeError:
            detected += 1
    assert detected >= 297


def test_mismatched_stream_and_table():
    symbols, table, data = _small_stream(4, 400)
    with pytest.raises(DecodeError, match="rows"):
        codec.decompress_symbols(data, table, 399)
    other_dims = RansTable.from_counts(np.ones((4, 64), np.int64), 12)
    with pytest.raises(DecodeError, match="dims"):
        codec.decompress_symbols(data, other_dims, 400)
    other_bits = RansTable.from_counts(codec.histogram(symbols, 64), 13)
    with pytest.raises(DecodeError, match="prob_bits"):
        codec.decompress_symbols(data, other_bits, 400)
    other_freqs = RansTable.from_counts(np.ones((3, 64), np.int64), 12)  # same shape, different model
    with pytest.raises(DecodeError, match=r"corrupt|words|truncated"):
        codec.decompress_symbols(data, other_freqs, 400)
    for head in (b"\x02" + data[1:], data[:1] + b"\x03" + data[2:], data[:2] + b"\x00" + data[3:]):
        with pytest.raises(DecodeError):
            codec.decompress_symbols(head, table, 400)
    low_state = bytearray(data)
    low_state[6:10] = (5).to_bytes(4, "little")  # 3 header bytes + 2 varints, then the first state
    with pytest.raises(DecodeError, match="state out of range"):
        codec.decompress_symbols(bytes(low_state), table, 400)


def test_bad_arguments():
    symbols, table, data = _small_stream()
    with pytest.raises(ValueError, match="outside"):
        codec.compress_symbols(np.full((2, 3), 64), table)
    with pytest.raises(ValueError, match="outside"):
        codec.compress_symbols(np.full((2, 3), -1), table)
    with pytest.raises(ValueError, match="dims"):
        codec.compress_symbols(np.zeros((2, 4), np.int32), table)
    with pytest.raises(ValueError, match="2-D"):
        codec.compress_symbols(np.zeros(6, np.int32), table)
    with pytest.raises(TypeError, match="integer"):
        codec.compress_symbols(np.zeros((2, 3), np.float32), table)
    with pytest.raises(ValueError, match="n_states"):
        codec.compress_symbols(symbols, table, 3)
    with pytest.raises(ValueError, match="n_states"):
        codec.compress_symbols(symbols, table, 128)
    with pytest.raises(ValueError, match="n_rows"):
        codec.decompress_symbols(data, table, -1)
    with pytest.raises(ValueError, match="shape"):
        codec.decompress_symbols(data, table, len(symbols), out=np.empty((len(symbols), 4), np.int32))
    with pytest.raises(TypeError, match="int32"):
        codec.decompress_symbols(data, table, len(symbols), out=np.empty(symbols.shape, np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        codec.decompress_symbols(data, table, len(symbols), out=np.empty(symbols.shape[::-1], np.int32).T)
    with pytest.raises(ValueError, match="contiguous"):
        codec.decompress_symbols(np.frombuffer(data, np.uint8)[::2], table, len(symbols))
    assert issubclass(DecodeError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# Escape coding of int32 values


def test_varints_and_zigzag():
    values = np.array([0, 1, -1, 63, -64, 64, 2**31 - 1, -(2**31), 2**40], np.int64)
    z = _zigzag(values)
    np.testing.assert_array_equal(z[:5], [0, 2, 1, 126, 127])
    np.testing.assert_array_equal(_unzigzag(z), values)
    u = np.array([0, 1, 127, 128, 300, 2**35, 2**64 - 1], np.uint64)
    enc = _varint_encode(u)
    assert enc == b"".join(_varint(int(v)) for v in u)
    np.testing.assert_array_equal(_varint_decode(enc, len(u), 10, "t"), u)
    for bad, count in ((enc[:-1], len(u)), (enc, len(u) - 1), (b"\x80\x00", 1), (b"\x81", 1), (b"\x00", 0)):
        with pytest.raises(DecodeError):
            _varint_decode(bad, count, 10, "t")


@SETTINGS
@given(
    dims=st.integers(1, 6),
    n_rows=st.integers(0, 500),
    n_symbols=st.integers(2, 300),
    spread=st.sampled_from([1, 10, 1000, 2**31]),
    seed=st.integers(0, 2**32 - 1),
)
def test_escape_round_trip(dims, n_rows, n_symbols, spread, seed):
    rng = np.random.default_rng(seed)
    train = np.round(rng.laplace(0, rng.uniform(0.5, 20, dims), (300, dims))).astype(np.int32)
    table = EscapeTable.fit(train, n_symbols)
    values = np.round(rng.laplace(0, rng.uniform(0.5, 20, dims), (n_rows, dims)))
    outliers = rng.random((n_rows, dims)) < 0.05
    values = np.where(outliers, rng.integers(-spread, spread, (n_rows, dims)), values)
    values = np.clip(values, -(2**31), 2**31 - 1).astype(np.int64)
    data = codec.compress(values, table)
    out = codec.decompress(data, table, n_rows)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, values)


def test_escape_table_fit_and_bytes():
    rng = np.random.default_rng(7)
    values = np.stack([rng.integers(100, 110, 1000), rng.integers(-3, 3, 1000)], axis=1)
    values[0, 0] = 5000
    table = EscapeTable.fit(values, 16)
    np.testing.assert_array_equal(table.offsets, [100, -3])
    assert table.escape == 15 and table.dims == 2
    assert table.table.freqs[0, 15] >= 1
    back = EscapeTable.from_bytes(table.to_bytes())
    assert back == table and back.sha256() == table.sha256()
    np.testing.assert_array_equal(codec.decompress(codec.compress(values, back), table, 1000), values)
    data = table.to_bytes()
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            EscapeTable.from_bytes(data[:cut])
    with pytest.raises(DecodeError):
        EscapeTable.from_bytes(data + b"\x00")
    with pytest.raises(DecodeError):  # an offset varint beyond 64 bits
        EscapeTable.from_bytes(data[:6] + b"\xff" * 9 + b"\x7f" + data[7:])
    with pytest.raises(ValueError, match="escape"):
        EscapeTable(RansTable(np.array([[16, 0]]), 4), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="offsets"):
        EscapeTable(table.table, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="int32"):
        EscapeTable(table.table, np.array([0, 2**40]))


def test_escape_stream_corruption():
    rng = np.random.default_rng(8)
    values = rng.integers(-50, 50, (100, 3))
    table = EscapeTable.fit(values, 32)  # many escapes
    data = codec.compress(values, table)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decompress(data[:cut], table, 100)
    with pytest.raises(DecodeError):
        codec.decompress(data + b"\x00", table, 100)
    with pytest.raises(DecodeError):
        codec.decompress(data, table, 99)
    # an escaped value that lies inside the window can only come from corruption
    escaped_inside = codec.compress_symbols(np.full((1, 3), table.escape), table.table)
    stream = _varint_encode(np.array([len(escaped_inside)], np.uint64)) + escaped_inside
    with pytest.raises(DecodeError, match="escaped value"):
        codec.decompress(stream + _varint_encode(_zigzag(table.offsets)), table, 1)


def test_escape_bad_arguments():
    table = EscapeTable.fit(np.zeros((10, 2), np.int32), 4)
    with pytest.raises(ValueError, match="int32"):
        codec.compress(np.array([[2**31, 0]]), table)
    with pytest.raises(TypeError, match="integer"):
        codec.compress(np.zeros((2, 2), np.float64), table)
    with pytest.raises(ValueError, match="dims"):
        codec.compress(np.zeros((2, 3), np.int32), table)
    with pytest.raises(ValueError, match="n_symbols"):
        EscapeTable.fit(np.zeros((10, 2), np.int32), 1)


@FUZZ
@given(data=st.data())
def test_escape_flips_never_crash(data):
    rng = np.random.default_rng(9)
    values = rng.integers(-40, 40, (60, 3))
    table = EscapeTable.fit(values, 32)
    target = data.draw(st.sampled_from(["stream", "table"]))
    blob = bytearray(codec.compress(values, table) if target == "stream" else table.to_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        if target == "stream":
            out = codec.decompress(bytes(blob), table, 60)
            assert out.shape == (60, 3) and out.dtype == np.int32
        else:
            EscapeTable.from_bytes(bytes(blob))
    except DecodeError:
        pass
