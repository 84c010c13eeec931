"""Operating points: one codec at one setting, as an `encode(images) -> bytes`, `decode(bytes, n) -> images`
pair over a chunk of jets, plus the third-party baselines the benchmark runs.

Every point sees the same chunks (256 jets of [C, H, W] float32) and must return float32 [n, C, H, W];
everything it needs to decode (dtype codes, lengths, steps) is inside its bytes, so bytes/jet is honest.
Threaded libraries get the same thread count (`threads`); SZ3 and ZFP run single-threaded (pysz's
OpenMP switch makes no difference with the wheel, zfpy has no thread option).
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import blosc2
import numpy as np
import pysz
import zfpy
import zstandard

from e2ecompress.io import Batch, open_jets, write_jets

Shape = tuple[int, int, int]  # (C, H, W) of one jet


@dataclass(frozen=True)
class OperatingPoint:
    """One codec at one setting.

    encode: images [n, C, H, W] float32 -> bytes (self-contained);  decode: (bytes, n) -> images.
    family groups points into one curve of the plots; lossless points must decode bit-exactly and
    max_error is the absolute error bound a lossy point promises (checked on every pixel); components,
    when given, splits a blob into its named streams for the size budget.
    """

    name: str
    family: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes, int], np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)
    lossless: bool = False
    max_error: float | None = None
    components: Callable[[bytes], dict[str, int]] | None = None  # stream name -> bytes of one blob


def _images(buf, n: int, shape: Shape) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.float32).reshape(n, *shape)


# --- lossless, dense -------------------------------------------------------------------------------
def raw_point(shape: Shape) -> OperatingPoint:
    """The float32 array as it is: the size every ratio is measured against."""
    return OperatingPoint(
        "raw float32", "raw", lambda x: x.tobytes(), lambda b, n: _images(b, n, shape).copy(), lossless=True
    )


def zstd_point(shape: Shape, level: int, threads: int) -> OperatingPoint:
    cctx = zstandard.ZstdCompressor(level=level, threads=threads)
    dctx = zstandard.ZstdDecompressor()
    return OperatingPoint(
        f"zstd-{level}",
        "zstd",
        lambda x: cctx.compress(x.tobytes()),
        lambda b, n: _images(dctx.decompress(b), n, shape),
        {"level": level, "threads": threads},
        lossless=True,
    )


def blosc2_point(shape: Shape, clevel: int, threads: int) -> OperatingPoint:
    cparams = blosc2.CParams(
        codec=blosc2.Codec.ZSTD, clevel=clevel, typesize=4, nthreads=threads, filters=[blosc2.Filter.SHUFFLE]
    )
    dparams = blosc2.DParams(nthreads=threads)
    return OperatingPoint(
        f"blosc2 zstd-{clevel}+shuffle",
        "blosc2",
        lambda x: blosc2.compress2(x, cparams=cparams),
        lambda b, n: _images(blosc2.decompress2(b, dparams=dparams), n, shape),
        {"codec": "zstd", "clevel": clevel, "filters": ["shuffle"], "typesize": 4, "threads": threads},
        lossless=True,
    )


def parquet_point(shape: Shape, channels: Sequence[str]) -> OperatingPoint:
    """The chunk written by e2ecompress.io.write_jets (X_jets only, zstd, one row group) and read back.

    Both directions go through a temporary file (open_jets and write_jets take paths), so the times
    include a write and a read of the page cache.
    """

    def encode(x: np.ndarray) -> bytes:
        with tempfile.TemporaryDirectory(prefix="bench-pq-") as tmp:
            path = os.path.join(tmp, "chunk.parquet")
            write_jets(path, [Batch(x)], channels)
            with open(path, "rb") as f:
                return f.read()

    def decode(b: bytes, n: int) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="bench-pq-") as tmp:
            path = os.path.join(tmp, "chunk.parquet")
            with open(path, "wb") as f:
                f.write(b)
            with open_jets(path) as jf:
                out = jf.read().images
        if out.shape != (n, *shape):
            raise ValueError(f"parquet chunk decoded to {out.shape}, expected {(n, *shape)}")
        return out

    return OperatingPoint(
        "parquet+zstd", "parquet", encode, decode, {"writer": "e2ecompress.io.write_jets"}, lossless=True
    )


# --- the sparse baseline ---------------------------------------------------------------------------
_INT_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64)
_SPARSE_HEAD = struct.Struct("<QB")  # number of stored values, dtype code (255: float32 values)


def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest integer dtype (unsigned preferred at equal size) that holds every value in [lo, hi]."""
    for t in _INT_TYPES:
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return np.dtype(t)
    raise ValueError(f"values in [{lo}, {hi}] do not fit int64")


