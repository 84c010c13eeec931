"""`make-dataset`: sharded, reproducible, resumable quark/gluon jet-image datasets.

Layout on disk::

    OUT/labelled/{train,val,test}/shard-0000.parquet
    OUT/unlabelled/{train,val,test}/shard-0000.parquet
    OUT/manifest.json

Every shard's content is a function of (base seed, set, split, shard index) only: its Pythia seeds and the
per-jet detector seeds are derived from those, so the output is the same for any number of workers, and a
shard that already exists with the same settings is skipped (resume). Labelled and unlabelled sets, and the
splits, come from disjoint seed streams, so no event is shared between them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa

from e2ecompress.data import detector, generator
from e2ecompress.errors import InputError
from e2ecompress.layouts import get_layout

SETS = ("labelled", "unlabelled")
SPLITS = ("train", "val", "test")
RENDER_CHUNK = 64


@dataclass(frozen=True)
class DatasetConfig:
    layout: str = "qg3"
    sets: tuple[str, ...] = SETS
    jets_per_shard: int = 1000
    shards: tuple[int, int, int] = (8, 1, 1)  # train, val, test shards per set
    seed: int = 20261129
    pileup_mu: float = 0.0
    cuts: generator.JetCuts = field(default_factory=generator.JetCuts)

    def __post_init__(self):
        get_layout(self.layout)
        for s in self.sets:
            if s not in SETS:
                raise InputError(None, f"unknown set {s!r} (known: {', '.join(SETS)})")
        if self.jets_per_shard < 2 or self.jets_per_shard % 2:
            raise InputError(None, f"jets per shard must be even and >= 2, got {self.jets_per_shard}")
        if len(self.shards) != 3 or min(self.shards) < 0 or sum(self.shards) == 0:
            raise InputError(None, f"shards must be three counts (train, val, test), got {self.shards}")
        if self.pileup_mu < 0:
            raise InputError(None, f"pileup mu must be >= 0, got {self.pileup_mu}")

    def shard_settings(self) -> dict:
        """What a shard's content depends on (besides its identity); used to validate resumed shards."""
        return {
            "layout": self.layout,
            "jets_per_shard": self.jets_per_shard,
            "seed": self.seed,
            "pileup_mu": self.pileup_mu,
            "cuts": asdict(self.cuts),
        }


@dataclass(frozen=True)
class ShardTask:
    set: str
    split: str
    index: int

    @property
    def relpath(self) -> str:
        return f"{self.set}/{self.split}/shard-{self.index:04d}.parquet"


