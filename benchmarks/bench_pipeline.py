"""End-to-end pack / unpack speed beside the in-memory codec and the parquet reader / writer, in one run.

    python benchmarks/bench_pipeline.py [FILE.parquet] [--jets 2048] [--max-error 0.01] [--repeats 3]
                                        [--out results/pipeline.md]

Without FILE a shard of --jets generated jets is made in a temporary folder (needs the generate extra).
Every stage is timed on the same file in the same process: reading the parquet file alone, the codec
alone on in-memory chunks (encode, and decode + check as pack verifies), `api.pack` end to end, writing
the restored parquet alone, and `api.unpack` end to end; the best of --repeats runs is kept (machines are
shared) and end-to-end speeds are also printed as ratios of the in-memory codec speed. Every pack is
checked: the decoded file must be within the bound of the input. --out writes a markdown report.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_common import best_of, make_file

from e2ecompress import api
from e2ecompress.codec.image import ImageCodec
from e2ecompress.io import open_jets, open_writer

CHUNK = api.DEFAULT_CHUNK


def measure(src: Path, eps: float, repeats: int, work: str) -> dict[str, float]:
    load0 = os.getloadavg()[0]
    with open_jets(src) as f:
        n = f.n_jets
        batches = list(f.iter_batches(CHUNK))
        names, size = f.channel_names, f.image_shape[1:]

    def read() -> None:
        with open_jets(src) as f:
            for _ in f.iter_batches(CHUNK):
                pass

    config = api.make_config(max_error=eps)
    codec = ImageCodec(config, names, size)
    coded = [codec.compress(b.images, decoded=False)[0] for b in batches]

    def encode() -> None:
        for b in batches:
            codec.compress(b.images, decoded=False)

    def decode_check() -> None:
        for b, streams in zip(batches, coded, strict=True):
            api._check(codec.decompress(streams, len(b)), b, config, "bench", True)

    packed, restored, written = (os.path.join(work, x) for x in ("b.e2ez", "b.parquet", "w.parquet"))

    def write() -> None:
        with open_writer(written, names) as w:
            for b in batches:
                w.write(b)

    t = {
        "read parquet": best_of(repeats, read),
        "codec encode": best_of(repeats, encode),
        "codec decode + check": best_of(repeats, decode_check),
        "pack end to end": best_of(repeats, lambda: api.pack(src, packed, max_error=eps)),
        "write parquet": best_of(repeats, write),
        "unpack end to end": best_of(repeats, lambda: api.unpack(packed, restored)),
    }
    with open_jets(src) as a, open_jets(restored) as b:  # the pack really is what it claims
        for x, y in zip(a.iter_batches(CHUNK), b.iter_batches(CHUNK), strict=True):
            err = np.abs(x.images.astype(np.float64) - y.images).max()
            assert err <= eps and not (y.images[x.images == 0]).any(), err
    profile = api.pack(src, packed, max_error=eps).timings
    load = (load0, os.getloadavg()[0])
    return {"n": n, **{k: n / v for k, v in t.items()}, "profile": profile, "load": load}


def report(r: dict, src: Path, eps: float) -> list[str]:
    codec_pack = 1 / (1 / r["codec encode"] + 1 / r["codec decode + check"])
    lines = [
        "# Pack / unpack speed, end to end",
        "",
        f"`python benchmarks/bench_pipeline.py` on {r['n']} jets of `{src.name}`, `--max-error {eps}`, "
        f"chunks of {CHUNK} jets, best of the repeats; {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), shared: load average {r['load'][0]:.1f} at the "
        f"start, {r['load'][1]:.1f} at the end.",
        "",
        "| stage | jets/s | vs codec in memory |",
        "|---|---|---|",
    ]
    rows = [
        ("read parquet (alone)", r["read parquet"], None),
        ("codec encode (in memory)", r["codec encode"], None),
        ("codec decode + check (in memory)", r["codec decode + check"], None),
        ("codec encode + verify, serial (in memory)", codec_pack, 1.0),
        ("**pack end to end**", r["pack end to end"], r["pack end to end"] / codec_pack),
        ("write parquet (alone)", r["write parquet"], None),
        ("**unpack end to end**", r["unpack end to end"], r["unpack end to end"] / r["codec decode + check"]),
    ]
    for name, v, ratio in rows:
        lines.append(f"| {name} | {v:,.0f} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    prof = ", ".join(f"{k} {v:.2f} s" for k, v in r["profile"].items())
    lines += [
        "",
        f"Where pack's time goes (`--profile`, one run): {prof}; `read` is the wait for the reading thread.",
        "The unpack ratio is against decode + check, the decode work it shares with pack's verification.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", help="a jet parquet file (default: generate one)")
    p.add_argument("--jets", type=int, default=2048)
    p.add_argument("--max-error", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="write a markdown report here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="e2e-pipeline-") as work:
        src = Path(args.file) if args.file else Path(work) / "jets.parquet"
        if not args.file:
            make_file(src, args.jets)
        r = measure(src, args.max_error, args.repeats, work)
    lines = report(r, src, args.max_error)
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
