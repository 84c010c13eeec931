"""Python API of the .e2ez codec, mirroring the CLI: pack, unpack, read, inspect.

from e2ecompress import api
summary = api.pack("events.parquet", "events.e2ez", max_error=0.01)
api.unpack("events.e2ez", "restored.parquet")
batch = api.read("events.e2ez", 100, 200)      # random access: decodes only the chunks it needs
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from e2ecompress import __version__, _core
from e2ecompress.codec import models, physics_check
from e2ecompress.codec.budget import add_streams, per_jet
from e2ecompress.codec.header import PackHeader
from e2ecompress.codec.image import CodecConfig, ImageCodec
from e2ecompress.codec.models import DEFAULT_MODEL
from e2ecompress.codec.options import DEFAULT_CHUNK, PackOptions
from e2ecompress.codec.options import DEFAULT_LEVEL as DEFAULT_LEVEL  # the physics level of a plain pack
from e2ecompress.codec.options import DEFAULT_QUALITY as DEFAULT_QUALITY  # the latent codec's level
from e2ecompress.codec.options import make_config as make_config
from e2ecompress.errors import DecodeError, E2EError, InputError, one_line
from e2ecompress.format import ContainerReader, ContainerWriter
from e2ecompress.fsutil import refuse_overwriting_inputs
from e2ecompress.io import Batch, open_jets, open_writer
from e2ecompress.io.base import METADATA_KEY, format_from_suffix
from e2ecompress.io.batch import BufferRing

_RESERVED_META = ("format", "version", "layout", "channels", "image_shape")


@dataclass
class Summary:
    """What pack / unpack did, for the one-line report and for benchmarks."""

    path: str
    n_jets: int
    mode: str
    bytes: int
    raw_bytes: int
    input_bytes: int
    max_abs_error: float
    seconds: float
    image_bytes: int = 0  # pack: the coded image streams alone (the rest is other columns and framing)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (see profile_line)

    @property
    def bytes_per_jet(self) -> float:
        return self.bytes / max(self.n_jets, 1)

    @property
    def jets_per_s(self) -> float:
        return self.n_jets / max(self.seconds, 1e-9)

    def line(self, verb: str = "packed") -> str:
        """One line for the CLI. pack: bytes/jet and the size against raw float32 and the input file;
        unpack: the sizes of the .e2ez read and of the file written."""
        tail = (
            f"max |error| {self.max_abs_error:.3g} GeV, {self.seconds:.1f} s ({self.jets_per_s:.0f} jets/s)"
        )
        if verb == "unpacked":
            return (
                f"{self.path}: unpacked {self.n_jets} jets ({self.mode}) from a {_size(self.input_bytes)} "
                f".e2ez file into {_size(self.bytes)}, {tail}"
            )
        ratio_raw = self.raw_bytes / max(self.bytes, 1)
        ratio_in = self.input_bytes / max(self.bytes, 1)
        images = f" (images {self.image_bytes / max(self.n_jets, 1):.1f})" if self.image_bytes else ""
        return (
            f"{self.path}: {verb} {self.n_jets} jets ({self.mode}), "
            f"{self.bytes_per_jet:.1f} bytes/jet{images}, {_size(self.bytes)} from {_size(self.input_bytes)} "
            f"({ratio_in:.2f}x smaller than the input file, {ratio_raw:.0f}x smaller than raw float32), "
            f"{tail}"
        )

    def profile_line(self) -> str:
        """Where the time went: seconds per stage; "read" / "decode" count only the waits for the
        background thread that reads (pack) or decodes (unpack) ahead."""
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())
        return f"  time: {parts} (total {self.seconds:.2f} s)"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_per_jet": self.bytes_per_jet, "jets_per_s": self.jets_per_s}


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_header(f) -> dict[str, Any]:
    """How the input held its images, so that unpack writes them back the same way: the pixel dtype, and
    for parquet the X_jets field (its exact Arrow type, as a serialized schema) and its column position."""
    info: dict[str, Any] = {"dtype": np.dtype(f.pixel_dtype).str}
    field = getattr(f, "image_field", None)
    if field is not None:
        info["field"] = _b64(pa.schema([field]).serialize().to_pybytes())
        info["index"] = int(f.image_index)
    return info


def _writer_options(header: PackHeader, fmt: str) -> dict[str, Any]:
    """Writer options that restore the packed file's image column type and other columns' schema
    (headers of files written before these keys existed give the defaults)."""
    opts: dict[str, Any] = {}
    if header.columns_schema is not None:
        opts["schema"] = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(header.columns_schema)))
    image = header.image or {}
    if fmt == "parquet" and "field" in image:
        opts["image_field"] = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(image["field"]))).field(0)
        opts["image_index"] = int(image.get("index", 0))
    elif fmt == "hdf5" and "dtype" in image:
        opts["image_dtype"] = np.dtype(image["dtype"])
    return opts


def _progress(total: int, desc: str, enabled: bool):
    from e2ecompress._extras import progress_bar

    return progress_bar(total, desc, enabled, unit="jet", leave=False, dynamic_ncols=True)


def pack(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    quality: int | None = None,
    max_error: float | None = None,
    lossless: bool = False,
    latent: bool = False,
    predictor: str = "none",
    keep_fraction: float = 1.0,
    unbiased: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    embed_model: bool = False,
    verify: bool = True,
    channels: Any = None,
    progress: bool = False,
) -> Summary:
    """Compress a parquet / HDF5 jet file into an .e2ez file; see docs/FORMAT.md.

    With no mode chosen the images are coded at physics level DEFAULT_LEVEL; quality picks another
    physics level, or with latent=True a level of the learned latent codec. Physics, bounded and lossless
    packs decode every chunk they wrote and check it (`physics_check`: exact positions in the cone, its
    sums and relative bound; |x - x'| <= max_error; bit-exact) before the file is committed; nothing is
    left at dst on any failure. unbiased (bounded):
    non-zero pixels stay non-zero and tower (block) energies are within max_error as a whole.
    The options are those of `PackOptions`; `pack_with` takes them as one object.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    refuse_overwriting_inputs([src], [dst])
    options = PackOptions(
        model=model,
        quality=quality,
        max_error=max_error,
        lossless=lossless,
        latent=latent,
        predictor=predictor,
        keep_fraction=keep_fraction,
        unbiased=unbiased,
        chunk_size=chunk_size,
        embed_model=embed_model,
        channels=channels,
        verify=verify,
    )
    return _pack(src, dst, options, progress)


def pack_with(
    src: str | os.PathLike, dst: str | os.PathLike, options: PackOptions, *, progress: bool = False
) -> Summary:
    """`pack` with its options as a PackOptions (checked when it was made)."""
    src, dst = os.fspath(src), os.fspath(dst)
    refuse_overwriting_inputs([src], [dst])
    return _pack(src, dst, options, progress)


def _pack(src: str, dst: str, options: PackOptions, progress: bool) -> Summary:
    config = options.config()
    verify = options.verify
    t0 = time.perf_counter()
    clock = _Clock()
    with open_jets(src, options.channels) as f:
        names = f.channel_names
        latent = models.load(options.model or DEFAULT_MODEL) if config.uses_model else None
        codec = ImageCodec(config, names, f.image_shape[1:], latent)
        header = PackHeader(
            layout=f.layout,
            channels=tuple(names),
            channels_known=f.channels is not None,
            shape=tuple(f.image_shape),
            codec=config,
            image=image_header(f),
            columns_schema=_b64(f.other_schema.serialize().to_pybytes()),
            model=None if latent is None else _model_entry(latent, options, codec),
            source={
                "name": os.path.basename(src),
                "format": f.format,
                "bytes": os.path.getsize(src),
                "metadata": {k: v for k, v in f.metadata.items() if k not in _RESERVED_META},
            },
            created_by=f"e2ecompress {__version__}",
        )
        max_err, max_rel, image_bytes = 0.0, 0.0, 0
        with ContainerWriter(dst, header.to_dict()) as writer, _progress(f.n_jets, "pack", progress) as bar:
            coded32 = config.mode in ("lossy", "physics")
            dtype = "float32" if coded32 else f.exact_dtype  # lossy and physics code float32
            scratch = BufferRing(1)  # decoded chunks are only checked: one buffer, reused
            batches = _prefetch(f.iter_batches(options.chunk_size, dtype=dtype, reuse=2))
            for batch in clock.iterate("read", batches):
                check = verify and config.mode != "lossy"
                try:
                    with clock("encode"):
                        streams, rec = codec.compress(batch.images, decoded=config.mode == "lossy")
                except E2EError as e:
                    if isinstance(e, InputError):
                        raise
                    where = f"jets {batch.start}..{batch.start + len(batch) - 1}"
                    raise E2EError(f"{src}: {where}: {e}") from None
                with clock("verify"):
                    if config.mode != "lossy":
                        shape = (len(batch), *f.image_shape)
                        # decompressed as unpack does
                        rec = codec.decompress(streams, len(batch), scratch.empty(shape, np.float32))
                    if config.mode == "physics":
                        rel, err = _check_physics(rec, batch, codec, dst, verify)
                        max_rel = max(max_rel, rel)
                    else:
                        err = _check(rec, batch, config, dst, check)
                    max_err = max(max_err, err)
                with clock("write"):
                    writer.write_chunk(len(batch), streams, batch.table)
                image_bytes += sum(len(v) for v in streams.values())
                bar.update(len(batch))
            if latent is not None and options.embed_model:
                for name, data in models.attachments(latent).items():
                    writer.add_attachment(name, data)
            n = f.n_jets
            raw = n * int(np.prod(f.image_shape)) * 4
            footer = {"n_jets": n, "max_abs_error": max_err}
            if config.mode == "physics":  # both inside the cone only
                footer["max_rel_error"] = max_rel
            writer.close(footer_meta=footer)
    return Summary(
        dst,
        n,
        config.mode,
        os.path.getsize(dst),
        raw,
        os.path.getsize(src),
        max_err,
        time.perf_counter() - t0,
        image_bytes,
        clock.seconds,
    )


def _model_entry(latent, options: PackOptions, codec: ImageCodec) -> dict[str, Any]:
    """The header's record of the latent model a file was packed with."""
    return {
        "id": latent.model_id,
        "name": os.fspath(options.model or DEFAULT_MODEL),
        "level": codec.level,
        "normalization": latent.normalizer.to_dict(),
        "embedded": bool(options.embed_model),
    }


class _Clock:
    """Seconds spent per named stage: `with clock("encode"):` or `for x in clock.iterate("read", it):`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

    def iterate(self, name: str, items: Iterator[Any]) -> Iterator[Any]:
        while True:
            with self(name):
                item = next(items, _DONE)
            if item is _DONE:
                return
            yield item


_DONE = object()


def _prefetch(batches: Iterator[Batch]) -> Iterator[Batch]:
    """Read the next batch in a background thread while the current one is coded (Arrow and the
    kernels release the GIL, so reading and coding overlap on two cores). Batch k + 2 is requested only
    when the consumer asks for batch k + 1, so two recycled buffers (reuse=2) are enough."""
    from concurrent.futures import ThreadPoolExecutor

    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="e2ez-read") as pool:
        future = pool.submit(next, batches, done)
        while True:
            batch = future.result()
            if batch is done:
                return
            future = pool.submit(next, batches, done)
            yield batch


def _check(dec: np.ndarray, batch: Batch, config: CodecConfig, dst: str, verify: bool) -> float:
    """Max |error| of the decoded chunk; with verify, also check zeros stay zeros and the bound (or
    bit-exactness), raising before anything is committed. One pass in C++ (GIL released)."""
    x = batch.images
    d = dec if dec.dtype == np.float32 or x.dtype == np.float64 else dec.astype(np.float32)
    bound = 0.0 if config.mode == "lossless" else float(np.float32(config.max_error))
    err, false_nonzero, bits_differ, first = _core.compare(x, d, bound)
    if not verify:
        return err
    where = f"jets {batch.start}..{batch.start + len(batch) - 1}"
    if false_nonzero:
        raise E2EError(f"{dst}: decoded non-zero pixels where the input is zero ({where}); nothing written")
    exact = config.mode != "lossless" or (d.dtype == x.dtype and bits_differ == 0)
    if first >= 0 or not exact:
        raise E2EError(
            f"{dst}: {where} decode with error {err:.3g} above the bound {bound:g} "
            "(float32 precision; use a larger --max-error or --lossless); nothing written"
        )
    return err


def _check_physics(dec: np.ndarray, batch: Batch, codec: ImageCodec, dst: str, verify: bool):
    """(max relative, max absolute error) inside the cone of a chunk decoded at a physics level; with
    verify, E2EError naming the file and the jets unless it keeps what the level promises."""
    try:
        return physics_check.check(batch.images, dec, codec.physics.level)
    except E2EError as e:
        if not verify:
            return math.nan, math.nan
        where = f"jets {batch.start}..{batch.start + len(batch) - 1}"
        raise E2EError(f"{dst}: {where}: {e}; nothing written") from None


class Reader:
    """An open .e2ez file: header, per-chunk decoding, random access. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, model: str | os.PathLike | None = None):
        self.path = os.fspath(path)
        self._container = ContainerReader(self.path)
        try:
            self.header = self._container.header  # the JSON, as inspect shows it
            self.pack_header = PackHeader.from_dict(self.header)
            self.config = self.pack_header.codec
            self.channels = self.pack_header.channels
            self.shape = self.pack_header.shape
            latent = self._latent(model) if self.config.uses_model else None
            self.codec = ImageCodec(self.config, self.channels, self.shape[1:], latent)
        except (KeyError, TypeError, ValueError) as e:
            self.close()
            if isinstance(e, E2EError):
                raise
            raise DecodeError(f"{self.path}: bad header ({e})") from None
        except BaseException:
            self.close()
            raise

    def _latent(self, model):
        want = self.pack_header.model["id"]
        c = self._container
        latent = models.from_attachments(c.attachment_names, c.attachment) if model is None else None
        where = "embedded" if latent is not None else model or "default"
        if latent is None:
            latent = models.load(model or self.pack_header.model["name"])
        if latent.model_id != want:
            raise InputError(
                self.path,
                f"was packed with model {want[:12]}, not {latent.model_id[:12]} ({where}); "
                "pass the right --model",
            )
        return latent

    @property
    def n_jets(self) -> int:
        return self._container.n_jets

    def iter_batches(self, start: int = 0, stop: int | None = None, reuse: int = 0) -> Iterator[Batch]:
        """Decoded batches (one per chunk, trimmed to [start, stop)). reuse=k > 0 decodes into k recycled
        buffers: a batch's images are overwritten k batches later (for pipelines, see BufferRing)."""
        stop = self.n_jets if stop is None else stop
        if not 0 <= start <= stop <= self.n_jets:
            raise ValueError(f"range [{start}, {stop}) outside 0..{self.n_jets}")
        ring = BufferRing(reuse)
        for chunk in self._container.iter_chunks(start, stop):
            try:
                out = ring.empty((chunk.n_jets, *self.shape), np.float32) if reuse else None
                images = self.codec.decompress(chunk.streams, chunk.n_jets, out)
            except DecodeError as e:
                raise DecodeError(f"{self.path}: chunk {chunk.index}: {e}") from None
            batch = Batch(images, chunk.table, chunk.start, str(images.dtype))
            lo, hi = max(start - chunk.start, 0), min(stop - chunk.start, chunk.n_jets)
            yield batch if (lo, hi) == (0, chunk.n_jets) else batch.slice(lo, hi)

    def read(self, start: int = 0, stop: int | None = None) -> Batch:
        batches = list(self.iter_batches(start, stop))
        if not batches:
            table = None  # keep the columns of an empty range
            if self._container.n_chunks:
                table = self._container.read_chunk(0).table.slice(0, 0)
            elif self.pack_header.columns_schema is not None:
                table = _writer_options(self.pack_header, "")["schema"].empty_table()
            return Batch(np.zeros((0, *self.shape), np.float32), table, start)
        return batches[0] if len(batches) == 1 else Batch.concat(batches)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_e2ez(path: str | os.PathLike, model: str | os.PathLike | None = None) -> Reader:
    return Reader(path, model)