def derive_seed(base: int, *parts: object, modulo: int = 899_999_999) -> int:
    """A seed in [1, modulo] from the base seed and a shard identity (stable across runs and platforms)."""
    h = hashlib.blake2b(repr((base, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") % modulo + 1


def _collect(stream: generator.JetStream, n: int, want_quark: bool | None) -> generator.JetBatch:
    """Draw event batches until `n` jets of the wanted kind are found (None: any jet passing the cuts)."""
    got: list[generator.JetBatch] = []
    count = 0
    while count < n:
        jb = stream.next_jets()
        a = np.abs(jb.parton_id)
        if want_quark is None:
            keep = np.ones(len(jb), dtype=bool)
        elif want_quark:
            keep = (a >= 1) & (a <= 5)
        else:
            keep = a == 21
        jb = jb.select(keep)
        take = min(n - count, len(jb))
        if take:
            got.append(jb.select(np.arange(take)))
            count += take
    return generator.concat_jets(got)


def _side_columns(jb: generator.JetBatch, truth: np.ndarray, y: np.ndarray, uid: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "y": pa.array(y, pa.float32()),
            "pt": pa.array(jb.pt, pa.float64()),
            "m0": pa.array(jb.m0, pa.float64()),
            "eta": pa.array(jb.eta, pa.float64()),
            "phi": pa.array(jb.phi, pa.float64()),
            "parton_id": pa.array(jb.parton_id, pa.int32()),
            "n_constituents": pa.array(jb.n_constituents, pa.int32()),
            "n_charged": pa.array(jb.n_charged, pa.int32()),
            "girth": pa.array(jb.girth, pa.float64()),
            "ptd": pa.array(jb.ptd, pa.float64()),
            "ecal_deposit": pa.array(truth[:, 0], pa.float64()),
            "hcal_deposit": pa.array(truth[:, 1], pa.float64()),
            "jet_uid": pa.array(uid, pa.int64()),
        }
    )


def generate_shard(cfg: DatasetConfig, task: ShardTask):
    """Yield the shard's jets as (images [B, C, 125, 125] float32, side-column table) chunks, in file order.

    Jets alternate quark-process / gluon-process (exactly balanced); in the labelled set the label comes from
    parton matching and quark (1) and gluon (0) jets alternate.
    """
    layout = get_layout(cfg.layout)
    roles = detector.channel_roles(layout.channels)
    half = cfg.jets_per_shard // 2
    labelled = task.set == "labelled"
    ident = (task.set, task.split, task.index)
    streams = []
    for name, procs, want in (
        ("quark", generator.QUARK_PROCESSES, True),
        ("gluon", generator.GLUON_PROCESSES, False),
    ):
        seed = derive_seed(cfg.seed, *ident, name)
        stream = generator.JetStream(
            procs,
            seed,
            cfg.cuts,
            events_per_batch=min(100, max(8, half)),
            pileup_mu=cfg.pileup_mu,
            pileup_seed=derive_seed(cfg.seed, *ident, name, "pileup"),
        )
        streams.append(_collect(stream, half, want if labelled else None))
    render_seed = derive_seed(cfg.seed, *ident, "detector", modulo=2**31 - 2**20)
    uid_base = derive_seed(cfg.seed, *ident, "uid", modulo=2**40) << 20
    # file order: q0, g0, q1, g1, ...; the detector seed of a jet is its position in the file
    for start in range(0, cfg.jets_per_shard, RENDER_CHUNK):
        pos = np.arange(start, min(start + RENDER_CHUNK, cfg.jets_per_shard))
        images = np.empty((len(pos), layout.in_chans, detector.NPIX, detector.NPIX), dtype=np.float32)
        tables = []
        for k, jb in enumerate(streams):
            rows = pos[pos % 2 == k]
            part = jb.select(rows // 2)
            imgs, truth = generator.render(part, roles, layout.in_chans, render_seed + rows)
            images[rows - start] = imgs
            if labelled:
                y = (np.abs(part.parton_id) != 21).astype(np.float32)
            else:
                y = np.full(len(rows), -1.0, dtype=np.float32)
            tables.append(_side_columns(part, truth, y, uid_base + rows))
        table = pa.concat_tables(tables).take(
            np.argsort(np.concatenate([pos[pos % 2 == k] for k in (0, 1)]), kind="stable")
        )
        yield images, table


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("e2ecompress", "pythia8mc", "fastjet", "numpy", "numba", "pyarrow", "awkward"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _shard_extra(cfg: DatasetConfig, task: ShardTask) -> dict:
    ident = (task.set, task.split, task.index)
    return {
        "generator": "e2ecompress make-dataset",
        "set": task.set,
        "split": task.split,
        "shard": task.index,
        "settings": cfg.shard_settings(),
        "seeds": {name: derive_seed(cfg.seed, *ident, name) for name in ("quark", "gluon")},
        "n_jets": cfg.jets_per_shard,
    }


def _write_shard(cfg: DatasetConfig, task: ShardTask, out_dir: str) -> dict:
    """Generate and write one shard (atomically); returns its manifest entry."""
    from e2ecompress import io as e2eio

    t0 = time.perf_counter()
    c0 = time.process_time()
    path = Path(out_dir) / task.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = get_layout(cfg.layout)
    extra = _shard_extra(cfg, task)
    batches = (e2eio.Batch(images=imgs, table=tab) for imgs, tab in generate_shard(cfg, task))
    e2eio.write_jets(path, batches, channels=list(layout.channels), layout=layout.name, extra=extra)
    return {
        **_entry(task, extra),
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(time.process_time() - c0, 3),
        "skipped": False,
    }


def _entry(task: ShardTask, extra: dict) -> dict:
    return {
        "path": task.relpath,
        "set": task.set,
        "split": task.split,
        "shard": task.index,
        "n_jets": extra["n_jets"],
        "seeds": extra["seeds"],
    }


def _existing(cfg: DatasetConfig, task: ShardTask, out_dir: str) -> dict | None:
    """Manifest entry of a finished shard made with the same settings, None if absent; error if different."""
    from e2ecompress import io as e2eio

    path = Path(out_dir) / task.relpath
    if not path.exists():
        return None
    meta = e2eio.open_jets(path).metadata or {}
    if (
        meta.get("settings") != json.loads(json.dumps(cfg.shard_settings()))
        or meta.get("split") != task.split
    ):
        raise InputError(path, "exists but was made with different settings; use another output directory")
    return {**_entry(task, meta), "seconds": 0.0, "cpu_seconds": 0.0, "skipped": True}


def _throughput(made: int, wall: float, workers: int, cpu: float) -> dict:
    """Wall-clock rate, and the rate per CPU-second of the shard workers (robust on a shared machine)."""
    return {
        "jets_generated": made,
        "wall_s": round(wall, 2),
        "workers": workers,
        "jets_per_s": round(made / wall, 2) if made else None,
        "jets_per_s_per_worker": round(made / wall / max(workers, 1), 2) if made else None,
        "worker_cpu_s": round(cpu, 2),
        "jets_per_cpu_s": round(made / cpu, 2) if made and cpu else None,
    }


def plan(cfg: DatasetConfig) -> list[ShardTask]:
    return [
        ShardTask(s, split, i)
        for s in cfg.sets
        for split, n in zip(SPLITS, cfg.shards, strict=True)
        for i in range(n)
    ]


def make_dataset(
    cfg: DatasetConfig, out_dir: str | os.PathLike, workers: int = 1, progress: bool = True
) -> dict:
    """Generate every missing shard with `workers` processes and write the manifest. Returns the manifest."""
    from tqdm import tqdm

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    tasks = plan(cfg)
    entries: dict[str, dict] = {}
    todo = []
    for t in tasks:
        e = _existing(cfg, t, out_dir)
        if e is None:
            todo.append(t)
        else:
            entries[t.relpath] = e
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(todo) * cfg.jets_per_shard,
        unit="jet",
        disable=not progress,
        desc=f"make-dataset {cfg.layout}",
    )
    if workers <= 1:
        for t in todo:
            entries[t.relpath] = _write_shard(cfg, t, out_dir)
            bar.update(cfg.jets_per_shard)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futs = [pool.submit(_write_shard, cfg, t, out_dir) for t in todo]
            for f in as_completed(futs):
                e = f.result()
                entries[e["path"]] = e
                bar.update(cfg.jets_per_shard)
    bar.close()
    wall = time.perf_counter() - t0
    made = len(todo) * cfg.jets_per_shard
    manifest = {
        "format": "e2ecompress-dataset",
        "version": 1,
        "layout": cfg.layout,
        "channels": list(get_layout(cfg.layout).channels),
        "settings": {**cfg.shard_settings(), "sets": list(cfg.sets), "shards": list(cfg.shards)},
        "versions": _versions(),
        "shards": [entries[t.relpath] for t in tasks],
        "counts": {
            f"{s}/{sp}": sum(entries[t.relpath]["n_jets"] for t in tasks if (t.set, t.split) == (s, sp))
            for s in cfg.sets
            for sp in SPLITS
        },
        "throughput": _throughput(made, wall, workers, sum(entries[t.relpath]["cpu_seconds"] for t in todo)),
    }
    tmp = Path(out_dir) / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, Path(out_dir) / "manifest.json")
    return manifest
