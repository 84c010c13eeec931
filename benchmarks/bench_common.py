"""Shared by the benchmark scripts: a timer that keeps the best of a few runs, and a generated shard."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def best_of(repeats: int, fn) -> float:
    """Smallest wall time of `repeats` calls of fn() (machines are shared: the best run is the signal)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def make_file(path: Path, jets: int) -> None:
    """Write a shard of `jets` generated labelled jets to `path` (make-dataset, one worker)."""
    with tempfile.TemporaryDirectory() as folder:
        cmd = [sys.executable, "-m", "e2ecompress", "make-dataset", folder, "--sets", "labelled",
               "--jets-per-shard", str(jets), "--shards", "1,0,0", "--workers", "1", "--quiet"]  # fmt: skip
        subprocess.run(cmd, check=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(folder) / "labelled" / "train" / "shard-0000.parquet", path)
