"""Bytes per jet vs physics fidelity: lossless and error-bounded codecs side by side on held-out jets.

    python benchmarks/compression.py [--jets 2000] [--out results] [--quick]

Two scenarios: the labelled test jets of data/study (no pileup) and data/bench_pu20 (pileup mu = 20, made
by `e2ecompress make-dataset data/bench_pu20 --layout qg3 --sets labelled --pileup 20 --jets-per-shard 1000
--shards 0,0,2 --seed 7`). Codecs: raw float32, zstd 3/19, blosc2, parquet (e2ecompress.io), a sparse
bitmask + quantized-values baseline, SZ3 and ZFP at absolute error bounds eps, and e2ecompress's own
operating points (compression_lib/e2e_points.py). Writes <out>/compression.md and <out>/compression_*.png;
exits 1 when a codec broke its promise (lossless not exact, or an error over its bound).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from compression_lib.e2e_points import e2ecompress_points
from compression_lib.harness import CHUNK, Bench, Classifier, Scenario, load_scenario, set_threads
from compression_lib.points import baseline_points
from compression_lib.report import plot_rate_distortion, write_markdown

ROOT = Path(__file__).resolve().parents[1]
EPS = (0.005, 0.01, 0.05, 0.1)  # GeV, absolute error bounds of the lossy baselines
QUICK_EPS = (0.01,)
HIGH_PT = (400.0, 800.0)  # pT-hat range (GeV) of the high-pT scenario
LIBRARIES = (
    "numpy",
    "zstandard",
    "blosc2",
    "pysz",
    "zfpy",
    "pyarrow",
    "torch",
    "scikit-learn",
    "e2ecompress",
)
CODEC_NOTES = [
    "raw float32: the array's bytes (the reference size).",
    "zstd-3 / zstd-19: python-zstandard on the raw float32 bytes of each chunk.",
    "blosc2: ZSTD codec, clevel 5, byte shuffle, typesize 4.",
    "parquet+zstd: the chunk written by `e2ecompress.io.write_jets` (X_jets column only, zstd at pyarrow's "
    "default level, one row group) and read back with `open_jets`; '× parquet' divides by this size.",
    "sparse lossless: np.packbits bitmask of the non-zero pixels + their float32 values, one zstd frame "
    "(levels 3 and 19 run, the smaller is shown).",
    "sparse-q: q = round(x / 2ε) in the smallest integer dtype that holds the chunk's q; the bitmask marks "
    "the pixels with q ≠ 0 (smaller ones decode to exact 0, within ε), decoded as q·2ε; one zstd frame "
    "(levels 3 and 19 run, the smaller is shown).",
    "SZ3: pysz, errorBoundMode ABS, absErrorBound ε, each chunk as a 3-D float32 array [n·C, 125, 125].",
    "ZFP: zfpy.compress_numpy(tolerance=ε) (fixed-accuracy), each chunk as a 3-D array [n·C, 125, 125]; "
    "ZFP rounds the tolerance down to a power of two, so its errors stay well under ε.",
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions() -> dict[str, str]:
    import blosc2
    import zstandard

    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = "not installed"
    out["zstandard"] += (
        f" (libzstd {zstandard.ZSTD_VERSION[0]}.{zstandard.ZSTD_VERSION[1]}.{zstandard.ZSTD_VERSION[2]})"
    )
    out["blosc2"] += f" (C-Blosc2 {blosc2.VERSION_STRING})"
    return out


def scenario_specs(args: argparse.Namespace) -> list[tuple[str, str, list[Path], list[str]]]:
    """(key, title, shard paths in reading order, notes) of each scenario."""
    study = ROOT / "data" / "study" / "labelled"
    if not any((study / "test").glob("shard-*.parquet")):  # a fresh clone: the generated held-out set
        study = Path(args.nopu_data) / "labelled"
    test = sorted((study / "test").glob("shard-*.parquet"))
    val = sorted((study / "val").glob("shard-*.parquet"))
    held = 0
    for p in test:
        held += _rows(p)
    notes = [
        "Jets from labelled/test, never seen by the classifier (trained on labelled/train, selected on "
        "labelled/val) nor by any codec."
    ]
    paths = list(test)
    if args.jets > held:
        paths += val
        notes = [
            f"labelled/test holds {held} jets, fewer than the {args.jets} asked: labelled/val is added. "
            "Neither split trained a codec, but val selected the classifier's epoch, so the AUC on those "
            "jets is slightly optimistic."
        ]
    pu = Path(args.pu_data) / "labelled" / "test"
    pu_notes = [
        "Pileup μ = 20 jets (make-dataset --pileup 20 --seed 7), a separate generation; the classifier was "
        "trained without pileup, so its AUC here is lower and only the drop between original and decoded "
        "images is meaningful."
    ]
    high = Path(args.highpt_data) / "labelled" / "test"
    high_notes = [
        f"High-pT jets (make-dataset --pthat {HIGH_PT[0]:g},{HIGH_PT[1]:g} --seed 9: leading "
        "jets of a few hundred GeV, denser cores), no pileup; the classifier was trained on the default "
        "80-170 GeV sample, so only the drop between original and decoded images is meaningful."
    ]
    return [
        ("nopu", "No pileup (labelled test jets)", paths, notes),
        ("pu20", "Pileup μ = 20", sorted(pu.glob("shard-*.parquet")), pu_notes),
        ("highpt", "High pT, no pileup", sorted(high.glob("shard-*.parquet")), high_notes),
    ]


def make_missing_data(args: argparse.Namespace) -> None:
    """Generate the held-out sets that are not there (2 x 1000 labelled jets each, about 1-2 min each)."""
    from e2ecompress.data.dataset import DatasetConfig, make_dataset
    from e2ecompress.data.generator import JetCuts

    study = ROOT / "data" / "study" / "labelled" / "test"
    high = JetCuts(pthat_min=HIGH_PT[0], pthat_max=HIGH_PT[1])
    wanted = [(Path(args.pu_data), 20.0, 7, JetCuts()), (Path(args.highpt_data), 0.0, 9, high)]
    if not any(study.glob("shard-*.parquet")):
        wanted.append((Path(args.nopu_data), 0.0, 8, JetCuts()))
    for out, mu, seed, cuts in wanted:
        if any((out / "labelled" / "test").glob("shard-*.parquet")):
            continue
        print(f"generating {out} (pileup {mu:g}, seed {seed}, pT-hat {cuts.pthat_min:g}-{cuts.pthat_max:g})")
        cfg = DatasetConfig(
            layout="qg3",
            sets=("labelled",),
            jets_per_shard=1000,
            shards=(0, 0, 2),
            seed=seed,
            pileup_mu=mu,
            cuts=cuts,
        )
        make_dataset(cfg, out, workers=args.threads, progress=False)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def describe(sc: Scenario, runtime_s: float, rows: list[dict]) -> dict:
    occ = (sc.images != 0).mean(axis=(0, 2, 3))
    auc_ref = rows[0].get("auc_ref", float("nan")) if rows else float("nan")
    return {
        "key": sc.key,
        "title": sc.title,
        "n_jets": len(sc),
        "n_quark": int((sc.labels == 1).sum()),
        "n_gluon": int((sc.labels == 0).sum()),
        "channels": list(sc.channels),
        "occupancy": occ.tolist(),
        "files": [os.path.relpath(f, ROOT) for f in sc.files],
        "input_bytes_per_jet": sc.input_bytes_per_jet,
        "auc_ref": auc_ref,
        "runtime_s": runtime_s,
        "notes": sc.notes,
        "rows": rows,
    }


def run_scenario(
    sc: Scenario, classifier: Classifier, eps: tuple[float, ...], threads: int, reps: int
) -> tuple[dict, dict]:
    """All points on one scenario; returns its description and {part: seconds}."""
    t0 = time.perf_counter()
    bench = Bench(sc, classifier, reps)
    t_ref = time.perf_counter() - t0
    print(f"[{sc.key}] originals: {len(sc)} jets, quantities + classifier in {t_ref:.1f} s", flush=True)
    rows = []
    times = {"originals": t_ref, "baselines": 0.0, "e2ecompress": 0.0}
    for part, points in (
        ("baselines", baseline_points(sc.shape, sc.channels, eps, threads)),
        ("e2ecompress", e2ecompress_points(eps)),
    ):
        for point in points:
            t = time.perf_counter()
            row = bench.run(point)
            dt = time.perf_counter() - t
            times[part] += dt
            row["wall_s"], row["part"] = dt, part
            rows.append(row)
            flag = "" if row["bound_ok"] else "  !! BROKE ITS PROMISE"
            print(
                f"[{sc.key}] {point.name:<28} {json.dumps(point.params)[:40]:<40} "
                f"{row['bytes_per_jet']:>10,.0f} B/jet  max err {row['max_abs_err']:.3g}  "
                f"m res {row['mass_res']:.3g}  dAUC {row.get('auc_drop', float('nan')):+.4f}  "
                f"({dt:.1f} s){flag}",
                flush=True,
            )
    return describe(sc, time.perf_counter() - t0, rows), times


def write_report(results: dict, out: str) -> list[str]:
    """compression.md and the PNGs in `out`; returns the PNG names."""
    os.makedirs(out, exist_ok=True)
    plots = plot_rate_distortion(results, out) if results["scenarios"] else []
    write_markdown(results, os.path.join(out, "compression.md"), plots)
    return plots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=None, help="jets per scenario (default 2000; quick 200)")
    parser.add_argument("--out", default=str(ROOT / "results"), help="where compression.md and PNGs go")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 jets, eps 0.01 only")
    parser.add_argument("--eps", type=float, nargs="+", default=None, help="absolute error bounds (GeV)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every threaded library")
    parser.add_argument("--pu-data", default=str(ROOT / "data" / "bench_pu20"), help="the pileup dataset")
    parser.add_argument(
        "--highpt-data", default=str(ROOT / "data" / "bench_highpt"), help="the high-pT dataset"
    )
    parser.add_argument(
        "--nopu-data",
        default=str(ROOT / "data" / "bench_nopu"),
        help="no-pileup held-out set used when data/study/labelled/test is absent",
    )
    parser.add_argument("--no-make-data", action="store_true", help="skip scenarios whose data is missing")
    parser.add_argument("--json", default=None, help="also write every number to this JSON file")
    parser.add_argument("--report-only", metavar="JSON", help="rewrite the report from a --json file, no run")
    args = parser.parse_args(argv)
    if args.report_only:
        with open(args.report_only, encoding="utf-8") as f:
            results = json.load(f)
        write_report(results, args.out)
        return 0
    args.jets = args.jets or (200 if args.quick else 2000)
    eps = tuple(args.eps or (QUICK_EPS if args.quick else EPS))
    reps = 1 if args.quick else 3  # timing repeats per chunk

    if not args.no_make_data:
        make_missing_data(args)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    load_start = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    threads = set_threads(args.threads)
    classifier = Classifier()
    scenarios, skipped = [], []
    totals = {"originals": 0.0, "baselines": 0.0, "e2ecompress": 0.0}
    for key, title, paths, notes in scenario_specs(args):
        if not paths:
            reason = (
                f"Skipped: no shards for this scenario ({title}); run without --no-make-data to generate "
                "them (`make-dataset`, as described in the scenario's notes)."
            )
            print(f"[{key}] {reason}", flush=True)
            skipped.append({"key": key, "title": title, "reason": reason})
            continue
        sc = load_scenario(key, title, paths, args.jets)
        sc.notes = notes
        if len(np.unique(sc.labels)) < 2:
            raise SystemExit(f"[{key}] the {len(sc)} jets hold one class only; use more jets")
        desc, times = run_scenario(sc, classifier, eps, args.threads, reps)
        for k, v in times.items():
            totals[k] += v
        scenarios.append(desc)
        del sc

    wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    n_e2e = sum(len([r for r in sc["rows"] if r["part"] == "e2ecompress"]) for sc in scenarios)
    setup = {
        "command": "python benchmarks/compression.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_model()}, {platform.system()} {platform.release()}",
        "cpus": len(os.sched_getaffinity(0)),
        "load_start": load_start,
        "load_end": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        "nice": os.nice(0),
        "threads_text": ", ".join(f"{k} {v}" for k, v in threads.items())
        + "; SZ3 (pysz) and ZFP (zfpy) single-threaded",
        "chunk": CHUNK,
        "reps": reps,
        "channels": scenarios[0]["channels"] if scenarios else [],
        "classifier": classifier.name,
        "classifier_id": classifier.model_id,
        "n_boot": 200,
        "versions": versions(),
        "codec_notes": CODEC_NOTES,
        "eps": list(eps),
        "runtime_s": wall,
        "cpu_s": cpu,
        "runtime_parts_s": totals,
        "runtime_text": (
            f"{wall:.0f} s in all ({wall / 60:.1f} min): originals' quantities and classifier "
            f"{totals['originals']:.0f} s, third-party codecs {totals['baselines']:.0f} s, "
            f"e2ecompress {totals['e2ecompress']:.0f} s, the rest (loading, report) "
            f"{wall - sum(totals.values()):.0f} s. CPU time of the process (all threads) {cpu:.0f} s, i.e. "
            f"{cpu / wall:.2f} of {len(os.sched_getaffinity(0))} cores on average"
        ),
    }
    results = {"setup": setup, "scenarios": scenarios, "skipped": skipped, "e2ecompress_points": n_e2e}
    plots = write_report(results, args.out)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=float)
    print(f"wrote {os.path.join(args.out, 'compression.md')} and {len(plots)} plots; {setup['runtime_text']}")
    broken = [
        (sc["key"], r["name"], r["params"]) for sc in scenarios for r in sc["rows"] if not r["bound_ok"]
    ]
    for b in broken:
        print(f"BROKEN PROMISE: {b}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
