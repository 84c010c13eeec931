"""Side-table codings of .e2ez chunks: bytes/jet and encode/decode µs/jet, old Arrow IPC vs column coding.

    python benchmarks/bench_sidecols.py [SHARD.parquet] [--chunk 512] [--levels auto,1,3,6,9,19]

SHARD is a jet file (parquet or HDF5) whose non-image columns are the side tables; without one, a shard of
2,048 qg3 jets is generated into a temporary directory (about half a minute). Tables:

- generated: every non-image column of the shard (y, pt, m0, eta, phi, parton_id, ..., jet_uid),
- public-style: pt, m0, y as float64 (like the public quark/gluon files),
- public-style f32: the same with pt and m0 rounded to float32 first (values that came from float32).

Codings, each measured in this run on the same chunks of `--chunk` rows:

- ipc: format 1 (Arrow IPC stream, zstd buffers; `container.encode_table`),
- columns Ln: format 2 column coding at zstd level n, or the writer's choice (Lauto: 19 for small frames,
  else 3) (`container.encode_side_table`: encode, then decode and compare, as the writer does; the
  decode column is `container.decode_side_table`),
- parquet: an in-memory parquet file (byte-stream split floats, delta-binary-packed ints, zstd 9), for
  reference; `exact` says whether it gave back the same schema (with metadata) and values.

Every coding's output is decoded and compared with the input before it is timed. Times are the best pass
over all chunks out of `--repeat` passes (at least 0.2 s of passes), in µs per jet.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from e2ecompress.format import container, sidecols
from e2ecompress.io import open_jets


def best_pass(fn, tables: list[pa.Table], repeat: int) -> float:
    """Best wall time in seconds of calling fn on every table, over `repeat` passes (and >= 0.2 s)."""
    best, passes, start = float("inf"), 0, time.perf_counter()
    while passes < repeat or time.perf_counter() - start < 0.2:
        t0 = time.perf_counter()
        for table in tables:
            fn(table)
        best = min(best, time.perf_counter() - t0)
        passes += 1
    return best


def generate(directory: str) -> str:
    cmd = [sys.executable, "-m", "e2ecompress", "make-dataset", directory, "--layout", "qg3", "--quiet"]
    cmd += ["--sets", "labelled", "--jets-per-shard", "2048", "--shards", "1,0,0", "--workers", "1"]
    print("generating 2,048 jets:", " ".join(cmd[2:]), file=sys.stderr)
    subprocess.run(cmd, check=True)
    return os.path.join(directory, "labelled", "train", "shard-0000.parquet")


def load_chunks(path: str, chunk: int) -> list[pa.Table]:
    with open_jets(path) as f:
        return [batch.table for batch in f.iter_batches(chunk)]


def public_style(tables: list[pa.Table], f32: bool) -> list[pa.Table]:
    out = []
    for t in tables:
        cols = {}
        for name in ("pt", "m0", "y"):
            values = t.column(name).to_numpy().astype(np.float64)
            if f32 and name != "y":
                values = values.astype(np.float32).astype(np.float64)
            cols[name] = values
        out.append(pa.table(cols))
    return out


def parquet_encode(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    ints = {f.name: "DELTA_BINARY_PACKED" for f in table.schema if pa.types.is_integer(f.type)}
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=9,
        use_dictionary=False,
        use_byte_stream_split=floats or False,
        column_encoding=ints or None,
        write_statistics=False,
    )
    return sink.getvalue()


def parquet_decode(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


Row = tuple[str, float, float, float, str]


def measure(tables: list[pa.Table], levels: list[int | None], repeat: int) -> list[Row]:
    """(coding, bytes/jet, encode µs/jet, decode µs/jet, exact) per coding."""
    n = sum(t.num_rows for t in tables)
    rows = []

    def row(name, encode, decode, exact_fn):
        blobs = [encode(t) for t in tables]
        exact = all(exact_fn(t, decode(b, t)) for t, b in zip(tables, blobs, strict=True))
        size = sum(len(b) for b in blobs) / n
        enc = best_pass(encode, tables, repeat) / n * 1e6
        pairs = dict(zip(map(id, tables), blobs, strict=True))
        dec = best_pass(lambda t: decode(pairs[id(t)], t), tables, repeat) / n * 1e6
        rows.append((name, size, enc, dec, "yes" if exact else "NO"))

    def same(a: pa.Table, b: pa.Table) -> bool:
        return sidecols.same_table(a, b)

    row(
        "ipc (format 1)",
        lambda t: container.encode_table(t).to_pybytes(),
        lambda b, t: container.decode_table(b, t.num_rows, "bench"),
        same,
    )
    for level in levels:
        encoded = [container.encode_side_table(t, level) for t in tables]
        codings = {b[0] for b in encoded}
        label = f"columns L{level or 'auto'}"
        if codings != {container.SIDE_COLUMNS}:
            label += f" (codings {sorted(codings)})"
        row(
            label,
            lambda t, level=level: container.encode_side_table(t, level),
            lambda b, t: container.decode_side_table(b, t.num_rows, "bench", 2),
            same,
        )
    row("parquet (reference)", parquet_encode, lambda b, t: parquet_decode(b), same)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shard", nargs="?", help="jet file (default: generate 2,048 jets into a temp dir)")
    parser.add_argument("--chunk", type=int, default=512, help="rows per chunk (pack's default is 512)")
    parser.add_argument("--levels", default="auto,1,3,6,9,19", help="zstd levels of the column coding")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    levels = [None if v == "auto" else int(v) for v in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.shard or generate(tmp)
        generated = load_chunks(path, args.chunk)
    n = sum(t.num_rows for t in generated)
    print(f"{n} jets in {len(generated)} chunks of {args.chunk} rows")
    print(f"columns: {', '.join(generated[0].column_names)}")
    sets = {
        "generated": generated,
        "public-style (pt, m0, y float64)": public_style(generated, f32=False),
        "public-style f32 (pt, m0 from float32)": public_style(generated, f32=True),
    }
    for title, tables in sets.items():
        print(f"\n{title}")
        rows = measure(tables, levels, args.repeat)
        base = rows[0][1]
        head = f"{'bytes/jet':>10} {'vs ipc':>7} {'enc µs/jet':>11} {'dec µs/jet':>11}  exact"
        print(f"  {'coding':<28} {head}")
        for name, size, enc, dec, exact in rows:
            print(f"  {name:<28} {size:>10.2f} {size / base:>7.3f} {enc:>11.2f} {dec:>11.2f}  {exact}")


if __name__ == "__main__":
    main()
