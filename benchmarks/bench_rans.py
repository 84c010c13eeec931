"""rANS vs zstd level 3 on quantized-latent-like symbols: coded size against entropy, encode/decode speed.

    python benchmarks/bench_rans.py [--rows 65536] [--dims 32] [--prob-bits 14]

Symbols: a discretized Laplace per dimension with scales from 0.3 to 30 (mostly small, like trained latents),
shifted into [0, 256) so zstd sees them as uint8. Both coders get the same symbols; every result is decoded
and compared before it is timed. Times are the best of repeated runs (at least `--min-reps` runs and
`--min-time` seconds per measurement), so background load inflates them less; ratios are measured in one
run. Issue targets: coded size <= 1% above the empirical entropy; rANS decode >= zstd level 3 decode.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import zstandard

from e2ecompress import codec


def best_time(fn, min_reps: int, min_time: float) -> float:
    """Best wall time of fn() over at least min_reps calls and min_time seconds."""
    best, reps, start = float("inf"), 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--dims", type=int, default=32)
    parser.add_argument("--symbols", type=int, default=256, help="alphabet size K (<= 256: uint8 for zstd)")
    parser.add_argument("--prob-bits", type=int, default=14)
    parser.add_argument("--min-reps", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    scales = np.geomspace(0.3, 30.0, args.dims)
    centre = args.symbols // 2
    values = np.round(rng.laplace(0.0, scales, (args.rows, args.dims))) + centre
    symbols = np.clip(values, 0, args.symbols - 1).astype(np.uint8 if args.symbols <= 256 else np.uint16)
    n = symbols.size
    raw = symbols.tobytes()

    counts = codec.histogram(symbols, args.symbols)
    p = counts / counts.sum(axis=1, keepdims=True)
    entropy = float(-(counts * np.log2(np.where(p > 0, p, 1.0))).sum()) / 8  # bytes, per-dim empirical
    table = codec.RansTable.from_counts(counts, args.prob_bits)
    table_cost = codec.cost_bits(symbols, table) / 8

    # rANS (auto state count: 64 interleaved states at this size)
    stream = codec.compress_symbols(symbols, table)
    out = np.empty(symbols.shape, np.int32)
    codec.decompress_symbols(stream, table, args.rows, out=out)
    assert np.array_equal(out, symbols), "rANS round trip failed"
    t_enc = best_time(lambda: codec.compress_symbols(symbols, table), args.min_reps, args.min_time)
    t_dec = best_time(
        lambda: codec.decompress_symbols(stream, table, args.rows, out=out), args.min_reps, args.min_time
    )
    simd_on = codec.simd()
    codec.simd(False)
    t_dec_scalar = best_time(
        lambda: codec.decompress_symbols(stream, table, args.rows, out=out), args.min_reps, args.min_time
    )
    codec.simd(simd_on)
    assert np.array_equal(out, symbols)

    # zstd level 3 on the same symbols as raw bytes
    zc, zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    frame = zc.compress(raw)
    assert zd.decompress(frame) == raw, "zstd round trip failed"
    z_enc = best_time(lambda: zc.compress(raw), args.min_reps, args.min_time)
    z_dec = best_time(lambda: zd.decompress(frame), args.min_reps, args.min_time)

    # the int32-values wrapper (escape coding; numpy glue included)
    escape = codec.EscapeTable.fit(values.astype(np.int32), args.symbols)
    packed = codec.compress(values.astype(np.int32), escape)
    assert np.array_equal(codec.decompress(packed, escape, args.rows), values)
    w_dec = best_time(lambda: codec.decompress(packed, escape, args.rows), args.min_reps, args.min_time)

    mb = len(raw) / 1e6
    print(f"symbols: {args.rows} x {args.dims} = {n} (K={args.symbols}, {symbols.dtype}, {mb:.2f} MB raw)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (a training job shares it)")
    print(f"AVX2 decoder: {'on' if simd_on else 'unavailable'}; prob_bits {args.prob_bits}")
    print()
    print(f"empirical entropy      {entropy:12,.0f} B  ({8 * entropy / n:.4f} bits/symbol)")
    print(
        f"table cost             {table_cost:12,.0f} B  (+{100 * (table_cost / entropy - 1):.3f}% int freqs)"
    )
    print(
        f"rANS                   {len(stream):12,d} B  (+{100 * (len(stream) / entropy - 1):.3f}% vs entropy)"
    )
    print(
        f"zstd -3                {len(frame):12,d} B  (+{100 * (len(frame) / entropy - 1):.3f}% vs entropy)"
    )
    print(f"escape wrapper         {len(packed):12,d} B")
    print()
    print(f"{'':22} {'encode':>10} {'decode':>10}   (MB/s of raw symbols; Msymbols/s)")
    rows = [
        ("rANS", t_enc, t_dec),
        ("rANS scalar decode", None, t_dec_scalar),
        ("zstd -3", z_enc, z_dec),
        ("escape wrapper", None, w_dec),
    ]
    for name, te, td in rows:
        enc = f"{mb / te:10.0f}" if te else f"{'':>10}"
        print(f"{name:22} {enc} {mb / td:10.0f}   ({n / td / 1e6:.0f} Msym/s decode)")
    print()
    print(f"size rANS / entropy         {len(stream) / entropy:.4f}   (target <= 1.01)")
    print(f"size rANS / table cost      {len(stream) / table_cost:.4f}   (coder overhead incl. header)")
    print(f"size rANS / zstd -3         {len(stream) / len(frame):.4f}")
    print(f"decode speed rANS / zstd    {z_dec / t_dec:.2f}     (target >= 1)")
    print(f"encode speed rANS / zstd    {z_enc / t_enc:.2f}")


if __name__ == "__main__":
    main()
