"""Context-modelled, adaptive binary coding of occupancy planes (where a mostly-empty image is non-zero).

A stack of n planes of h x w cells is coded as one stream with an adaptive binary range coder (C++,
csrc/kernels/ctxcode.h documents the model and the bitstream):

- per plane, whether it has any occupied cell; then one flag per 5 x 5 block (blocks clipped at the right
  and bottom edges) whether it has any; then the cells of the occupied blocks only, in raster order of the
  plane. Empty regions cost almost nothing and are skipped quickly.
- every decision is coded with a probability learnt on the fly (starting from 1/2 at each call) for its
  context: the left / up / up-left / up-right neighbours already coded, a radial bucket of the distance
  from the plane centre, whether the block already holds an occupied cell (else how many cells it has
  left), and the optional `context` plane at that cell.

Assumption: the jet axis sits at the centre of the plane, so the distance from the centre is informative.
The model only depends on plane sizes through that distance (fixed bucket edges, in cells), so any plane
size works; the radial buckets simply carry less information for other images.

The context plane (uint8 [n, h, w], values 0..3; larger values count as 3) is whatever the caller knows
at decode time about each cell before this stack is decoded, typically other channels' occupancy:
`near_context` builds 0 = nothing, 1 = something in the 3 x 3 neighbourhood, 2 = something at the cell.
The decoder must be given the same context plane as the encoder (or None for both).

Everything is integer arithmetic, single-threaded per call: the bytes depend only on the input.
"""

from __future__ import annotations

import numpy as np

from e2ecompress import _core
from e2ecompress.errors import DecodeError

__all__ = ["compress_planes", "decompress_planes", "near_context", "uses_context"]


def _planes(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3:
        raise ValueError(f"{name} must be 3-D [n, h, w], got shape {a.shape}")
    if a.dtype != np.bool_ and a.dtype != np.uint8:
        if name == "context":
            raise TypeError(f"context must be a bool or uint8 array, got {a.dtype}")
        a = a != 0
    return np.ascontiguousarray(a)


def _context(context, shape: tuple[int, int, int]) -> np.ndarray | None:
    if context is None:
        return None
    context = _planes(context, "context")
    if context.shape != shape:
        raise ValueError(f"context must have shape {shape}, got {context.shape}")
    return context


def compress_planes(occ: np.ndarray, context: np.ndarray | None = None) -> bytes:
    """occ [n, h, w] (bool or uint8; any other dtype: non-zero = occupied) -> bytes.

    context: uint8 (or bool) [n, h, w] known to the decoder too, or None.
    """
    occ = _planes(occ, "occ")
    return _core.ctx_encode(occ, _context(context, occ.shape))


def decompress_planes(data, n: int, h: int, w: int, context: np.ndarray | None = None) -> np.ndarray:
    """Inverse of `compress_planes` -> bool [n, h, w].

    DecodeError if the stream is corrupt, truncated, or was coded for other sizes or with(out) a context.
    """
    n, h, w = (int(v) for v in (n, h, w))
    if min(n, h, w) < 0:
        raise ValueError(f"n, h, w must be >= 0, got {n}, {h}, {w}")
    try:
        view = memoryview(data).cast("B")
    except TypeError as exc:
        raise TypeError(f"data must be a bytes-like object, got {type(data).__name__}") from exc
    if not view.c_contiguous:
        view = memoryview(bytes(view))
    out = _core.ctx_decode(view, n, h, w, _context(context, (n, h, w)))
    if out.shape != (n, h, w):  # the kernel checks this; a mismatch here would be a bug, never a wrong image
        raise DecodeError(f"occupancy stream decoded to shape {out.shape}, expected {(n, h, w)}")
    return out


def uses_context(data) -> bool:
    """Whether a stream was coded with a context plane (its header's flag bit 0; False for b"" or a
    stream too short to say: decompress_planes then reports it)."""
    view = memoryview(data).cast("B")
    return len(view) >= 2 and bool(view[1] & 1)


def near_context(other: np.ndarray) -> np.ndarray:
    """Occupancy planes [n, h, w] of another channel -> uint8 context [n, h, w]: 2 where it is occupied,
    1 where a cell of its 3 x 3 neighbourhood is, else 0."""
    o = _planes(other, "other").astype(bool)
    n, h, w = o.shape
    pad = np.zeros((n, h + 2, w + 2), bool)
    pad[:, 1:-1, 1:-1] = o
    near = np.zeros_like(o)
    for dy in range(3):
        for dx in range(3):
            near |= pad[:, dy : dy + h, dx : dx + w]
    return (o.astype(np.uint8) + near).astype(np.uint8)
