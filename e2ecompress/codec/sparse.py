"""Exact sparse coding of jet images: where energy is (occupancy) and how much (values).

Planes. Each (jet, channel) image is one plane. A channel listed in `blocks` (HCAL: towers of 5x5 crystals
whose energy is spread evenly over them) is checked for being constant on k x k blocks at some grid offset;
if it is, the plane is replaced by its block grid (a 26 x 26 plane for k = 5) and the offset is recorded.
The check is exact, so this is lossless; planes that fail it are coded pixel by pixel.

Occupancy. Per plane, the count of non-zero cells and the gaps between them in raster order (gap = index
difference - 1), both adaptive rANS streams (`intcode`). (Measured on generated jets: conditioning the gaps
on the distance to the jet axis, or coding pixels as bits with left/up/radial contexts, saves <= 10%; about
a quarter of the ECAL hits are isolated noise above the zero-suppression threshold at random places.)

Values, in raster order of the occupied cells, as integers r under a predictor chosen per channel and chunk
(the smaller stream wins):

- "direct": r = Q, with Q = round((x - base) / step);
- "runs": a horizontal run of occupied cells is coded relative to a start value P (the decoded cell above
  if it is occupied, else base): Q_k = round((x_k - P) / step), r = Q_k - Q_(k-1) (Q_(-1) = 0).

`base` is 0 or a model prediction per cell. Decoding: x' = P + step * Q, computed in float64 the same way
on both sides, then cast to float32. Lossless mode uses the same predictors on the float32 bit patterns
(integers, base 0) instead of quantized values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from e2ecompress import _core
from e2ecompress.codec import ctxval
from e2ecompress.codec.intcode import compress_ints, decompress_ints
from e2ecompress.errors import DecodeError

_CTX_KIND = {"lossless": "float32bits", "bounded": "quantized"}
FULL = 255  # plane code of a plane coded pixel by pixel; block planes have code oy * k + ox
PREDICTORS = ("direct", "runs", "ctx")


# ---------------------------------------------------------------------------------------------------------
# Block planes


def _block_layout(size: int, k: int, offset: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(block index of each pixel [size], first pixel of each block [G], G) for a grid offset."""
    shift = (k - offset) % k
    block_of = (np.arange(size) + shift) // k
    grid = -(-size // k) + 1
    first = np.clip(np.arange(grid) * k - shift, 0, size - 1)
    return block_of, first, grid


MAX_BLOCK = 16  # the largest block size looked for
_SAMPLE = 32  # planes per channel whose value edges are looked at


def _edge_gcd(rows: np.ndarray) -> int:
    """gcd of the distances between value changes along the last axis of rows [n, m] (0 if none)."""
    changes = rows[:, 1:] != rows[:, :-1]
    r, x = np.nonzero(changes)
    if len(x) < 2:
        return 0
    first = np.zeros(len(x), bool)
    first[np.flatnonzero(np.diff(r)) + 1] = True
    first[0] = True
    gaps = np.diff(x)[~first[1:]]  # distances between edges of the same row
    return int(np.gcd.reduce(gaps)) if gaps.size else 0


def detect_blocks(images: np.ndarray, max_k: int = MAX_BLOCK) -> list[int]:
    """images [B, C, H, W] -> per channel the block size k >= 2 its planes look constant on (HCAL towers
    upsampled to crystals), else 0. Found from the data: in a block-constant plane the value edges along
    rows and columns lie multiples of k apart, so the gcd of their distances is k; the most common such
    k over a sample of non-empty planes wins. A guess only: `find_block_offsets` then checks every plane
    exactly, and planes that are not block-constant stay pixel planes."""
    out = []
    if not images.shape[0]:
        return [0] * images.shape[1]
    for c in range(images.shape[1]):
        planes = images[: 2 * _SAMPLE, c]
        busy = np.flatnonzero(planes.reshape(len(planes), -1).any(axis=1))[:_SAMPLE]
        votes: dict[int, int] = {}
        for p in planes[busy]:
            g = int(np.gcd(_edge_gcd(p), _edge_gcd(p.T)))
            if 2 <= g <= min(max_k, *p.shape):
                votes[g] = votes.get(g, 0) + 1
        out.append(max(votes, key=lambda k: (votes[k], k)) if votes else 0)
    return out


def block_grid_size(size: int, k: int) -> int:
    return -(-size // k) + 1


def find_block_offsets(planes: np.ndarray, k: int) -> np.ndarray:
    """planes [N, H, W] -> int [N]: oy * k + ox of a k x k block grid the plane is constant on, else FULL."""
    n, h, w = planes.shape
    out = np.full(n, FULL, np.int64)
    if n == 0:
        return out

    def valid(changes: np.ndarray, size: int) -> np.ndarray:  # changes [N, size-1] -> [N, k]
        j = np.arange(1, size)
        interior = ((j[None, :] - np.arange(k)[:, None]) % k) != 0  # [k, size-1]
        return ~(changes[:, None, :] & interior[None]).any(-1)

    vx = valid((planes[:, :, 1:] != planes[:, :, :-1]).any(1), w)
    vy = valid((planes[:, 1:, :] != planes[:, :-1, :]).any(2), h)
    ok = vx.any(1) & vy.any(1)
    out[ok] = np.argmax(vy[ok], 1) * k + np.argmax(vx[ok], 1)
    return out


def to_blocks(planes: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """Block-constant planes [N, H, W] with their offsets -> block grids [N, Gh, Gw] (padding cells zero)."""
    n, h, w = planes.shape
    out = np.zeros((n, block_grid_size(h, k), block_grid_size(w, k)), planes.dtype)
    for code in np.unique(offsets):
        sel = offsets == code
        _, ry, _gy = _block_layout(h, k, int(code) // k)
        _, rx, _gx = _block_layout(w, k, int(code) % k)
        grid = planes[sel][:, ry[:, None], rx[None, :]]
        ny = (h - 1 + (k - int(code) // k) % k) // k + 1
        nx = (w - 1 + (k - int(code) % k) % k) // k + 1
        grid[:, ny:, :] = 0
        grid[:, :, nx:] = 0
        out[sel] = grid
    return out


def from_blocks(grids: np.ndarray, offsets: np.ndarray, k: int, size: tuple[int, int]) -> np.ndarray:
    """Inverse of `to_blocks` -> planes [N, H, W]."""
    h, w = size
    out = np.empty((len(grids), h, w), grids.dtype)
    for code in np.unique(offsets):
        sel = offsets == code
        by, _, _ = _block_layout(h, k, int(code) // k)
        bx, _, _ = _block_layout(w, k, int(code) % k)
        out[sel] = grids[sel][:, by[:, None], bx[None, :]]
    return out


def block_mean(planes: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """Average planes [N, H, W] over the k x k blocks of each offset (model predictions of block planes)."""
    _n, h, w = planes.shape
    out = np.empty_like(planes)
    for code in np.unique(offsets):
        sel = offsets == code
        by, _, gy = _block_layout(h, k, int(code) // k)
        bx, _, gx = _block_layout(w, k, int(code) % k)
        sub = planes[sel]
        sums = np.zeros((len(sub), gy, gx), np.float64)
        np.add.at(sums, (slice(None), by[:, None], bx[None, :]), sub)
        cnt = np.zeros((gy, gx))
        np.add.at(cnt, (by[:, None], bx[None, :]), 1.0)
        out[sel] = (sums / np.maximum(cnt, 1))[:, by[:, None], bx[None, :]]
    return out


# ---------------------------------------------------------------------------------------------------------
# Occupancy


def occupied_cells(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """planes [N, h, w] -> (plane id, flat index) of the non-zero cells, in plane then raster order."""
    if planes.dtype not in (np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_):
        n = len(planes)
        return np.nonzero(planes.reshape(n, int(np.prod(planes.shape[1:]))) != 0)
    if len(planes) and not planes[0].flags.c_contiguous:
        planes = np.ascontiguousarray(planes)
    return _core.nonzero_cells(planes)  # one pass in C++, GIL released


def compress_occupancy(plane_id: np.ndarray, idx: np.ndarray, n: int) -> tuple[bytes, bytes]:
    """Occupied cells of n planes -> (counts, gaps) streams."""
    counts = np.bincount(plane_id, minlength=n)
    prev = np.empty_like(idx)
    prev[1:] = idx[:-1]
    first = np.ones(len(idx), bool)
    first[1:] = plane_id[1:] != plane_id[:-1]
    prev[first] = -1
    return compress_ints(counts), compress_ints(idx - prev - 1)


def decompress_occupancy(streams: Sequence[bytes], n: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (plane id, flat index) of every occupied cell, in plane then raster order."""
    counts = decompress_ints(streams[0], n)
    if counts.size and (counts.max() > cells):
        raise DecodeError(f"occupancy: a plane claims more than {cells} occupied cells")
    total = int(counts.sum())
    gaps = decompress_ints(streams[1], total)
    if gaps.size and gaps.max() >= cells:
        raise DecodeError("occupancy: gap out of range")
    steps = gaps + 1
    plane_id = np.repeat(np.arange(n), counts)
    starts = np.cumsum(counts) - counts
    csum = np.cumsum(steps)
    before = np.where(starts > 0, csum[np.maximum(starts - 1, 0)], 0) if total else starts
    idx = csum - np.repeat(before, counts) - 1
    if total and idx.max() >= cells:
        raise DecodeError("occupancy: cell index out of range")
    return plane_id, idx


# ---------------------------------------------------------------------------------------------------------
# Values (on the occupied cells only; the runs predictor is C++: csrc/kernels/runs.h)


@dataclass(frozen=True)
class ValueCoding:
    """How values are coded: 'bounded' (quantization step) or 'lossless' (float32 bit patterns)."""

    mode: str
    step: float = 0.0


@dataclass(frozen=True)
class CellSet:
    """Occupied cells of a stack of planes of the given width, sorted by (plane, index)."""

    plane: np.ndarray
    index: np.ndarray
    width: int
    height: int = 0  # the planes' height; 0 (unknown) leaves the context-modelled "ctx" predictor out

    def __len__(self) -> int:
        return len(self.index)


def compress_values(
    cells: CellSet, x: np.ndarray, base: np.ndarray | None, coding: ValueCoding
) -> tuple[bytes, np.ndarray]:
    """x [n] float32 at the cells -> (stream, decoded values float32 [n]); the smaller predictor wins."""
    args = (cells.plane, cells.index, cells.width)
    if coding.mode == "lossless":
        bits = x.view(np.int32).astype(np.int64)
        ints = {"direct": bits, "runs": _core.runs_int_encode(*args, bits)}
        recs = {"direct": x, "runs": x, "ctx": x}
    else:
        base64 = np.zeros(len(x)) if base is None else np.asarray(base, np.float64)
        q = np.rint((x.astype(np.float64) - base64) / coding.step)
        runs_r, runs_rec = _core.runs_quantize(*args, x.astype(np.float64), base64, coding.step)
        ints = {"direct": q.astype(np.int64), "runs": runs_r}
        direct_rec = base64 + coding.step * q
        recs = {"direct": direct_rec, "runs": runs_rec, "ctx": direct_rec}
    options = {name: compress_ints(v, signed=True) for name, v in ints.items()}
    if cells.height:  # the context-modelled coder of the direct integers (ctxval)
        kind = _CTX_KIND[coding.mode]
        options["ctx"] = ctxval.compress(
            ints["direct"], cells.plane, cells.index, cells.height, cells.width, kind
        )
    best = min(options, key=lambda name: (len(options[name]), PREDICTORS.index(name)))
    return bytes([PREDICTORS.index(best)]) + options[best], np.asarray(recs[best], np.float32)


def decompress_values(
    data: bytes, cells: CellSet, base: np.ndarray | None, coding: ValueCoding
) -> np.ndarray:
    """Inverse of `compress_values` -> decoded values float32 [n]."""
    n = len(cells)
    if not data:
        if n:
            raise DecodeError("values: empty stream for occupied cells")
        return np.zeros(0, np.float32)
    if data[0] >= len(PREDICTORS) or (PREDICTORS[data[0]] == "ctx" and not cells.height):
        raise DecodeError(f"values: unknown predictor {data[0]}")
    predictor = PREDICTORS[data[0]]
    args = (cells.plane, cells.index, cells.width)
    if predictor == "ctx":
        kind = _CTX_KIND[coding.mode]
        r = ctxval.decompress(memoryview(data)[1:], cells.plane, cells.index, cells.height, cells.width, kind)
        predictor = "direct"  # the same integers as the direct predictor
    else:
        r = decompress_ints(memoryview(data)[1:], n, signed=True)
    if coding.mode == "lossless":
        bits = r if predictor == "direct" else _core.runs_int_decode(*args, r)
        if n and (bits.min() < np.iinfo(np.int32).min or bits.max() > np.iinfo(np.int32).max):
            raise DecodeError("values: float32 bit pattern out of range")
        return bits.astype(np.int32).view(np.float32)
    base64 = np.zeros(n) if base is None else np.asarray(base, np.float64)
    if predictor == "direct":
        rec = base64 + coding.step * r.astype(np.float64)
    else:
        rec = _core.runs_dequantize(*args, r, base64, coding.step)
    return rec.astype(np.float32)


def channel_blocks(channels: Sequence[str], blocks: Mapping[str, int]) -> list[int]:
    """Block size per channel index (0: pixel planes only)."""
    return [int(blocks.get(name, 0)) for name in channels]


def expand_blocks(
    cells: CellSet, offsets: np.ndarray, k: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occupied block cells -> (plane, pixel index, cell number) of every pixel they cover.

    offsets [n_planes]: each plane's block offset code. DecodeError if a cell lies outside the image.
    """
    h, w = size
    code = offsets[cells.plane]
    sy, sx = (k - code // k) % k, (k - code % k) % k
    by, bx = np.divmod(cells.index, cells.width)
    y0, x0 = np.maximum(by * k - sy, 0), np.maximum(bx * k - sx, 0)
    y1, x1 = np.minimum((by + 1) * k - sy, h), np.minimum((bx + 1) * k - sx, w)
    hy, wx = y1 - y0, x1 - x0
    if len(cells) and (hy.min() <= 0 or wx.min() <= 0):
        raise DecodeError("occupied block cell outside the image")
    count = hy * wx
    src = np.repeat(np.arange(len(cells)), count)
    local = np.arange(len(src)) - np.repeat(np.cumsum(count) - count, count)
    dy, dx = np.divmod(local, wx[src])
    return cells.plane[src], (y0[src] + dy) * w + x0[src] + dx, src
