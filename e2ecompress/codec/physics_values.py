"""Value coding of the physics levels (`physics_lossy`): the logarithmic grid, cone values under a
predictor, the per-plane sum factors, the sorted coarse values outside the cone, and the chunk header.

Decoding is integer arithmetic plus IEEE float64 products and one float32 rounding; the grid is built by
repeated multiplication, so it has the same bits on every machine.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from e2ecompress import _core
from e2ecompress.codec import ctxval, sparse
from e2ecompress.codec.intcode import compress_ints, decompress_ints
from e2ecompress.errors import DecodeError

VERSION = 1
_HEAD = struct.Struct("<BHHHBH")  # version, radius * 16, step, out step, sum bits, exact outside cells
_SCALE = 4096
MIN_STEP = 16  # the finest grid a chunk may use (r = 1 + 16 / 4096: about 45,000 grid points)
MAX_RINGS = 8  # the most ring edges outside the cone
PREDICTORS = ("direct", "runs", "ctx")


@dataclass(frozen=True)
class Level:
    """One physics level: log-grid steps (r = 1 + step / 4096) inside and outside the cone, the sum
    factor's resolution 2^-sum_bits, the cone radius and the edges of the rings outside it (pixels), and
    the most cells a plane kind may have outside the cone for its positions there to be kept exactly."""

    step: int
    out_step: int
    sum_bits: int
    radius: float = 24.0
    rings: tuple[float, ...] = (36.0, 48.0)
    exact_cells: int = 1024

    @property
    def bound(self) -> float:
        """r - 1 of the grid inside the cone."""
        return self.step / _SCALE

    @property
    def max_rel(self) -> float:
        """The largest relative error of a decoded value inside the cone: r - 1, plus the sum factor's
        resolution and float32 rounding."""
        return self.bound + 2.0**-self.sum_bits * np.sqrt(1.0 + self.bound) + 2.0**-22

    @property
    def out_rel(self) -> float:
        """The largest relative error of a coarse value outside the cone: sqrt(r_out) - 1 and rounding."""
        return float(np.sqrt(1.0 + self.out_step / _SCALE)) - 1.0 + 2.0**-22


@functools.lru_cache(maxsize=16)
def log_grid(step: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(grid g [n] float64 ascending, quantization bounds [n - 1] between neighbours, index of 1.0) for
    r = 1 + step / 4096, covering [2^-126, 2^128): built by repeated IEEE multiplication and division."""
    r = 1.0 + step / _SCALE
    up, g = [], 1.0
    while g < 2.0**128:
        up.append(g)
        g *= r
    down = [1.0 / v for v in up[1:] if 1.0 / v >= 2.0**-126]
    grid = np.array(down[::-1] + up, np.float64)
    bounds = np.sqrt(grid[1:] * grid[:-1])
    for a in (grid, bounds):
        a.setflags(write=False)
    return grid, bounds, len(down)


def quantize(a: np.ndarray, step: int) -> np.ndarray:
    """|values| float64 -> grid indices (nearest in log; clamped to the grid)."""
    return np.searchsorted(log_grid(step)[1], a).astype(np.int64)


def _pack(*parts: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(p)) + p for p in parts[:-1]) + parts[-1]


