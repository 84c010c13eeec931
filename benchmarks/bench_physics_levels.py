"""The physics levels (`pack --quality 1..5`) beside `--max-error 0.01`, on the same jets in one run.

    python benchmarks/bench_physics_levels.py FILE [FILE ...] [--jets 2000] [--chunk 512] [--levels 1,2,3,4,5]
                                             [--auc]

FILEs are jet files (parquet / HDF5 with an eta column for the kinematics; without one eta = 0); the first
--jets jets are read into memory. Per codec point, in memory (`ImageCodec`, chunks of --chunk jets, one
thread):

- image bytes/jet: the coded image streams only (no side columns, no framing), split by kind: "pos" the
  positions inside the cone (bounded: all positions), "val" the values there (bounded: all values), "sums"
  the per-jet cone-sum factors, "out" everything outside the cone (counts per ring and coarse sorted
  values, or exact tower positions), "other" (plane codes, parameters);
- jet pT and mass (`physics.jet_kinematics`, R = 0.4 around the window centre, jet eta from the table) of
  the decoded images against the originals: resolution (std of reco / true - 1) and bias (mean), percent;
- encode and decode speed: jets/s of the best of --repeat passes over all chunks (decoding into a reused
  buffer, as `unpack` does);
- with --auc: the shipped quark/gluon classifier's AUC drop (originals minus decoded, with a paired
  bootstrap error; needs the y column and the ml extra), as the compression benchmark measures it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from e2ecompress.codec.image import CodecConfig, ImageCodec
from e2ecompress.codec.physics_lossy import DEFAULT_LEVEL, LEVELS
from e2ecompress.io import open_jets
from e2ecompress.physics import jet_kinematics

KINDS = ("pos", "val", "sums", "out", "other")


def stream_kind(name: str, mode: str) -> str:
    """Which kind of bytes a stream holds (see the module docstring)."""
    tail = name.rsplit(".", 1)[-1] if name.startswith("c") and "." in name else ""
    if mode == "physics":
        table = {
            "n": "pos",
            "g": "pos",
            "o": "pos",
            "v": "val",
            "sg": "val",
            "s": "sums",
            "on": "out",
            "og": "out",
        }
        return table.get(tail, "out" if tail == "ov" else "other")
    return {"n": "pos", "g": "pos", "o": "pos", "v": "val"}.get(tail, "other")


def load(paths: list[str], n_jets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...]]:
    images, eta, y, channels = [], [], [], None
    got = 0
    for path in paths:
        with open_jets(path) as f:
            channels = channels or f.channel_names
            take = min(f.n_jets, n_jets - got)
            batch = f.read(0, take)
            images.append(batch.images.copy())
            names = batch.table.column_names if batch.table is not None else []
            eta.append(batch.table.column("eta").to_numpy() if "eta" in names else np.zeros(take))
            y.append(batch.table.column("y").to_numpy() if "y" in names else None)
            got += take
        if got >= n_jets:
            break
    labels = None if any(v is None for v in y) else np.concatenate(y).astype(np.int64)
    return np.concatenate(images), np.concatenate(eta).astype(np.float64), labels, tuple(channels)


def best_pass(fn, repeat: int) -> tuple[list, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def run_point(codec: ImageCodec, images: np.ndarray, chunk: int, repeat: int):
    """-> (bytes per kind, decoded images, encode s, decode s). Decoding is timed into one reused buffer
    per chunk size (as `unpack` decodes), so that fresh pages of memory are not what is measured."""
    starts = range(0, len(images), chunk)
    coded, t_enc = best_pass(
        lambda: [codec.compress(images[s : s + chunk], decoded=False)[0] for s in starts], repeat
    )
    buffers: dict[int, np.ndarray] = {}

    def decode_all() -> None:
        for s, streams in zip(starts, coded, strict=True):
            n = len(images[s : s + chunk])
            if n not in buffers:
                buffers[n] = np.empty((n, *images.shape[1:]), np.float32)
            codec.decompress(streams, n, buffers[n])

    _, t_dec = best_pass(decode_all, repeat)
    decoded = [codec.decompress(st, len(images[s : s + chunk])) for s, st in zip(starts, coded, strict=True)]
    sizes = dict.fromkeys(KINDS, 0)
    for streams in coded:
        for name, data in streams.items():
            sizes[stream_kind(name, codec.config.mode)] += len(data)
    return sizes, np.concatenate(decoded), t_enc, t_dec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--jets", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--levels", default=",".join(str(q) for q in sorted(LEVELS)))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--auc", action="store_true", help="also the classifier's AUC drop (ml extra)")
    args = p.parse_args(argv)
    images, eta, labels, channels = load(args.files, args.jets)
    n = len(images)
    true = jet_kinematics(images, channels, eta)
    classify = ref_prob = None
    if args.auc:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from compression_lib.harness import Classifier

        classify = Classifier()
        ref_prob = classify(images)
    points = [
        (f"physics q={q}" + (" (default)" if q == DEFAULT_LEVEL else ""), CodecConfig("physics", q))
        for q in (int(v) for v in args.levels.split(","))
    ]
    points.append(("--max-error 0.01", CodecConfig("bounded", max_error=0.01)))
    names = ", ".join(os.path.basename(f) for f in args.files)
    print(f"{n} jets from {names}, chunks of {args.chunk}, one thread")
    head = f"{'point':<22}{'B/jet':>7}" + "".join(f"{k:>7}" for k in KINDS)
    head += f"{'pT res':>8}{'bias':>8}{'m res':>8}{'bias':>8}{'enc j/s':>9}{'dec j/s':>9}"
    print(head + (f"{'dAUC':>16}" if args.auc else ""))
    for label, config in points:
        codec = ImageCodec(config, channels, images.shape[2:])
        sizes, dec, t_enc, t_dec = run_point(codec, images, args.chunk, args.repeat)
        got = jet_kinematics(dec, channels, eta)
        row = f"{label:<22}{sum(sizes.values()) / n:>7.1f}" + "".join(f"{sizes[k] / n:>7.1f}" for k in KINDS)
        for q in ("pt", "mass"):
            keep = true[q] > 0
            r = got[q][keep] / true[q][keep] - 1.0
            row += f"{100 * r.std():>7.3f}%{100 * r.mean():>+7.3f}%"
        row += f"{n / t_enc:>9.0f}{n / t_dec:>9.0f}"
        if classify is not None and labels is not None:
            from compression_lib.metrics import auc_drop

            _, drop, err = auc_drop(labels, ref_prob, classify(dec))
            row += f"   {drop:+.4f}+-{err:.4f}"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