def sparse_point(shape: Shape, eps: float | None, level: int) -> OperatingPoint:
    """Bitmask of the stored pixels (np.packbits) + their values, in one zstd frame.

    eps None: lossless, the non-zero pixels as float32. Otherwise q = round(x / (2 eps)) in the smallest
    integer dtype that fits, decoded as q * 2 eps; pixels whose q is 0 are left out of the mask (they
    decode to exact zero, within the bound), so the mask marks the non-zero *quantized* pixels.
    """
    cctx = zstandard.ZstdCompressor(level=level)
    dctx = zstandard.ZstdDecompressor()
    step = None if eps is None else 2.0 * eps

    def encode(x: np.ndarray) -> bytes:
        if step is None:
            mask = x != 0
            values, code = x[mask], 255
        else:
            q = np.rint(x.astype(np.float64) / step)
            mask = q != 0
            kept = q[mask]
            lo, hi = (int(kept.min()), int(kept.max())) if kept.size else (0, 0)
            dtype = smallest_int_dtype(lo, hi)
            values, code = kept.astype(dtype), _INT_TYPES.index(dtype.type)
        body = np.packbits(mask.reshape(-1)).tobytes() + values.tobytes()
        return _SPARSE_HEAD.pack(values.size, code) + cctx.compress(body)

    def decode(b: bytes, n: int) -> np.ndarray:
        count, code = _SPARSE_HEAD.unpack_from(b)
        body = dctx.decompress(b[_SPARSE_HEAD.size :])
        size = n * int(np.prod(shape))
        n_mask = (size + 7) // 8
        mask = np.unpackbits(np.frombuffer(body, np.uint8, n_mask), count=size).astype(bool)
        out = np.zeros(size, np.float32)
        if code == 255:
            out[mask] = np.frombuffer(body, np.float32, count, offset=n_mask)
        else:
            q = np.frombuffer(body, _INT_TYPES[code], count, offset=n_mask)
            out[mask] = (q * step).astype(np.float32)
        return out.reshape(n, *shape)

    if eps is None:
        return OperatingPoint(
            f"sparse lossless zstd-{level}",
            "sparse lossless",
            encode,
            decode,
            {"level": level},
            lossless=True,
        )
    return OperatingPoint(
        f"sparse-q zstd-{level}",
        "sparse-q",
        encode,
        decode,
        {"eps": eps, "step": step, "level": level},
        max_error=eps,
    )


# --- error-bounded floating-point compressors ------------------------------------------------------
def sz3_point(shape: Shape, eps: float) -> OperatingPoint:
    """SZ3 (pysz) in absolute-error mode on the chunk as a 3-D array [n*C, H, W].

    3-D beats 4-D [n, C, H, W] by ~15-20% here: SZ3 does not predict across the channel axis.
    """
    c, h, w = shape

    def encode(x: np.ndarray) -> bytes:
        arr = x.reshape(-1, h, w)
        cfg = pysz.szConfig(arr.shape)
        cfg.errorBoundMode = pysz.szErrorBoundMode.ABS
        cfg.absErrorBound = eps
        cfg.openmp = False
        out, _ratio = pysz.sz.compress(arr, cfg)
        return out.tobytes()

    def decode(b: bytes, n: int) -> np.ndarray:
        out, _cfg = pysz.sz.decompress(np.frombuffer(b, np.uint8), np.float32, (n * c, h, w))
        return np.ascontiguousarray(out, dtype=np.float32).reshape(n, c, h, w)

    return OperatingPoint("SZ3", "SZ3", encode, decode, {"eps": eps, "mode": "ABS", "dims": 3}, max_error=eps)


def zfp_point(shape: Shape, eps: float) -> OperatingPoint:
    """ZFP (zfpy) fixed-accuracy mode, tolerance eps, on the chunk as a 3-D array [n*C, H, W].

    ZFP rounds the tolerance down to a power of two (0.005 -> 2^-8), so its errors sit well below eps;
    4-D arrays (4^4 blocks straddling jets) came out 3-4x larger than 3-D.
    """
    c, h, w = shape

    def encode(x: np.ndarray) -> bytes:
        return zfpy.compress_numpy(x.reshape(-1, h, w), tolerance=eps, write_header=True)

    def decode(b: bytes, n: int) -> np.ndarray:
        return np.ascontiguousarray(zfpy.decompress_numpy(b), dtype=np.float32).reshape(n, c, h, w)

    return OperatingPoint(
        "ZFP", "ZFP", encode, decode, {"eps": eps, "mode": "fixed-accuracy", "dims": 3}, max_error=eps
    )


def baseline_points(
    shape: Shape, channels: Sequence[str], eps_values: Sequence[float], threads: int
) -> list[OperatingPoint]:
    """Every third-party baseline: lossless first, then the error-bounded ones for each eps."""
    points = [
        raw_point(shape),
        zstd_point(shape, 3, threads),
        zstd_point(shape, 19, threads),
        blosc2_point(shape, 5, threads),
        parquet_point(shape, channels),
        sparse_point(shape, None, 3),
        sparse_point(shape, None, 19),
    ]
    for eps in eps_values:
        points += [sparse_point(shape, eps, 3), sparse_point(shape, eps, 19)]
        points += [sz3_point(shape, eps), zfp_point(shape, eps)]
    return points