def _unpack(data: bytes, n: int, what: str) -> list[memoryview]:
    view, out, pos = memoryview(data), [], 0
    for _ in range(n - 1):
        if pos + 4 > len(view):
            raise DecodeError(f"{what}: truncated")
        size = struct.unpack_from("<I", view, pos)[0]
        if pos + 4 + size > len(view):
            raise DecodeError(f"{what}: truncated")
        out.append(view[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return [*out, view[pos:]]


# ---------------------------------------------------------------------------------------------------------
# Values inside the cone


def compress_cone_values(q: np.ndarray, pid: np.ndarray, idx: np.ndarray, width: int, height: int) -> bytes:
    """Grid indices of the cone cells -> ".v": u8 predictor (direct, runs, ctx) | i32 reference | stream."""
    if not q.size:
        return b""
    ref = int(np.median(q))
    d = q - ref
    options = [
        compress_ints(d, signed=True),
        compress_ints(_core.runs_int_encode(pid, idx, width, d), signed=True),
        ctxval.compress(d, pid, idx, height, width, "quantized"),
    ]
    return min((struct.pack("<Bi", i, ref) + o for i, o in enumerate(options)), key=len)


def decompress_cone_values(
    data: bytes, pid: np.ndarray, idx: np.ndarray, width: int, height: int, lo: int, hi: int
) -> np.ndarray:
    """Inverse of `compress_cone_values`; DecodeError unless every value is in [lo, hi)."""
    if not pid.size:
        if data:
            raise DecodeError("values: stream for no cells")
        return np.zeros(0, np.int64)
    if len(data) < 5 or data[0] >= len(PREDICTORS):
        raise DecodeError("values: bad header")
    pred, ref = struct.unpack_from("<Bi", data)
    if pred == 2:
        d = ctxval.decompress(memoryview(data)[5:], pid, idx, height, width, "quantized")
    else:
        d = decompress_ints(memoryview(data)[5:], len(pid), signed=True)
    if pred == 1:
        d = _core.runs_int_decode(pid, idx, width, d)
    q = d + ref
    if q.min() < lo or q.max() >= hi:
        raise DecodeError("values: grid index out of range")
    return q


def sum_factors(
    x: np.ndarray, w: np.ndarray, pid: np.ndarray, g: np.ndarray, n: int, level: Level
) -> np.ndarray:
    """Per plane the integer t of the factor 1 + t 2^-sum_bits that brings the decoded cone sum sum(g w) to
    the true one sum(x w), limited by `sum_limit`."""
    true = np.bincount(pid, x * w, minlength=n)
    got = np.bincount(pid, g * w, minlength=n)
    unit = 2.0**level.sum_bits
    lo, hi = sum_limits(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.rint((true / got - 1.0) * unit)
    return np.clip(np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0), -lo, hi).astype(np.int64)


def sum_limits(level: Level) -> tuple[int, int]:
    """(lo, hi): t is kept in [-lo, hi], one step beyond [1 / sqrt(r) - 1, sqrt(r) - 1] 2^sum_bits, so that
    rounding never clips it when a plane's values share one sign, and the factor stays positive."""
    unit, root = 2.0**level.sum_bits, float(np.sqrt(1.0 + level.bound))
    return int(np.floor((1.0 - 1.0 / root) * unit)) + 1, int(np.floor((root - 1.0) * unit)) + 1


def cone_decoded(g: np.ndarray, t: np.ndarray, level: Level) -> np.ndarray:
    """Decoded cone values: g * (1 + t 2^-sum_bits) in float64 (one product), rounded to float32."""
    return (g * (1.0 + t.astype(np.float64) * 2.0**-level.sum_bits)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Values outside the cone: per plane sorted codes m = +-(grid index + 1), smallest first


def outside_codes(x: np.ndarray, step: int) -> np.ndarray:
    """Values -> codes m = +-(grid index + 1), the sign of the value."""
    i = quantize(np.abs(x.astype(np.float64)), step) + 1
    return np.where(x < 0, -i, i)


def compress_outside_values(x: np.ndarray, pid: np.ndarray, step: int) -> tuple[bytes, np.ndarray]:
    """-> (".ov": i32 reference | firsts | rises, the sorted codes in plane order)."""
    if not x.size:
        return b"", np.zeros(0, np.int64)
    m = outside_codes(x, step)
    order = np.lexsort((m, pid))
    m, p = m[order], pid[order]
    first = np.r_[True, p[1:] != p[:-1]]
    ref = int(np.median(m[first]))
    rises = np.diff(m)[~first[1:]]
    body = _pack(compress_ints(m[first] - ref, signed=True), compress_ints(rises))
    return struct.pack("<i", ref) + body, m


def decompress_outside_values(data: bytes, counts: np.ndarray, step: int) -> np.ndarray:
    total = int(counts.sum())
    if not total:
        if data:
            raise DecodeError("outside values: stream for no cells")
        return np.zeros(0, np.int64)
    if len(data) < 4:
        raise DecodeError("outside values: truncated")
    ref = struct.unpack_from("<i", data)[0]
    firsts, rises = _unpack(data[4:], 2, "outside values")
    busy = counts > 0
    m0 = decompress_ints(firsts, int(busy.sum()), signed=True) + ref
    dr = decompress_ints(rises, total - int(busy.sum()))
    steps = np.zeros(total, np.int64)
    starts = np.cumsum(counts[busy]) - counts[busy]
    rest = np.ones(total, bool)
    rest[starts] = False
    steps[rest] = dr
    steps[starts] = m0
    # cumulative sum restarted at each plane's first value
    csum = np.cumsum(steps)
    m = csum - np.repeat(csum[starts] - m0, counts[busy])
    n_grid = len(log_grid(step)[0])
    if (m == 0).any() or np.abs(m).max() > n_grid:
        raise DecodeError("outside values: code out of range")
    return m


def outside_decoded(m: np.ndarray, step: int) -> np.ndarray:
    g = log_grid(step)[0][np.abs(m) - 1]
    return np.where(m < 0, -g, g).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Header


def header_to_bytes(level: Level, ks: list[int]) -> bytes:
    """The "phys" stream: version, radius, steps, sum bits, exact outside cells, ring edges (u8 count,
    u16 each; lengths in 1/16 pixel), then one byte per channel: its block size (0: none)."""
    head = _HEAD.pack(
        VERSION, round(level.radius * 16), level.step, level.out_step, level.sum_bits, level.exact_cells
    )
    edges = [round(e * 16) for e in level.rings]
    return head + struct.pack(f"<B{len(edges)}H", len(edges), *edges) + bytes(ks)


def header_from_bytes(data: bytes, n_channels: int) -> tuple[Level, list[int]]:
    if len(data) < _HEAD.size + 1:
        raise DecodeError("phys: bad header size")
    version, r16, step, out_step, sum_bits, exact_cells = _HEAD.unpack_from(data)
    n_edges = data[_HEAD.size]
    start = _HEAD.size + 1 + 2 * n_edges
    if len(data) != start + n_channels:
        raise DecodeError("phys: bad header size")
    edges = struct.unpack_from(f"<{n_edges}H", data, _HEAD.size + 1)
    ks = list(data[start:])
    steps_ok = all(MIN_STEP <= v < _SCALE * 4 for v in (step, out_step))
    if version != VERSION or not steps_ok or sum_bits > 30:
        raise DecodeError("phys: bad parameters")
    rings_ok = len(edges) <= MAX_RINGS and list(edges) == sorted(set(edges))
    if r16 == 0 or any(k == 1 or k > sparse.MAX_BLOCK for k in ks) or not rings_ok:
        raise DecodeError("phys: bad cone radius, rings or block size")
    return Level(step, out_step, sum_bits, r16 / 16.0, tuple(e / 16.0 for e in edges), exact_cells), ks


def get(streams: Mapping[str, bytes], name: str) -> bytes:
    try:
        return streams[name]
    except KeyError:
        raise DecodeError(f"chunk has no {name!r} stream") from None
