"""Occupancy coding: the count + gap coder (sparse.compress_occupancy) vs the context-modelled binary coder
(codec.ctxocc), bytes per jet and speed per channel, on the same jets in one run.

    python benchmarks/bench_ctxocc.py FILE.parquet [--jets 2000] [--chunk 512] [--repeats 3]

FILE is made (a shard of --jets generated jets, needs the generate extra) when it does not exist.
Planes are split as ImageCodec splits them: per chunk, channels whose planes are constant on k x k blocks
(found by sparse.detect_blocks / find_block_offsets) are coded as block grids ("blk"), the rest as
pixels ("px"). Each plane kind of each channel is coded per chunk by both coders; every ctxocc stream is
decoded and compared. Columns:

- count+gap: bytes/jet of the "n" + "g" streams; ctx: ctxocc without a context plane; ctx+others: with a
  context plane from all other channels (near_context of their pixel occupancy, for block grids pooled to
  the grid: 1 where any other channel has a hit in the block), i.e. what a channel coded last could gain;
- encode / decode: best of --repeats, µs per jet (count+gap: from the cell list to streams and back;
  ctxocc: from the bool planes to bytes and back).
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

import numpy as np
from bench_common import best_of, make_file

from e2ecompress.codec import ctxocc, sparse
from e2ecompress.io import open_jets


def pooled_any(occ: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Pixel occupancy [N, H, W] -> block grids [N, Gh, Gw] (uint8): 1 where a pixel of the block is set."""
    mean = sparse.block_mean(occ.astype(np.float32), codes, k)
    return (sparse.to_blocks(mean, codes, k) > 0).astype(np.uint8)


def plane_sets(images: np.ndarray):
    """Yields (channel, kind, planes [n, h, w] bool, context from the other channels [n, h, w] uint8)."""
    occ = images != 0
    C = images.shape[1]
    ks = sparse.detect_blocks(images)
    for c in range(C):
        others = np.zeros_like(occ[:, c])
        for o in range(C):
            if o != c:
                others |= occ[:, o]
        codes = sparse.find_block_offsets(images[:, c], ks[c]) if ks[c] else np.full(len(images), sparse.FULL)
        px = codes == sparse.FULL
        if px.any():
            yield c, "px", np.ascontiguousarray(occ[px, c]), ctxocc.near_context(others[px])
        if (~px).any():
            grids = sparse.to_blocks(images[~px, c], codes[~px], ks[c]) != 0
            yield c, "blk", np.ascontiguousarray(grids), pooled_any(others[~px], codes[~px], ks[c])


def measure(chunks: list[np.ndarray], repeats: int) -> dict:
    rows: dict[tuple[int, str], dict[str, float]] = {}
    for images in chunks:
        for c, kind, planes, others in plane_sets(images):
            r = rows.setdefault((c, kind), dict.fromkeys(
                ["planes", "gap", "ctx", "ctx_others", "gap_enc", "gap_dec", "enc", "dec"], 0.0))  # fmt: skip
            n, h, w = planes.shape
            pid, idx = sparse.occupied_cells(planes.astype(np.float32))
            streams = sparse.compress_occupancy(pid, idx, n)
            data = ctxocc.compress_planes(planes)
            with_ctx = ctxocc.compress_planes(planes, others)
            np.testing.assert_array_equal(ctxocc.decompress_planes(data, n, h, w), planes)
            np.testing.assert_array_equal(ctxocc.decompress_planes(with_ctx, n, h, w, others), planes)
            r["planes"] += n
            r["gap"] += sum(map(len, streams))
            r["ctx"] += len(data)
            r["ctx_others"] += len(with_ctx)
            r["gap_enc"] += best_of(repeats, partial(sparse.compress_occupancy, pid, idx, n))
            r["gap_dec"] += best_of(repeats, partial(sparse.decompress_occupancy, streams, n, h * w))
            r["enc"] += best_of(repeats, partial(ctxocc.compress_planes, planes))
            r["dec"] += best_of(repeats, partial(ctxocc.decompress_planes, data, n, h, w))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="a jet parquet file (made when missing)")
    p.add_argument("--jets", type=int, default=2000, help="jets to use (and to make)")
    p.add_argument("--chunk", type=int, default=512, help="jets per coded chunk (pack's default: 512)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if not args.file.exists():
        print(f"{args.file}: generating {args.jets} jets ...", flush=True)
        make_file(args.file, args.jets)
    chunks, total = [], 0
    with open_jets(args.file) as f:
        names = list(f.channel_names)
        for batch in f.iter_batches(args.chunk):
            images = batch.images[: args.jets - total]
            chunks.append(np.ascontiguousarray(images, np.float32))
            total += len(images)
            if total >= args.jets:
                break
    rows = measure(chunks, args.repeats)
    print(f"{args.file.name}: {total} jets in chunks of {args.chunk}, load {os.getloadavg()[0]:.1f}")
    head = (
        f"{'channel':<10}{'kind':<5}{'planes':>7}{'count+gap':>11}{'ctx':>8}{'ratio':>7}"
        f"{'ctx+others':>12}{'ratio':>7}  {'µs/jet enc / dec: count+gap':>27}{'ctx':>16}"
    )
    print(head)
    print("-" * len(head))
    sums = dict.fromkeys(["gap", "ctx", "ctx_others", "gap_enc", "gap_dec", "enc", "dec"], 0.0)
    for (c, kind), r in sorted(rows.items()):
        for key in sums:
            sums[key] += r[key]
        per = {key: r[key] / total for key in sums}
        us = {key: 1e6 * r[key] / total for key in ("gap_enc", "gap_dec", "enc", "dec")}
        name = names[c] if c < len(names) else str(c)
        print(
            f"{name:<10}{kind:<5}{int(r['planes']):>7}{per['gap']:>11.2f}{per['ctx']:>8.2f}"
            f"{per['ctx'] / per['gap']:>7.3f}{per['ctx_others']:>12.2f}"
            f"{per['ctx_others'] / per['gap']:>7.3f}"
            f"  {us['gap_enc']:>13.1f} / {us['gap_dec']:<11.1f}{us['enc']:>8.1f} / {us['dec']:<6.1f}"
        )
    per = {key: v / total for key, v in sums.items()}
    print("-" * len(head))
    print(
        f"{'total':<22}{per['gap']:>11.2f}{per['ctx']:>8.2f}{per['ctx'] / per['gap']:>7.3f}"
        f"{per['ctx_others']:>12.2f}{per['ctx_others'] / per['gap']:>7.3f}"
        f"  {1e6 * per['gap_enc']:>13.1f} / {1e6 * per['gap_dec']:<11.1f}{1e6 * per['enc']:>8.1f}"
        f" / {1e6 * per['dec']:<6.1f}"
    )


if __name__ == "__main__":
    main()