def read(path: str | os.PathLike, start: int = 0, stop: int | None = None, model=None) -> Batch:
    """Jets [start, stop) of an .e2ez file, decoding only the chunks that hold them."""
    with Reader(path, model) as r:
        return r.read(start, stop)


def inspect(path: str | os.PathLike, budget: bool = True) -> dict[str, Any]:
    """Header, footer and sizes of an .e2ez file, without decoding images (no model needed).

    budget: also read every chunk (not decoding images) for the bytes/jet of each component: positions
    and values per channel, the other coded streams, side columns, and framing (the rest of the file)."""
    with ContainerReader(os.fspath(path)) as c:
        n = c.n_jets
        shape = c.header.get("shape", [0])
        info = {
            "path": os.fspath(path),
            "n_jets": n,
            "bytes": c.file_size,
            "bytes_per_jet": c.file_size / max(n, 1),
            "ratio_vs_raw": n * int(np.prod(shape)) * 4 / max(c.file_size, 1),
            "n_chunks": c.n_chunks,
            "chunks": [ch.n_jets for ch in c.chunks][:8],
            "header": c.header,
            "footer": c.footer_meta,
            "attachments": list(c.attachment_names),
        }
        if budget:
            totals: dict[str, int] = {}
            side = 0
            for chunk in c.iter_chunks():
                add_streams(totals, {k: len(v) for k, v in chunk.streams.items()}, c.header.get("channels"))
                side += chunk.table_bytes
            images = sum(totals.values())
            totals["side columns"] = side
            totals["framing"] = c.file_size - images - side
            info["image_bytes_per_jet"] = images / max(n, 1)
            info["budget"] = per_jet(totals, n)
        return info


