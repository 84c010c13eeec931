"""Peak memory of streaming a large parquet jet file: does reading stay bounded?

Writes a parquet file of generated sparse jet images (~1 GB by default) into a temporary directory,
streams it back in a fresh process, and reports the reader's peak RSS growth, the Arrow memory pool's
peak, and their ratio to the file size. The reader checks the jet count and the pixel sum as it goes.
The file is deleted at the end.

    python benchmarks/bench_io_memory.py [--size-mb 1024] [--batch-size 256] [--channels 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

from e2ecompress.io import Batch, open_jets, open_writer
from e2ecompress.layouts import IMAGE_SIZE

MB = 1 << 20


def sparse_pool(rng: np.random.Generator, n: int, channels: int, occupancy: float) -> np.ndarray:
    """n jets of mostly-zero images with exponential energies where a pixel is hit."""
    images = np.zeros((n, channels, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    hit = rng.random(images.shape) < occupancy
    images[hit] = rng.exponential(1.0, int(hit.sum())).astype(np.float32)
    return images


def generate(n_jets: int, batch: int, channels: int, occupancy: float, seed: int):
    """Batches that differ from each other cheaply: a pool rolled and scaled per batch."""
    rng = np.random.default_rng(seed)
    pool = sparse_pool(rng, 4 * batch, channels, occupancy)
    made = 0
    while made < n_jets:
        n = min(batch, n_jets - made)
        first = int(rng.integers(0, len(pool) - n + 1))
        images = pool[first : first + n] * np.float32(rng.uniform(0.5, 2.0))
        images = np.roll(images, int(rng.integers(0, IMAGE_SIZE)), axis=3)
        table = pa.table(
            {
                "y": rng.integers(0, 2, n),
                "pt": rng.uniform(20, 500, n).astype(np.float32),
                "m0": rng.uniform(0, 50, n),
            }
        )
        yield Batch(images, table, start=made)
        made += n


def write(path: str, n_jets: int, args) -> tuple[int, float]:
    """Write n_jets; return (jets, sum of all pixels in float64) for the reader to check."""
    total = 0.0
    with open_writer(path, "qg3" if args.channels == 3 else "e2e8", extra={"bench": "io_memory"}) as w:
        for batch in generate(n_jets, 256, args.channels, args.occupancy, args.seed):
            total += float(np.sum(batch.images, dtype=np.float64))
            w.write(batch)
    return n_jets, total


def _memory(field: str) -> int:
    """VmRSS / VmHWM of this process in bytes (Linux); ru_maxrss where /proc is missing.

    The reader runs in a fresh exec'd process, whose VmHWM starts from zero; ru_maxrss would not do
    there, as Linux carries it over from the parent (the writer) across exec.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stream(path: str, batch_size: int) -> dict:
    """Runs in a fresh process: read everything, report peak RSS growth over the post-import baseline."""
    baseline = _memory("VmRSS")
    pool = pa.default_memory_pool()
    t0 = time.perf_counter()
    jets, total = 0, 0.0
    with open_jets(path) as f:
        for batch in f.iter_batches(batch_size):
            jets += len(batch)
            total += float(np.sum(batch.images, dtype=np.float64))
        decoded = f.n_jets * int(np.prod(f.image_shape)) * 4
    seconds = time.perf_counter() - t0
    peak = _memory("VmHWM")
    return {
        "jets": jets,
        "pixel_sum": total,
        "seconds": seconds,
        "rss_growth": peak - baseline,
        "arrow_pool_peak": pool.max_memory(),
        "arrow_backend": pool.backend_name,
        "decoded_bytes": decoded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024.0, help="target file size")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--channels", type=int, choices=(3, 8), default=3)
    parser.add_argument("--occupancy", type=float, default=0.03, help="fraction of non-zero pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="where to put the temporary file")
    parser.add_argument("--stream", default=None, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.stream:
        print(json.dumps(stream(args.stream, args.batch_size)))
        return

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="e2e-bench-io-") as tmp:
        probe = os.path.join(tmp, "probe.parquet")
        write(probe, 1024, args)
        per_jet = os.path.getsize(probe) / 1024
        os.unlink(probe)
        n_jets = int(args.size_mb * MB / per_jet)

        path = os.path.join(tmp, "jets.parquet")
        t0 = time.perf_counter()
        n_written, pixel_sum = write(path, n_jets, args)
        write_s = time.perf_counter() - t0
        size = os.path.getsize(path)
        print(
            f"wrote {n_written} jets, {size / MB:.0f} MiB ({size / n_written:.0f} B/jet) in {write_s:.0f} s"
        )

        cmd = [sys.executable, __file__, "--stream", path, "--batch-size", str(args.batch_size)]
        child = subprocess.run(cmd, capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"streaming failed:\n{child.stderr}")
        r = json.loads(child.stdout.strip().splitlines()[-1])

    assert r["jets"] == n_written, (r["jets"], n_written)
    assert abs(r["pixel_sum"] - pixel_sum) <= 1e-9 * abs(pixel_sum), (r["pixel_sum"], pixel_sum)
    seconds, decoded = r["seconds"], r["decoded_bytes"]
    print(
        f"streamed {r['jets']} jets in {seconds:.0f} s "
        f"({size / MB / seconds:.1f} MiB/s of file, {decoded / MB / seconds:.0f} MiB/s decoded)"
    )
    print(f"decoded volume {r['decoded_bytes'] / MB:.0f} MiB (float32), batch size {args.batch_size}")
    print(
        f"peak RSS growth {r['rss_growth'] / MB:.0f} MiB = {r['rss_growth'] / size:.3f} x file size; "
        f"Arrow pool ({r['arrow_backend']}) peak {r['arrow_pool_peak'] / MB:.0f} MiB"
    )
    bounded = r["rss_growth"] <= max(size, 1024 * MB)
    print("bounded: yes" if bounded else "bounded: NO (more than the file size / 1 GiB)")


if __name__ == "__main__":
    main()
