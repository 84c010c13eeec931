"""Adaptive entropy coding of 1-D integer streams: a per-stream rANS table plus raw extra bits.

A value v >= 0 (signed streams are zigzag mapped first) becomes a token and some raw bits:

- v < 32: token v, no extra bits;
- else, with n = bit_length(v) >= 6: token 32 + 4 (n - 6) + (the two bits below the leading one), and
  the remaining n - 3 low bits go raw into a bit stream.

Tokens are coded with rANS under a table fitted to this stream's own token counts (stored in front of it),
so no training is needed and any value range works; the table costs a few bytes per token kind seen.

Stream layout: varint len(table) | RansTable bytes | varint len(rans) | rANS stream | packed extra bits
(MSB first, zero padded to a byte). An empty input gives b"". `decompress_ints` raises DecodeError on any
inconsistency: a bad table, a short or corrupt rANS stream, or extra-bit bytes that do not match.
"""

from __future__ import annotations

import numpy as np

from e2ecompress.codec.rans import (
    RansTable,
    _read_varint,
    _unzigzag,
    _varint_encode,
    _zigzag,
    compress_symbols,
    decompress_symbols,
)
from e2ecompress.errors import DecodeError

DIRECT = 32  # values below this are their own token
_DIRECT_BITS = 6  # bit_length(DIRECT)
_MANT = 2  # bits below the leading one that go into the token
MAX_TOKENS = DIRECT + ((64 - _DIRECT_BITS + 1) << _MANT)
PROB_BITS = 14


def _bit_length(v: np.ndarray) -> np.ndarray:
    """bit_length of uint64 values (0 -> 0), vectorized."""
    n = np.zeros(v.shape, np.int64)
    rest = v.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = rest >= (np.uint64(1) << np.uint64(shift))
        n += big * shift
        rest = np.where(big, rest >> np.uint64(shift), rest)
    return n + (rest > 0)


def tokenize(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint64 values -> (tokens int64, extra-bit counts int64, extra bits uint64)."""
    n = _bit_length(u)
    big = u >= DIRECT
    nbits = np.where(big, n - 1 - _MANT, 0)
    mant = (u >> nbits.astype(np.uint64)) & np.uint64((1 << _MANT) - 1)
    tokens = np.where(big, DIRECT + ((n - _DIRECT_BITS) << _MANT) + mant.astype(np.int64), u.astype(np.int64))
    extra = u & ((np.uint64(1) << nbits.astype(np.uint64)) - np.uint64(1))
    return tokens, nbits, extra


def _token_prefix(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of the token part: (high part of the value without extra bits, extra-bit counts)."""
    big = tokens >= DIRECT
    k = np.where(big, tokens - DIRECT, 0)
    n = (k >> _MANT) + _DIRECT_BITS
    nbits = np.where(big, n - 1 - _MANT, 0)
    lead = np.uint64(1 << _MANT) | (k & ((1 << _MANT) - 1)).astype(np.uint64)
    high = np.where(big, lead << nbits.astype(np.uint64), 0)
    return np.where(big, high, tokens.astype(np.uint64)).astype(np.uint64), nbits


def _pack_bits(extra: np.ndarray, nbits: np.ndarray) -> bytes:
    total = int(nbits.sum())
    if total == 0:
        return b""
    owner = np.repeat(np.arange(len(nbits)), nbits)
    ends = np.cumsum(nbits)
    pos = (ends[owner] - 1 - np.arange(total)).astype(np.uint64)  # bit index inside its value, MSB first
    bits = ((extra[owner] >> pos) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits).tobytes()


def _unpack_bits(data: memoryview, nbits: np.ndarray) -> np.ndarray:
    total = int(nbits.sum())
    if len(data) != (total + 7) // 8:
        raise DecodeError(f"int stream: {len(data)} extra-bit bytes, expected {(total + 7) // 8}")
    out = np.zeros(len(nbits), np.uint64)
    if total == 0:
        return out
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    if bits[total:].any():
        raise DecodeError("int stream: non-zero padding bits")
    owner = np.repeat(np.arange(len(nbits)), nbits)
    ends = np.cumsum(nbits)
    pos = (ends[owner] - 1 - np.arange(total)).astype(np.uint64)
    has = nbits > 0
    out[has] = np.add.reduceat(bits[:total].astype(np.uint64) << pos, (ends - nbits)[has])
    return out


def compress_ints(values: np.ndarray, signed: bool = False) -> bytes:
    """1-D integers (>= 0 unless signed) -> bytes; back with `decompress_ints(data, len(values), signed)`."""
    v = np.asarray(values).ravel()
    if v.size == 0:
        return b""
    if v.dtype.kind not in "iu":
        raise TypeError(f"values must be integers, got {v.dtype}")
    if signed:
        u = _zigzag(v.astype(np.int64))
    else:
        if v.min() < 0 or (v.dtype.kind == "u" and v.max() > np.iinfo(np.int64).max):
            raise ValueError("unsigned stream values must be non-negative and below 2**63")
        u = v.astype(np.uint64)
    tokens, nbits, extra = tokenize(u)
    n_tokens = int(tokens.max()) + 1
    table = RansTable.from_counts(np.bincount(tokens, minlength=n_tokens)[None].astype(np.int64), PROB_BITS)
    tbytes = table.to_bytes()
    stream = compress_symbols(tokens.astype(np.uint16)[:, None], table)
    head = _varint_encode(np.array([len(tbytes)], np.uint64)) + tbytes
    return head + _varint_encode(np.array([len(stream)], np.uint64)) + stream + _pack_bits(extra, nbits)


def decompress_ints(data, count: int, signed: bool = False) -> np.ndarray:
    """Inverse of `compress_ints` -> int64 [count]; DecodeError if data is not exactly such a stream."""
    data = memoryview(data).cast("B")
    if count == 0:
        if len(data):
            raise DecodeError(f"int stream: {len(data)} bytes for 0 values")
        return np.zeros(0, np.int64)
    tlen, pos = _read_varint(data, 0, "int stream")
    if tlen > len(data) - pos:
        raise DecodeError("int stream: truncated table")
    table = RansTable.from_bytes(data[pos : pos + tlen])
    pos += tlen
    if table.dims != 1 or table.n_symbols > MAX_TOKENS:
        raise DecodeError("int stream: bad table shape")
    slen, pos = _read_varint(data, pos, "int stream")
    if slen > len(data) - pos:
        raise DecodeError("int stream: truncated rANS part")
    tokens = decompress_symbols(data[pos : pos + slen], table, count)[:, 0].astype(np.int64)
    high, nbits = _token_prefix(tokens)
    u = high | _unpack_bits(data[pos + slen :], nbits)
    if signed:
        return _unzigzag(u)
    if u.max() > np.uint64(np.iinfo(np.int64).max):
        raise DecodeError("int stream: value out of range")
    return u.astype(np.int64)
