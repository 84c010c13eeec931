"""rANS entropy coding of integer latents with static per-dimension frequency tables.

Two layers:

- symbols in [0, K): `RansTable` (freqs [D, K], rows summing to 2**prob_bits), `compress_symbols` /
  `decompress_symbols`. Column d of a [N, D] array is coded with table row d. The coder is C++
  (csrc/kernels/rans.h documents the bitstream); a corrupt stream raises `DecodeError`.
- any int32 values: `EscapeTable` maps value v of dim d to symbol v - offsets[d] when that lies in
  [0, K - 1); everything else is coded as the escape symbol K - 1 and its value goes, zigzag-varint coded,
  into a side stream after the rANS stream (`compress` / `decompress`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from e2ecompress import _core
from e2ecompress.errors import DecodeError

RansTable = _core.RansTable

DEFAULT_PROB_BITS = 14
DEFAULT_STATES = 0  # auto: more interleaved states for longer streams (see csrc/kernels/rans.h)
_ESCAPE_MAGIC = b"E2ET"
_ESCAPE_VERSION = 1
_INT32 = np.iinfo(np.int32)


def build_tables(counts: np.ndarray, prob_bits: int = DEFAULT_PROB_BITS) -> np.ndarray:
    """Integer frequencies from symbol counts.

    counts: [D, K] int, >= 0 -> freqs: [D, K] uint32, each row summing to 2**prob_bits with every symbol >= 1,
    chosen to minimize the code length sum(counts * -log2(freqs / 2**prob_bits)) (an all-zero row is uniform).
    """
    return _core.rans_build_freqs(np.asarray(counts, np.int64), prob_bits)


def histogram(symbols: np.ndarray, n_symbols: int) -> np.ndarray:
    """symbols: [N, D] ints in [0, n_symbols) -> counts [D, n_symbols] int64."""
    symbols = np.asarray(symbols)
    if symbols.ndim != 2:
        raise ValueError(f"symbols must be 2-D [N, D], got shape {symbols.shape}")
    n, dims = symbols.shape
    if n and (symbols.min() < 0 or symbols.max() >= n_symbols):
        raise ValueError(f"symbols must lie in [0, {n_symbols})")
    flat = (symbols.astype(np.int64) + np.arange(dims, dtype=np.int64) * n_symbols).ravel()
    return np.bincount(flat, minlength=dims * n_symbols).reshape(dims, n_symbols)


def table_sha256(table: RansTable) -> str:
    """Hex SHA-256 of the table's canonical bytes: the id stored with the model and in each file."""
    return hashlib.sha256(table.to_bytes()).hexdigest()


def cost_bits(symbols: np.ndarray, table: RansTable) -> float:
    """Ideal code length of symbols [N, D] under the table: sum of -log2(freq / 2**prob_bits)."""
    symbols = np.asarray(symbols)
    freqs = table.freqs.astype(np.float64)
    f = freqs[np.arange(table.dims), symbols]
    return float(np.sum(table.prob_bits - np.log2(f)))


def compress_symbols(symbols: np.ndarray, table: RansTable, n_states: int = DEFAULT_STATES) -> bytes:
    """symbols: [N, D] ints, 0 <= s < K with freq > 0 (else ValueError) -> bytes.

    n_states: interleaved coder states, 1, 2, 4, ..., 64, or 0 to choose by length (each costs 4 bytes of
    header; 32-64 states let the AVX2 decoder run several times faster).
    """
    return _core.rans_encode(np.asarray(symbols), table, n_states)


def decompress_symbols(data, table: RansTable, n_rows: int, out: np.ndarray | None = None) -> np.ndarray:
    """bytes-like -> int32 [n_rows, D]; DecodeError if corrupt or not matching the table and n_rows."""
    return _core.rans_decode(data, table, n_rows, out)


def simd(enabled: bool | None = None) -> bool:
    """Whether the AVX2 decoder is used (CPU permitting); pass a bool to switch it (same output)."""
    return _core.rans_simd(enabled)


# ---------------------------------------------------------------------------------------------------------
# Varints (unsigned LEB128, vectorized) and zigzag


