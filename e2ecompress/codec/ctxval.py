"""Context-modelled, adaptive binary coding of the values at the occupied cells of sparse images.

The occupied cells (plane, index = y * width + x), sorted by (plane, index), are known to the decoder
before the values (occupancy is coded first). Their integer values are coded one by one with an adaptive
binary range coder (C++, csrc/kernels/ctxval.h documents the model and the bitstream), each value
binarized as zero / sign flags, a unary bit-length prefix, a few mantissa bits through a context tree and
the low bits raw. The probabilities are picked by integer features of the cell:

- the largest bit length (quantized) or float32 exponent (float32bits) of the already coded neighbours in
  the same plane (left, up, up-left, up-right): next to a large deposit a value is a fraction of it;
- the number of occupied cells among all 8 neighbours (known to the decoder from the occupancy): an
  isolated hit is mostly noise just above the zero-suppression threshold;
- a radial bucket of the distance from the plane centre (assumes the jet axis is at the image centre).

Kinds: "quantized" (signed integers, e.g. Q = round(x / step) of bounded-error mode) and "float32bits"
(int32 bit patterns of float32 values as int64, lossless mode). Everything is integer arithmetic: the
bytes depend only on the input, on every machine.
"""

from __future__ import annotations

import numpy as np

from e2ecompress import _core

__all__ = ["KINDS", "compress", "decompress"]

KINDS = ("quantized", "float32bits")


def _cells(plane, index) -> tuple[np.ndarray, np.ndarray]:
    plane = np.ascontiguousarray(plane, np.int64)
    index = np.ascontiguousarray(index, np.int64)
    if plane.ndim != 1 or index.ndim != 1 or plane.shape != index.shape:
        raise ValueError(f"plane and index must be 1-D of one length, got {plane.shape} and {index.shape}")
    return plane, index


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def compress(values, plane, index, height: int, width: int, kind: str) -> bytes:
    """values int64 [n] at the occupied cells (plane, index) [n], sorted by (plane, index = y * width + x),
    of height x width planes -> bytes. kind: "quantized" or "float32bits" (int32 bit patterns).

    ValueError if the cells are not strictly sorted, out of range, or a float32bits value is outside int32.
    """
    plane, index = _cells(plane, index)
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise TypeError(f"values must be integers, got {values.dtype}")
    if values.dtype == np.uint64 and values.size and values.max() > np.iinfo(np.int64).max:
        raise ValueError("values must fit int64")
    values = np.ascontiguousarray(values, np.int64)
    if values.shape != plane.shape:
        raise ValueError(f"values must have shape {plane.shape}, got {values.shape}")
    return _core.ctxval_encode(values, plane, index, int(height), int(width), _kind(kind))


def decompress(data, plane, index, height: int, width: int, kind: str) -> np.ndarray:
    """Inverse of `compress` at the same cells -> int64 [n].

    DecodeError if the stream is corrupt, truncated, of another kind or was coded for other cells;
    ValueError if the cells themselves are invalid (as for `compress`).
    """
    plane, index = _cells(plane, index)
    try:
        view = memoryview(data).cast("B")
    except TypeError as exc:
        raise TypeError(f"data must be a bytes-like object, got {type(data).__name__}") from exc
    if not view.c_contiguous:
        view = memoryview(bytes(view))
    return _core.ctxval_decode(view, plane, index, int(height), int(width), _kind(kind))
