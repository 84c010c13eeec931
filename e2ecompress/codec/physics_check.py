"""Checks that a chunk decoded at a physics level keeps what the level promises (`physics_lossy`), from the
input and the decoded images alone, cell by cell of each channel's plane kinds:

- block planes decode block-constant with the same offsets;
- inside the cone the non-zero cells are the same (zeros stay zeros, non-zero stays non-zero) and every
  value is within the level's relative bound;
- per plane whose values inside the cone share one sign, the sum over its cells there (cell values times
  the pixels they cover) is within 2^-(sum_bits + 1) relative, plus float32 rounding;
- outside the cone a plane keeps its number of non-zero cells, and its values sorted are within the coarse
  grid's bound.

`check` raises E2EError naming the first broken promise and the jets, and returns the largest relative and
absolute errors inside the cone.
"""

from __future__ import annotations

import numpy as np

from e2ecompress.codec import cone, sparse
from e2ecompress.codec.physics_values import Level
from e2ecompress.errors import E2EError


def _sorted_by_plane(pid: np.ndarray, v: np.ndarray) -> np.ndarray:
    return v[np.lexsort((v, pid))]


def _jets(sel: np.ndarray, planes: np.ndarray) -> str:
    jets = np.flatnonzero(sel)[np.unique(planes)]
    return f"jet {jets[0]}" + (f" and {len(jets) - 1} more" if len(jets) > 1 else "")


def check(images: np.ndarray, decoded: np.ndarray, level: Level) -> tuple[float, float]:
    """-> (max relative error, max |error|) inside the cone; E2EError if a promise is broken."""
    x = np.ascontiguousarray(images, np.float32)
    d = np.ascontiguousarray(decoded, np.float32)
    if x.shape != d.shape:
        raise E2EError(f"decoded shape {d.shape} differs from {x.shape}")
    B, _, H, W = x.shape
    ks = sparse.detect_blocks(x) if B else []
    max_rel = max_abs = 0.0
    for c, k in enumerate(ks):
        offsets = sparse.find_block_offsets(x[:, c], k) if k else np.full(B, sparse.FULL, np.int64)
        full = offsets == sparse.FULL
        if k and (sparse.find_block_offsets(d[~full, c], k) != offsets[~full]).any():
            raise E2EError(f"channel {c}: decoded towers are not constant on the input's blocks")
        for sel, kk in [(full, 0)] + ([(~full, k)] if k else []):
            if not sel.any():
                continue
            var = offsets[sel] if kk else np.zeros(int(sel.sum()), np.int64)
            xp, dp = x[sel, c], d[sel, c]
            if kk:
                xp, dp = sparse.to_blocks(xp, var, kk), sparse.to_blocks(dp, var, kk)
            geo = cone.geometry(H, W, kk, level.radius, level.rings)
            rel, err = _check_planes(xp, dp, var, geo, level, sel, c)
            max_rel, max_abs = max(max_rel, rel), max(max_abs, err)
    return max_rel, max_abs


def _check_planes(xp, dp, var, geo: cone.ConeGeometry, level: Level, sel, c: int) -> tuple[float, float]:
    n = len(xp)
    px, ix = sparse.occupied_cells(xp)
    pd, id_ = sparse.occupied_cells(dp)
    xv = xp.reshape(n, -1)[px, ix].astype(np.float64)
    dv = dp.reshape(n, -1)[pd, id_].astype(np.float64)
    inx, ind = geo.local[var[px], ix] >= 0, geo.local[var[pd], id_] >= 0
    if not (np.array_equal(px[inx], pd[ind]) and np.array_equal(ix[inx], id_[ind])):
        bad = np.setxor1d(px[inx] * geo.local.shape[1] + ix[inx], pd[ind] * geo.local.shape[1] + id_[ind])
        where = _jets(sel, bad // geo.local.shape[1])
        raise E2EError(f"channel {c}: non-zero pixels inside the cone differ ({where})")
    p_in, x_in, d_in = px[inx], xv[inx], dv[ind]
    err = np.abs(d_in - x_in)
    rel = err / np.abs(x_in) if len(x_in) else err
    if len(rel) and not rel.max() <= level.max_rel:
        raise E2EError(
            f"channel {c}: relative error {rel.max():.3g} inside the cone above the level's bound "
            f"{level.max_rel:.3g} ({_jets(sel, p_in[rel > level.max_rel])}; values beyond the float32 normal "
            "range: use --max-error or --lossless)"
        )
    w = geo.weight[var[p_in], ix[inx]].astype(np.float64)
    true = np.bincount(p_in, x_in * w, minlength=n)
    got = np.bincount(p_in, d_in * w, minlength=n)
    mag = np.bincount(p_in, np.abs(x_in) * w, minlength=n)
    one_sign = (np.abs(true) == mag) & (mag > 0)
    tol = 2.0 ** -(level.sum_bits + 1) * (1.0 + level.bound) + 2.0**-20
    off = one_sign & ~(np.abs(got - true) <= tol * mag)
    if off.any():
        raise E2EError(
            f"channel {c}: cone sum off by more than its quantization ({_jets(sel, np.flatnonzero(off))})"
        )
    po, pdo = px[~inx], pd[~ind]
    counts = np.bincount(po, minlength=n)
    if not np.array_equal(counts, np.bincount(pdo, minlength=n)):
        bad = np.flatnonzero(counts != np.bincount(pdo, minlength=n))
        raise E2EError(f"channel {c}: count of non-zero pixels outside the cone differs ({_jets(sel, bad)})")
    xo, do = _sorted_by_plane(po, xv[~inx]), _sorted_by_plane(pdo, dv[~ind])
    if len(xo) and not (np.abs(do - xo) <= level.out_rel * np.abs(xo)).all():
        raise E2EError(f"channel {c}: values outside the cone beyond the coarse bound")
    return float(rel.max(initial=0.0)), float(err.max(initial=0.0))