def unpack(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    fmt: str | None = None,
    progress: bool = False,
) -> Summary:
    """Decode an .e2ez file into parquet or HDF5 (by suffix or fmt) with the input's other columns."""
    src, dst = os.fspath(src), os.fspath(dst)
    refuse_overwriting_inputs([src], [dst])
    t0 = time.perf_counter()
    clock = _Clock()
    with Reader(src, model) as r:
        h = r.pack_header
        extra = dict(h.source.get("metadata") or {})
        extra.pop(METADATA_KEY, None)
        channels = list(r.channels) if h.channels_known else None
        max_err = float((r._container.footer_meta or {}).get("max_abs_error", math.nan))
        fmt = format_from_suffix(dst, fmt)
        try:
            options = _writer_options(h, fmt)
        except (pa.ArrowException, ValueError, TypeError) as e:
            raise DecodeError(f"{src}: bad header ({one_line(e)})") from None
        with (
            open_writer(
                dst, channels, layout=h.layout, extra=extra, fmt=fmt, image_shape=r.shape, **options
            ) as w,
            _progress(r.n_jets, "unpack", progress) as bar,
        ):
            for batch in clock.iterate("decode", _prefetch(r.iter_batches(reuse=2))):
                with clock("write"):
                    w.write(batch)
                bar.update(len(batch))
        n = r.n_jets
    return Summary(
        dst,
        n,
        r.config.mode,
        os.path.getsize(dst),
        n * int(np.prod(r.shape)) * 4,
        os.path.getsize(src),
        max_err,
        time.perf_counter() - t0,
        timings=clock.seconds,
    )
