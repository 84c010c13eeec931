"""Pack throughput of a sharded dataset in-process and on 1 vs 2 Dask workers, with peak memory per worker.

Packs the first --shards shards of --data (bounded mode, --max-error 0.01 by default) once in this process
(the reference), then with `pack_many` on a LocalCluster of 1 and of 2 single-threaded worker processes.
Every Dask output is checked byte-identical to the reference as it goes. Reports jets/s, the speed-up over
1 worker, and each worker's peak RSS (VmHWM, read with client.run after the run). Cluster start-up is
timed apart and not counted. Machine load (other jobs) is printed: on a shared machine, rerun to compare.

    python benchmarks/bench_scaleout.py [--data data/study/unlabelled/train] [--shards 8] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

from e2ecompress.distributed import DatasetSummary, pack_many

MB = 1 << 20


def _memory(field: str) -> int:
    """VmHWM / VmRSS of the calling process in bytes (Linux), run on each worker by client.run."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _warm_up() -> int:
    """Import what a pack task needs, so the timed run does not pay for it; the worker's RSS after."""
    import e2ecompress.api  # noqa: F401

    return _memory("VmRSS")


def _same(a: str, b: str, names: list[str]) -> None:
    for name in names:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            if fa.read() != fb.read():
                sys.exit(f"{name}: Dask output differs from the in-process one")


def _check(done: DatasetSummary) -> None:
    if done.failed:
        sys.exit("failed shards: " + "; ".join(f"{s.input}: {s.error}" for s in done.failed))


def run_cluster(files: list[str], out: str, n_workers: int, opts: dict) -> dict:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as c,
        Client(c) as client,
    ):
        client.wait_for_workers(n_workers, timeout=120)
        baseline = client.run(_warm_up)
        start_s = time.perf_counter() - t0
        done = pack_many(files, out, client=client, **opts)
        peaks = client.run(_memory, "VmHWM")
    _check(done)
    return {
        "done": done,
        "start_s": start_s,
        "peak": sorted(peaks.values()),
        "baseline": sorted(baseline.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/study/unlabelled/train", help="directory of parquet shards")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--max-error", type=float, default=0.01)
    parser.add_argument("--workers", default="1,2", help="Dask worker counts to compare")
    parser.add_argument("--dir", default=None, help="where to put the temporary outputs")
    args = parser.parse_args()

    files = sorted(glob.glob(os.path.join(args.data, "*.parquet")))[: args.shards]
    if not files:
        sys.exit(f"{args.data}: no parquet shards (make-dataset or tools/reproduce_study.py writes them)")
    opts = {"max_error": args.max_error}
    names = [os.path.splitext(os.path.basename(f))[0] + ".e2ez" for f in files]
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="e2e-bench-scaleout-") as tmp:
        ref = os.path.join(tmp, "in-process")
        serial = pack_many(files, ref, **opts)
        _check(serial)
        rows.append(("in-process", 1, None, serial, None, None))
        print(serial.line(), flush=True)
        for n in (int(x) for x in args.workers.split(",")):
            out = os.path.join(tmp, f"dask-{n}")
            r = run_cluster(files, out, n, opts)
            _same(ref, out, names)
            rows.append(("Dask LocalCluster", n, r["start_s"], r["done"], r["peak"], r["baseline"]))
            print(r["done"].line(), flush=True)
    load1 = os.getloadavg()

    jets = serial.n_jets
    base = next((d.wall_s for _, n, start, d, *_ in rows if n == 1 and start is not None), None)
    print(
        f"\n{len(files)} shards, {jets} jets, bounded --max-error {args.max_error}, "
        f"{serial.bytes / jets:.1f} bytes/jet; {os.cpu_count()} CPUs, load average "
        f"{load0[0]:.1f} before, {load1[0]:.1f} after"
    )
    head = ("runner", "workers", "start s", "wall s", "jets/s", "vs 1 worker")
    print(f"{head[0]:18s} {' '.join(f'{h:>7s}' for h in head[1:5])} {head[5]:>11s}  peak RSS/worker MiB")
    for label, n, start, done, peak, baseline in rows:
        ratio = f"{base / done.wall_s:.2f}x" if base and start is not None else "-"
        started = "-" if start is None else f"{start:.1f}"
        mem = (
            ", ".join(f"{p / MB:.0f} (+{(p - b) / MB:.0f})" for p, b in zip(peak, baseline, strict=True))
            if peak
            else "-"
        )
        rate = done.n_jets / done.wall_s
        print(f"{label:18s} {n:7d} {started:>7s} {done.wall_s:7.1f} {rate:7.0f} {ratio:>11s}  {mem}")
    print("outputs: every Dask run byte-identical to the in-process run")
    print("peak RSS: VmHWM of each worker process (+ growth over its RSS after importing the package)")


if __name__ == "__main__":
    main()