def _varint_encode(u: np.ndarray) -> bytes:
    u = np.asarray(u, np.uint64)
    if u.size == 0:
        return b""
    nbytes = np.ones(u.shape, np.int64)
    rest = u >> np.uint64(7)
    while rest.any():
        nbytes += rest > 0
        rest >>= np.uint64(7)
    starts = np.cumsum(nbytes) - nbytes
    out = np.empty(int(nbytes.sum()), np.uint8)
    for k in range(int(nbytes.max())):
        sel = nbytes > k
        byte = (u[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        byte |= np.where(nbytes[sel] > k + 1, np.uint64(0x80), np.uint64(0))
        out[starts[sel] + k] = byte
    return out.tobytes()


def _varint_decode(buf: bytes | memoryview, count: int, max_bytes: int, what: str) -> np.ndarray:
    """Exactly `count` minimal varints of at most max_bytes bytes filling buf -> uint64 [count]."""
    b = np.frombuffer(buf, np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if len(ends) != count or (count and ends[-1] != len(b) - 1) or (not count and len(b)):
        raise DecodeError(f"{what}: expected {count} varints in {len(b)} bytes")
    if count == 0:
        return np.zeros(0, np.uint64)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > max_bytes or np.any((b[ends] == 0) & (lengths > 1)):
        raise DecodeError(f"{what}: varint too long or not minimal")
    pos = np.arange(len(b)) - np.repeat(starts, lengths)
    parts = (b & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    return np.add.reduceat(parts, starts)


def _read_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise DecodeError(f"{what}: truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if (byte == 0 and shift) or value >> 64:
                raise DecodeError(f"{what}: non-minimal or over-long varint")
            return value, pos
        shift += 7


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, np.uint64)
    return (u >> np.uint64(1)).view(np.int64) ^ -(u & np.uint64(1)).view(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Escape coding of arbitrary int32 values


@dataclass(frozen=True, eq=False)
class EscapeTable:
    """A RansTable for int32 values: dim d codes v as v - offsets[d] if that is in [0, K - 1), else as the
    escape symbol K - 1 with v itself in a zigzag-varint side stream.

    Args:
        table: RansTable with K >= 2 symbols; symbol K - 1 is the escape (keep its freq > 0).
        offsets: [D] ints in the int32 range.
    """

    table: RansTable
    offsets: np.ndarray = field(repr=False)

    def __post_init__(self):
        if not isinstance(self.table, RansTable):
            raise TypeError(f"table must be a RansTable, got {type(self.table).__name__}")
        offsets = np.asarray(self.offsets)
        if offsets.shape != (self.table.dims,) or offsets.dtype.kind not in "iu":
            raise ValueError(f"offsets must be {self.table.dims} ints, got {offsets.dtype} {offsets.shape}")
        if offsets.size and (offsets.min() < _INT32.min or offsets.max() > _INT32.max):
            raise ValueError("offsets must lie in the int32 range")
        if self.table.n_symbols < 2:
            raise ValueError("an escape table needs at least 2 symbols")
        if np.any(self.table.freqs[:, -1] == 0):
            raise ValueError("the escape symbol (K - 1) needs a frequency > 0 in every dim")
        offsets = offsets.astype(np.int64)
        offsets.flags.writeable = False
        object.__setattr__(self, "offsets", offsets)

    @property
    def dims(self) -> int:
        return self.table.dims

    @property
    def escape(self) -> int:
        return self.table.n_symbols - 1

    @classmethod
    def fit(cls, values: np.ndarray, n_symbols: int, prob_bits: int = DEFAULT_PROB_BITS) -> EscapeTable:
        """Fit offsets and frequencies to training values [N, D]: per dim, the window of n_symbols - 1
        consecutive values holding the most samples; the rest counts as escapes."""
        values = _as_values(values)
        if n_symbols < 2:
            raise ValueError(f"n_symbols must be >= 2, got {n_symbols}")
        width = n_symbols - 1
        offsets = np.zeros(values.shape[1], np.int64)
        for d in range(values.shape[1]):
            uniq, counts = np.unique(values[:, d], return_counts=True)
            if len(uniq) == 0:
                continue
            cum = np.concatenate(([0], np.cumsum(counts)))
            inside = cum[np.searchsorted(uniq, uniq + width)] - cum[:-1]
            offsets[d] = uniq[int(np.argmax(inside))]
        symbols = _to_symbols(values, offsets, width)
        table = RansTable.from_counts(histogram(symbols, n_symbols), prob_bits)
        return cls(table, offsets)

    def to_bytes(self) -> bytes:
        """Canonical bytes: magic, version, varint D, D zigzag-varint offsets, then the RansTable bytes."""
        head = _ESCAPE_MAGIC + bytes([_ESCAPE_VERSION]) + _varint_encode(np.array([self.dims], np.uint64))
        return head + _varint_encode(_zigzag(self.offsets)) + self.table.to_bytes()

    @classmethod
    def from_bytes(cls, data) -> EscapeTable:
        """Parse to_bytes() output; DecodeError unless it is a valid escape table."""
        data = bytes(data)
        what = "escape table"
        if data[:4] != _ESCAPE_MAGIC or len(data) < 5 or data[4] != _ESCAPE_VERSION:
            raise DecodeError(f"{what}: bad magic or version")
        dims, pos = _read_varint(data, 5, what)
        if dims > len(data) - pos:
            raise DecodeError(f"{what}: truncated")
        offsets = np.zeros(dims, np.uint64)
        for d in range(dims):
            offsets[d], pos = _read_varint(data, pos, what)
        table = RansTable.from_bytes(data[pos:])
        try:
            return cls(table, _unzigzag(offsets))
        except ValueError as exc:
            raise DecodeError(f"{what}: {exc}") from None

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def __eq__(self, other) -> bool:
        if not isinstance(other, EscapeTable):
            return NotImplemented
        return self.table == other.table and np.array_equal(self.offsets, other.offsets)

    __hash__ = None  # mutable-looking numpy field: compare, do not hash


def _as_values(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D [N, D], got shape {values.shape}")
    if values.dtype.kind not in "iu":
        raise TypeError(f"values must have an integer dtype, got {values.dtype}")
    big = values.dtype.itemsize >= 4
    if values.size and big and (values.min() < _INT32.min or values.max() > _INT32.max):
        raise ValueError("values must lie in the int32 range")
    return values.astype(np.int64)


def _to_symbols(values: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    rel = values - offsets
    return np.where((rel >= 0) & (rel < width), rel, width).astype(np.uint16)


def compress(values: np.ndarray, table: EscapeTable, n_states: int = DEFAULT_STATES) -> bytes:
    """values: [N, D] int32-range ints -> varint(len(rans)) + rans stream + zigzag varints of escapes."""
    values = _as_values(values)
    if values.shape[1] != table.dims:
        raise ValueError(f"values have {values.shape[1]} dims, the table has {table.dims}")
    symbols = _to_symbols(values, table.offsets, table.escape)
    stream = compress_symbols(symbols, table.table, n_states)
    escaped = values[symbols == table.escape]  # row-major order
    return _varint_encode(np.array([len(stream)], np.uint64)) + stream + _varint_encode(_zigzag(escaped))


def decompress(data, table: EscapeTable, n_rows: int) -> np.ndarray:
    """Inverse of `compress` -> int32 [n_rows, D]; DecodeError on a corrupt or mismatched stream."""
    data = memoryview(data).cast("B")
    length, pos = _read_varint(data, 0, "escape stream")
    if length > len(data) - pos:
        raise DecodeError("escape stream: truncated rANS part")
    out = decompress_symbols(data[pos : pos + length], table.table, n_rows)
    where = out == table.escape
    n_escaped = int(np.count_nonzero(where))
    escaped = _unzigzag(_varint_decode(data[pos + length :], n_escaped, 5, "escape stream"))
    out += table.offsets.astype(np.int32)  # may wrap only in escape slots, which are overwritten below
    if n_escaped:
        # An encoder only escapes values outside the window and inside int32; anything else is corruption.
        rel = escaped - table.offsets[np.nonzero(where)[1]]
        outside_int32 = escaped.min() < _INT32.min or escaped.max() > _INT32.max
        if outside_int32 or np.any((rel >= 0) & (rel < table.escape)):
            raise DecodeError("escape stream: corrupt escaped value")
        out[where] = escaped
    return out
