"""The jet cone of the physics levels (`physics_lossy`): which cells of a plane lie inside it, and the
deterministic regeneration of positions outside it.

Cone. A pixel (y, x) of an H x W image is inside when (y - cy)^2 + (x - cx)^2 < R^2 with the axis at the
window centre cy = (H - 1) / 2, cx = (W - 1) / 2 (the images are assumed centred on the jet axis, as the
generated and the public CMS images are). A cell of a k x k block plane is inside when any pixel it
covers is. Cells inside are enumerated in raster order (the "local index" the occupancy is coded in).

Regeneration. Outside the cone only the number of non-zero cells of a plane is kept; the decoder places
them at positions drawn from a splitmix64 hash of (seed, plane, rank) over the plane's outside cells,
distinct by linear probing (or, for a crowded plane, by the order of hashed keys of all its outside
cells). Integer arithmetic only, so every machine draws the same positions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_PROBE_ROUNDS = 32
_CROWDED = 8  # a plane whose count exceeds 1 / _CROWDED of its outside cells is drawn by sorting


def splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer of uint64 values (wrapping arithmetic)."""
    z = np.array(x, np.uint64, ndmin=1) + _GOLDEN  # arrays: numpy wraps them silently
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class ConeGeometry:
    """Cells of one plane kind split by the cone, for each variant (block offset; one for pixel planes).

    local [V, G]: local index of a cell inside the cone, else -1; inside [V, Gi]: grid index of each local
    index (padded with 0); n_in [V]; ring [V, G]: ring of a cell outside the cone (covering at least one
    pixel), else -1; outside [V, K, Go]: grid indices of the cells of each ring, padded; n_out [V, K];
    out_local [V, G]: index of a cell among all cells outside (raster order), else -1; out_cells [V, Ga]:
    the grid index of each (padded); weight [V, G]: pixels each cell covers; width: grid width.
    """

    local: np.ndarray
    inside: np.ndarray
    n_in: np.ndarray
    ring: np.ndarray
    outside: np.ndarray
    n_out: np.ndarray
    out_local: np.ndarray
    out_cells: np.ndarray
    weight: np.ndarray
    width: int

    @property
    def height(self) -> int:
        """Grid height (cells per column)."""
        return self.local.shape[1] // self.width


def _centred(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) - (n - 1) / 2.0


def pixel_cone(h: int, w: int, radius: float) -> np.ndarray:
    """bool [H, W]: the pixels inside the cone."""
    return _centred(h)[:, None] ** 2 + _centred(w)[None, :] ** 2 < float(radius) ** 2


def _block_of(size: int, k: int, offset: int) -> np.ndarray:
    """Block index of each pixel along one axis for a grid offset (as `sparse.to_blocks` lays them)."""
    return (np.arange(size) + (k - offset) % k) // k


