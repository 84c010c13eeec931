"""Pack / unpack many shards at once, in-process or on a Dask cluster, with a dataset manifest.

from e2ecompress.distributed import pack_many, unpack_many
done = pack_many("data/*.parquet", "packed/", workers=2, max_error=0.01)   # LocalCluster, 2 processes
done = pack_many(files, "packed/", client=Client("tcp://host:8786"), lossless=True)
unpack_many("packed/", "restored/", fmt="hdf5")

One task per shard, each a plain `api.pack` / `api.unpack` call, so every output is byte-identical to packing
that shard alone. Outputs are written atomically (a worker killed mid-shard leaves no partial output); Dask
reruns the tasks of a dead worker elsewhere and retries unexpected exceptions, while user errors (E2EError,
ValueError: a truncated or NaN shard) are deterministic: recorded for their shard, never retried. The
manifest `OUT_DIR/manifest.json` is written last. Dask is imported only when workers > 1 or a client or
scheduler is given.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from e2ecompress import __version__
from e2ecompress.errors import E2EError, InputError, one_line
from e2ecompress.fsutil import json_safe, refuse_overwriting_inputs, write_json

if TYPE_CHECKING:
    from e2ecompress.codec.options import PackOptions

PACK_INPUTS = (".parquet", ".h5", ".hdf5")
PACK_OUTPUT = ".e2ez"
MANIFEST = "manifest.json"
MANIFEST_FORMATS = {"pack": "e2ecompress-packed", "unpack": "e2ecompress-unpacked"}
DEFAULT_RETRIES = 2
_FORMATS = {"parquet": ("parquet", ".parquet"), "h5": ("hdf5", ".h5"), "hdf5": ("hdf5", ".h5")}
_TEMP_GLOBS = (".{name}.partial-*", ".{name}.*.tmp")  # ContainerWriter's and JetWriter's temporary files

Paths = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass
class ShardResult:
    """One shard of a pack_many / unpack_many run: a manifest entry."""

    input: str
    output: str  # relative to the output directory
    status: str  # "ok" or "failed"
    n_jets: int = 0
    bytes: int = 0
    input_bytes: int = 0
    mode: str | None = None
    model_id: str | None = None  # from the .e2ez header; None for modes without a model
    max_abs_error: float | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def bytes_per_jet(self) -> float:
        return self.bytes / max(self.n_jets, 1)

    def line(self, verb: str) -> str:
        if not self.ok:
            return f"{self.input}: {self.error}"
        err = "" if self.max_abs_error is None else f", max |error| {self.max_abs_error:.3g} GeV"
        return (
            f"{self.output}: {verb} {self.n_jets} jets ({self.mode}), "
            f"{self.bytes_per_jet:.1f} bytes/jet{err}, {self.seconds:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_per_jet": self.bytes_per_jet}


@dataclass
class DatasetSummary:
    """What pack_many / unpack_many did; `to_dict()` is the manifest."""

    kind: str  # "pack" or "unpack"
    out_dir: str
    shards: list[ShardResult]
    wall_s: float
    runner: str  # "in-process", "LocalCluster" or the scheduler address
    workers: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[ShardResult]:
        return [s for s in self.shards if not s.ok]

    @property
    def n_jets(self) -> int:
        return sum(s.n_jets for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.out_dir, MANIFEST)

    def totals(self) -> dict[str, Any]:
        return {
            "shards": len(self.shards),
            "ok": len(self.shards) - len(self.failed),
            "failed": len(self.failed),
            "n_jets": self.n_jets,
            "bytes": self.bytes,
            "input_bytes": sum(s.input_bytes for s in self.shards),
            "bytes_per_jet": self.bytes / max(self.n_jets, 1),
            "wall_s": self.wall_s,
            "jets_per_s": self.n_jets / max(self.wall_s, 1e-9),
            "runner": self.runner,
            "workers": self.workers,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMATS[self.kind],
            "version": 1,
            "created_by": f"e2ecompress {__version__}",
            "options": self.options,
            "shards": [s.to_dict() for s in self.shards],
            "totals": self.totals(),
        }

    def line(self) -> str:
        t = self.totals()
        verb = "packed" if self.kind == "pack" else "unpacked"
        failed = f", {t['failed']} FAILED" if t["failed"] else ""
        return (
            f"{self.out_dir}: {verb} {t['ok']}/{t['shards']} shards{failed}, {t['n_jets']} jets, "
            f"{t['bytes']} bytes ({t['bytes_per_jet']:.1f} bytes/jet) in {t['wall_s']:.1f} s "
            f"({t['jets_per_s']:.0f} jets/s, {t['workers']} worker{'s' * (t['workers'] != 1)}, "
            f"{t['runner']}); manifest {self.manifest_path}"
        )


def expand_inputs(inputs: Paths, suffixes: Sequence[str]) -> list[str]:
    """Files named by `inputs`: paths, quoted glob patterns, or directories (their files with one of
    `suffixes`, sorted). Duplicates are dropped; a missing path or an empty match is an InputError."""
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    files: list[str] = []
    for item in map(os.fspath, items):
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, name)
                for name in os.listdir(item)
                if name.lower().endswith(tuple(suffixes)) and os.path.isfile(os.path.join(item, name))
            )
            if not found:
                raise InputError(item, f"no {' / '.join('*' + s for s in suffixes)} files in this directory")
        elif not os.path.exists(item) and glob.has_magic(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not found:
                raise InputError(item, "no files match this pattern")
        elif os.path.exists(item):
            found = [item]
        else:
            raise InputError(item, "no such file")
        files += [f for f in found if f not in files]
    if not files:
        raise InputError(None, "no input files")
    return files


def _pack_shard(label: str, src: str, dst: str, opts: PackOptions) -> ShardResult:
    """The task: one api.pack call. User errors come back as a failed result (deterministic: no retry)."""
    from e2ecompress import api

    def run():
        return api.pack_with(src, dst, opts), _model_id(dst)

    return _attempt(label, dst, run)


def _unpack_shard(label: str, src: str, dst: str, opts: dict[str, Any]) -> ShardResult:
    from e2ecompress import api

    def run():
        model_id = _model_id(src)
        return api.unpack(src, dst, **opts, progress=False), model_id

    return _attempt(label, dst, run)


def _model_id(path: str) -> str | None:
    from e2ecompress.format import ContainerReader

    with ContainerReader(path) as r:
        return (r.header.get("model") or {}).get("id")


def _attempt(label: str, dst: str, run: Callable[[], tuple[Any, str | None]]) -> ShardResult:
    t0 = time.perf_counter()
    name = os.path.basename(dst)
    try:
        s, model_id = run()
    except (E2EError, ValueError) as e:
        return ShardResult(label, name, "failed", seconds=time.perf_counter() - t0, error=one_line(e))
    err = _finite(s.max_abs_error)
    return ShardResult(label, name, "ok", s.n_jets, s.bytes, s.input_bytes, s.mode, model_id, err, s.seconds)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def pack_many(
    inputs: Paths,
    out_dir: str | os.PathLike,
    options: PackOptions | None = None,
    *,
    client: Any = None,
    workers: int = 1,
    scheduler: str | None = None,
    retries: int = DEFAULT_RETRIES,
    on_result: Callable[[ShardResult], None] | None = None,
    **pack_options: Any,
) -> DatasetSummary:
    """Pack every shard of `inputs` (files, glob patterns, directories) into `out_dir/<stem>.e2ez`.

    Runs on `client` (a distributed.Client), else on the cluster at `scheduler`, else on a LocalCluster of
    `workers` single-threaded processes, else (workers=1 or one shard) in this process. The options of
    every shard's api.pack come as a PackOptions or as its keywords (model, quality, max_error, lossless,
    chunk_size, embed_model, ...; not both); paths in them are passed as given, so on a remote cluster give
    them absolute. Failed shards are in the result and the manifest; nothing raises for them.
    """
    from e2ecompress.codec.options import PackOptions

    pack_options.pop("progress", None)  # shards never show a progress bar
    if options is None:
        options = PackOptions(**pack_options)  # TypeError for unknown options, ValueError for bad ones
        record = pack_options
    elif pack_options:
        raise TypeError("give the pack options as a PackOptions or as keywords, not both")
    else:
        record = options.to_dict()
    files = expand_inputs(inputs, PACK_INPUTS)
    run = {"client": client, "workers": workers, "scheduler": scheduler, "retries": retries}
    return _run("pack", _pack_shard, files, PACK_OUTPUT, out_dir, options, record, on_result=on_result, **run)


def unpack_many(
    inputs: Paths,
    out_dir: str | os.PathLike,
    *,
    fmt: str | None = None,
    model: str | os.PathLike | None = None,
    client: Any = None,
    workers: int = 1,
    scheduler: str | None = None,
    retries: int = DEFAULT_RETRIES,
    on_result: Callable[[ShardResult], None] | None = None,
) -> DatasetSummary:
    """Decode every .e2ez file of `inputs` into `out_dir/<stem>.parquet` (or .h5 with fmt "h5" / "hdf5");
    the runners and the manifest are those of pack_many."""
    fmt = fmt or "parquet"
    if fmt not in _FORMATS:
        raise InputError(None, f"unknown format {fmt!r} (known: {', '.join(_FORMATS)})")
    writer_fmt, suffix = _FORMATS[fmt]
    files = expand_inputs(inputs, (PACK_OUTPUT,))
    opts = {"model": None if model is None else os.fspath(model), "fmt": writer_fmt}
    run = {"client": client, "workers": workers, "scheduler": scheduler, "retries": retries}
    return _run("unpack", _unpack_shard, files, suffix, out_dir, opts, opts, on_result=on_result, **run)


def _run(
    kind: str,
    task: Callable[..., ShardResult],
    files: list[str],
    suffix: str,
    out_dir: str | os.PathLike,
    opts: Any,
    record: dict[str, Any],
    *,
    client: Any,
    workers: int,
    scheduler: str | None,
    retries: int,
    on_result: Callable[[ShardResult], None] | None,
) -> DatasetSummary:
    out_dir = os.fspath(out_dir)
    names = [os.path.splitext(os.path.basename(f))[0] + suffix for f in files]
    _check_plan(kind, files, names, out_dir)
    os.makedirs(out_dir, exist_ok=True)
    jobs = [
        (f, os.path.abspath(f), os.path.abspath(os.path.join(out_dir, n)), opts)
        for f, n in zip(files, names, strict=True)
    ]
    results: list[ShardResult | None] = [None] * len(jobs)

    def done(i: int, result: ShardResult) -> None:
        results[i] = result
        if on_result is not None:
            on_result(result)

    t0 = time.perf_counter()
    with _connect(client, workers, scheduler, len(jobs)) as (dask_client, runner, n_workers):
        if dask_client is None:
            for i, job in enumerate(jobs):
                done(i, task(*job))
        else:
            for i, result in _submit(dask_client, task, kind, jobs, retries):
                done(i, result)
    wall = time.perf_counter() - t0
    _remove_temp_files(out_dir, names)
    summary = DatasetSummary(kind, out_dir, list(results), wall, runner, n_workers, json_safe(record))
    _write_manifest(summary)
    return summary


def _check_plan(kind: str, files: list[str], names: list[str], out_dir: str) -> None:
    """Refuse, before anything runs, what would overwrite other work: one output for two shards, a file
    where the output directory should be, or a manifest.json that is not one of ours."""
    seen: dict[str, str] = {}
    for f, n in zip(files, names, strict=True):
        if n in seen:
            raise InputError(f, f"would write {n}, as {seen[n]} does; rename one of them")
        seen[n] = f
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(out_dir, "is a file; many shards need an output directory")
    refuse_overwriting_inputs(files, [os.path.join(out_dir, n) for n in names])
    if not os.path.exists(out_dir) and os.path.splitext(out_dir)[1].lower() in (*PACK_INPUTS, PACK_OUTPUT):
        raise InputError(out_dir, "many shards need an output directory, not a file name")
    manifest = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest):
        try:
            with open(manifest, encoding="utf-8") as fh:
                current = json.load(fh).get("format")
        except (OSError, ValueError, AttributeError):
            current = None
        if current != MANIFEST_FORMATS[kind]:
            raise InputError(
                manifest, f"exists and is not an e2ecompress {kind} manifest; choose another directory"
            )


@contextlib.contextmanager
def _connect(client: Any, workers: int, scheduler: str | None, n_jobs: int) -> Iterator[tuple[Any, str, int]]:
    """(client or None, runner name, worker count) for a run; closes what it opened."""
    if client is not None:
        yield client, _address(client), _n_workers(client)
        return
    if scheduler is None and (workers <= 1 or n_jobs <= 1):
        yield None, "in-process", 1
        return
    from e2ecompress._extras import require

    require("--workers / --scheduler", "dist")
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            c = Client(scheduler)
        except (OSError, TimeoutError, ValueError) as e:
            raise E2EError(f"{scheduler}: cannot connect to the Dask scheduler ({one_line(e)})") from None
        with c:
            yield c, scheduler, _n_workers(c)
        return
    n = min(workers, n_jobs)
    with (
        LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c, "LocalCluster", n


def _address(client: Any) -> str:
    return str(client.scheduler.address) if client.scheduler is not None else "dask"


def _n_workers(client: Any) -> int:
    return len(client.scheduler_info().get("workers", {}))


def _submit(client: Any, task: Callable[..., ShardResult], kind: str, jobs: list[tuple], retries: int):
    """(index, result) as tasks finish. A task that still raises after `retries` retries (or whose
    workers kept dying: distributed.scheduler.allowed-failures) becomes a failed result."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    futures = {}
    for i, job in enumerate(jobs):
        key = f"e2ecompress-{kind}-{os.path.basename(job[2])}-{run}"
        futures[client.submit(task, *job, key=key, pure=False, retries=retries)] = i
    try:
        for future in as_completed(futures):
            i = futures[future]
            if future.status == "finished":
                yield i, future.result()
                continue
            error = f"task {future.status}"
            if future.status == "error":
                exc = future.exception()
                error = f"{type(exc).__name__}: {one_line(exc)}"
            label, dst = jobs[i][0], jobs[i][2]
            yield i, ShardResult(label, os.path.basename(dst), "failed", error=error)
    finally:
        client.cancel(list(futures))


def _remove_temp_files(out_dir: str, names: list[str]) -> None:
    """Temporary files of this run's outputs left by killed workers (safe: every task has finished)."""
    for name in names:
        for pattern in _TEMP_GLOBS:
            for path in glob.glob(os.path.join(glob.escape(out_dir), pattern.format(name=glob.escape(name)))):
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _write_manifest(summary: DatasetSummary) -> None:
    write_json(summary.manifest_path, summary.to_dict(), indent=2, sort_keys=False, fsync=True)
