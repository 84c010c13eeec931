"""Run every benchmark in sequence: patch kernels, the rANS coder, pack / unpack speed end to end, then
bytes/jet vs physics fidelity.

    python benchmarks/run_all.py [--quick] [--out results] [--threads 2] [--only kernels rans compression]

Each script runs in its own process (same interpreter, OMP_NUM_THREADS = --threads) with its output
streamed as it comes; --quick gives each one small sizes for a smoke run. Exits 1 when any script fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script, full-run arguments, quick-run arguments)
SUITE = {
    "kernels": (
        "bench_kernels.py",
        [],
        ["--batch", "64", "--channels", "3", "--patch", "8", "--min-time", "0.1"],
    ),
    "rans": ("bench_rans.py", [], ["--rows", "8192", "--min-reps", "2", "--min-time", "0.05"]),
    "sidecols": ("bench_sidecols.py", [], []),
    "pipeline": (
        "bench_pipeline.py",
        ["--out", str(HERE.parent / "results" / "pipeline.md")],
        ["--jets", "512", "--repeats", "1"],
    ),
    "compression": ("compression.py", [], ["--quick"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere (a smoke run)")
    parser.add_argument("--out", default=None, help="compression.py's --out (default: its own, results/)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS and compression.py --threads")
    parser.add_argument("--only", nargs="+", choices=list(SUITE), default=list(SUITE), help="run these only")
    args = parser.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    summary = []
    for name in args.only:
        script, full, quick = SUITE[name]
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        if name == "compression":
            cmd += ["--threads", str(args.threads)] + (["--out", args.out] if args.out else [])
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, env=env, check=False).returncode
        summary.append((name, rc, time.perf_counter() - t0))
        print(f"=== {name}: exit {rc} in {summary[-1][2]:.0f} s\n", flush=True)
    print("summary:")
    for name, rc, dt in summary:
        print(f"  {name:<12} {'ok' if rc == 0 else f'FAILED (exit {rc})':<16} {dt:7.0f} s")
    return 0 if all(rc == 0 for _, rc, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