def _rings(dist2: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Ring number of squared distances: the count of ring edges at or below them."""
    return (dist2[..., None] >= np.square(np.asarray(edges, np.float64))).sum(-1)


@functools.lru_cache(maxsize=64)
def geometry(h: int, w: int, k: int, radius: float, edges: tuple[float, ...] = ()) -> ConeGeometry:
    """The cone geometry of pixel planes (k = 0) or of k x k block planes (k * k variants); the cells
    outside are split into len(edges) + 1 rings by the distance of their centre (pixels) from the axis."""
    cone = pixel_cone(h, w, radius)
    d2 = _centred(h)[:, None] ** 2 + _centred(w)[None, :] ** 2
    if k == 0:
        inside_m, weight, width = cone.reshape(1, -1), np.ones((1, h * w), np.int64), w
        ring = _rings(d2, edges).reshape(1, -1)
    else:
        gh, gw = -(-h // k) + 1, -(-w // k) + 1
        width = gw
        inside_m = np.zeros((k * k, gh * gw), bool)
        weight = np.zeros((k * k, gh * gw), np.int64)
        ring = np.zeros((k * k, gh * gw), np.int64)
        for code in range(k * k):
            at = (_block_of(h, k, code // k)[:, None], _block_of(w, k, code % k)[None, :])
            hit, count = np.zeros((gh, gw), bool), np.zeros((gh, gw), np.int64)
            sy, sx = np.zeros((gh, gw)), np.zeros((gh, gw))
            np.logical_or.at(hit, at, cone)
            np.add.at(count, at, 1)
            np.add.at(sy, at, np.broadcast_to(_centred(h)[:, None], (h, w)))
            np.add.at(sx, at, np.broadcast_to(_centred(w)[None, :], (h, w)))
            n = np.maximum(count, 1)
            inside_m[code], weight[code] = hit.ravel(), count.ravel()
            ring[code] = _rings(((sy / n) ** 2 + (sx / n) ** 2).ravel(), edges)
    n_var, n_rings = len(inside_m), len(edges) + 1
    ring = np.where(~inside_m & (weight > 0), ring, -1)
    n_in = inside_m.sum(1)
    n_out = np.stack([(ring == j).sum(1) for j in range(n_rings)], 1)
    local = np.full(inside_m.shape, -1, np.int64)
    out_local = np.full(inside_m.shape, -1, np.int64)
    out_cells = np.zeros((n_var, max(int(n_out.sum(1).max()), 1)), np.int64)
    inside = np.zeros((n_var, max(int(n_in.max()), 1)), np.int64)
    outside = np.zeros((n_var, n_rings, max(int(n_out.max()), 1)), np.int64)
    for v in range(n_var):
        cells = np.flatnonzero(inside_m[v])
        local[v, cells] = np.arange(len(cells))
        inside[v, : len(cells)] = cells
        cells = np.flatnonzero(ring[v] >= 0)
        out_local[v, cells] = np.arange(len(cells))
        out_cells[v, : len(cells)] = cells
        for j in range(n_rings):
            out = np.flatnonzero(ring[v] == j)
            outside[v, j, : len(out)] = out
    for a in (local, inside, n_in, ring, outside, n_out, out_local, out_cells, weight):
        a.setflags(write=False)
    return ConeGeometry(local, inside, n_in, ring, outside, n_out, out_local, out_cells, weight, width)


def _ranks(plane: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal plane ids (plane sorted)."""
    n = len(plane)
    starts = np.flatnonzero(np.r_[True, plane[1:] != plane[:-1]]) if n else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, counts)


def regenerate(counts: np.ndarray, n_cells: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pseudo-random cells: counts [P] per plane among n_cells [P] cells (counts <= n_cells).

    Returns (plane id, cell number in [0, n_cells)) of every drawn cell, plane by plane in draw order.
    """
    counts = np.asarray(counts, np.int64)
    n_cells = np.asarray(n_cells, np.int64)
    plane = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    rank = _ranks(plane)
    seed64 = np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64)
    base = splitmix(seed64 ^ plane.astype(np.uint64) * _GOLDEN)
    h = splitmix(base + rank.astype(np.uint64))
    size = n_cells[plane]
    pos = (h % np.maximum(size, 1).astype(np.uint64)).astype(np.int64)
    crowded = counts * _CROWDED > n_cells
    sparse_pts = ~crowded[plane]
    span = int(n_cells.max(initial=0)) + 1
    for _ in range(_PROBE_ROUNDS):  # linear probing: a later draw on a taken cell moves on by one
        idx = np.flatnonzero(sparse_pts)
        key = plane[idx] * span + pos[idx]
        order = np.lexsort((rank[idx], key))
        dup = np.r_[False, key[order][1:] == key[order][:-1]]
        if not dup.any():
            break
        bump = idx[order[dup]]
        pos[bump] = (pos[bump] + 1) % size[bump]
    else:
        idx = np.flatnonzero(sparse_pts)
        key = plane[idx] * span + pos[idx]
        order = np.lexsort((rank[idx], key))
        dup = np.r_[False, key[order][1:] == key[order][:-1]]
        crowded[np.unique(plane[idx[order[dup]]])] = True  # still colliding: draw these by sorting
    for p in np.flatnonzero(crowded & (counts > 0)):
        start = seed64 ^ np.array([p], np.uint64) * _M1
        keys = splitmix(start + np.arange(n_cells[p], dtype=np.uint64))
        pick = np.argsort(keys, kind="stable")[: counts[p]]
        pos[plane == p] = pick
    return plane, pos
