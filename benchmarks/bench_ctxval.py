"""Value coding: the current coder (sparse.compress_values, best of the "direct" / "runs" predictors) vs the
context-modelled binary coder (codec.ctxval), bytes per jet per channel, on the same cells in one run.

    python benchmarks/bench_ctxval.py FILE.parquet [FILE ...] [--jets 2000] [--chunk 512] [--repeats 3]

A FILE that does not exist is made (a shard of --jets generated jets, needs the generate extra). Planes
are split as ImageCodec splits them: per chunk, channels whose planes are constant on k x k blocks
(sparse.detect_blocks / find_block_offsets) are coded as block grids ("blk"), the rest as pixels ("px").
Modes: bounded --max-error 0.01 (Q = round(x / step), step = 2 * 0.01 * (1 - 2**-8); ctxval kind
"quantized") and lossless (float32 bit patterns; kind "float32bits"). Every ctxval stream is decoded and
compared. Columns: bytes/jet of the current coder and of ctxval, their change, and ctxval's encode /
decode time (best of --repeats) in µs per jet for the channel.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np
from bench_common import best_of, make_file

from e2ecompress.codec import ctxval, sparse
from e2ecompress.io import open_jets

MAX_ERROR = 0.01
STEP = 2 * MAX_ERROR * (1 - 2**-8)


def plane_kinds(images: np.ndarray, c: int):
    """(kind, planes) of channel c of a chunk, split as ImageCodec splits them."""
    (k,) = sparse.detect_blocks(images[:, c : c + 1])
    if not k:
        yield "px", images[:, c]
        return
    codes = sparse.find_block_offsets(images[:, c], k)
    full = codes == sparse.FULL
    if full.any():
        yield "px", images[full, c]
    if (~full).any():
        yield "blk", sparse.to_blocks(images[~full, c], codes[~full], k)


def measure(images: np.ndarray, names, totals: dict, repeats: int) -> None:
    for c, name in enumerate(names):
        for _kind, planes in plane_kinds(images, c):
            n, h, w = planes.shape
            plane, index = sparse.occupied_cells(planes)
            x = planes.reshape(n, h * w)[plane, index]
            cells = sparse.CellSet(plane, index, w)
            for mode in ("bounded", "lossless"):
                if mode == "bounded":
                    coding = sparse.ValueCoding("bounded", STEP)
                    values = np.rint(x.astype(np.float64) / STEP).astype(np.int64)
                    kind = "quantized"
                else:
                    coding = sparse.ValueCoding("lossless")
                    values = x.view(np.int32).astype(np.int64)
                    kind = "float32bits"
                old, _ = sparse.compress_values(cells, x, None, coding)
                new = ctxval.compress(values, plane, index, h, w, kind)
                back = ctxval.decompress(new, plane, index, h, w, kind)
                if not np.array_equal(back, values):
                    raise SystemExit(f"round trip failed: {name} {mode}")
                t_enc = best_of(repeats, partial(ctxval.compress, values, plane, index, h, w, kind))
                t_dec = best_of(repeats, partial(ctxval.decompress, new, plane, index, h, w, kind))
                row = totals.setdefault((mode, name), [0, 0, 0.0, 0.0, 0])
                row[0] += len(old)
                row[1] += len(new)
                row[2] += t_enc
                row[3] += t_dec
                row[4] += len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--jets", type=int, default=2000, help="jets per generated file (default 2000)")
    ap.add_argument("--chunk", type=int, default=512, help="jets per chunk (default 512)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    totals: dict = {}
    n_jets = 0
    names: tuple[str, ...] = ()
    for path in args.files:
        if not path.exists():
            make_file(path, args.jets)
        with open_jets(path) as f:
            names = f.channel_names
            for batch in f.iter_batches(args.chunk):
                images = np.ascontiguousarray(batch.images, np.float32)
                measure(images, names, totals, args.repeats)
                n_jets += len(images)
    print(f"{n_jets} jets, chunks of {args.chunk}; bytes/jet of the value streams")
    print(f"{'mode':9s} {'channel':8s} {'cells/jet':>9s} {'current':>8s} {'ctxval':>8s} {'change':>7s} "
          f"{'enc µs/jet':>10s} {'dec µs/jet':>10s}")  # fmt: skip
    for mode in ("bounded", "lossless"):
        sums = [0.0] * 5
        for name in names:
            old, new, te, td, cnt = totals[(mode, name)]
            for i, v in enumerate((old, new, te, td, cnt)):
                sums[i] += v
            print(
                f"{mode:9s} {name:8s} {cnt / n_jets:9.1f} {old / n_jets:8.2f} {new / n_jets:8.2f} "
                f"{100 * (new / old - 1):+6.1f}% {1e6 * te / n_jets:10.2f} {1e6 * td / n_jets:10.2f}"
            )
        old, new, te, td, cnt = sums
        print(
            f"{mode:9s} {'total':8s} {cnt / n_jets:9.1f} {old / n_jets:8.2f} {new / n_jets:8.2f} "
            f"{100 * (new / old - 1):+6.1f}% {1e6 * te / n_jets:10.2f} {1e6 * td / n_jets:10.2f}"
        )


if __name__ == "__main__":
    main()
