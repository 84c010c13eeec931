"""Python API of the .e2ez codec, mirroring the CLI: pack, unpack, read, inspect.

from e2ecompress import api
summary = api.pack("events.parquet", "events.e2ez", max_error=0.01)
api.unpack("events.e2ez", "restored.parquet")
batch = api.read("events.e2ez", 100, 200)      # random access: decodes only the chunks it needs
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e2ecompress import __version__
from e2ecompress.codec.image import CodecConfig, ImageCodec
from e2ecompress.errors import DecodeError, E2EError, InputError
from e2ecompress.format import ContainerReader, ContainerWriter
from e2ecompress.io import Batch, open_jets, open_writer
from e2ecompress.io.base import METADATA_KEY

DEFAULT_MODEL = "latent_qg3_default"
DEFAULT_QUALITY = 3
DEFAULT_CHUNK = 512
MODEL_FILES = ("model.safetensors", "checkpoint.json")
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

    @property
    def bytes_per_jet(self) -> float:
        return self.bytes / max(self.n_jets, 1)

    @property
    def jets_per_s(self) -> float:
        return self.n_jets / max(self.seconds, 1e-9)

    def line(self, verb: str = "packed") -> str:
        ratio_raw = self.raw_bytes / max(self.bytes, 1)
        ratio_in = self.input_bytes / max(self.bytes, 1)
        images = f" (images {self.image_bytes / max(self.n_jets, 1):.1f})" if self.image_bytes else ""
        return (
            f"{self.path}: {verb} {self.n_jets} jets ({self.mode}), "
            f"{self.bytes_per_jet:.1f} bytes/jet{images}, "
            f"{ratio_raw:.0f}x smaller than raw float32, {ratio_in:.2f}x vs the input file, "
            f"max |error| {self.max_abs_error:.3g} GeV, {self.seconds:.1f} s ({self.jets_per_s:.0f} jets/s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_per_jet": self.bytes_per_jet, "jets_per_s": self.jets_per_s}


def make_config(
    *, quality: int | None = None, max_error: float | None = None, lossless: bool = False, **kw: Any
) -> CodecConfig:
    """The CodecConfig for CLI-style options (at most one of quality / max_error / lossless)."""
    if sum(x is not None and x is not False for x in (quality, max_error, lossless)) > 1:
        raise ValueError("choose one of quality, max_error and lossless")
    if lossless:
        return CodecConfig(mode="lossless", **kw)
    if max_error is not None:
        return CodecConfig(mode="bounded", max_error=float(max_error), **kw)
    return CodecConfig(mode="lossy", quality=DEFAULT_QUALITY if quality is None else int(quality), **kw)


def _load_latent(name_or_path: str | os.PathLike):
    from e2ecompress._extras import require

    require("the learned latent codec (lossy mode, --predictor model)", "ml", ("torch", "safetensors"))
    from e2ecompress.codec.latent import LatentCodec

    try:
        return LatentCodec.load(name_or_path)
    except E2EError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise InputError(os.fspath(name_or_path), f"cannot load the model ({e})") from None


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
    predictor: str = "none",
    keep_fraction: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK,
    embed_model: bool = False,
    verify: bool = True,
    channels: Any = None,
    progress: bool = False,
) -> Summary:
    """Compress a parquet / HDF5 jet file into an .e2ez file; see docs/FORMAT.md.

    Bounded and lossless packs decode every chunk they wrote and check it (|x - x'| <= max_error, or
    bit-exact) before the file is committed; nothing is left at dst on any failure.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    config = make_config(
        quality=quality,
        max_error=max_error,
        lossless=lossless,
        predictor=predictor,
        keep_fraction=keep_fraction,
    )
    t0 = time.perf_counter()
    with open_jets(src, channels) as f:
        names = f.channel_names
        latent = _load_latent(model or DEFAULT_MODEL) if config.uses_model else None
        codec = ImageCodec(config, names, f.image_shape[1:], latent)
        header = {
            "layout": f.layout,
            "channels": list(names),
            "channels_known": f.channels is not None,
            "shape": list(f.image_shape),
            "codec": config.to_dict(),
            "model": None,
            "source": {
                "name": os.path.basename(src),
                "format": f.format,
                "bytes": os.path.getsize(src),
                "metadata": {k: v for k, v in f.metadata.items() if k not in _RESERVED_META},
            },
            "created_by": f"e2ecompress {__version__}",
        }
        if latent is not None:
            header["model"] = {
                "id": latent.model_id,
                "name": os.fspath(model or DEFAULT_MODEL),
                "level": codec.level,
                "normalization": latent.normalizer.to_dict(),
                "embedded": bool(embed_model),
            }
        max_err, image_bytes = 0.0, 0
        with ContainerWriter(dst, header) as writer, _progress(f.n_jets, "pack", progress) as bar:
            for batch in _prefetch(f.iter_batches(chunk_size)):
                check = verify and config.mode != "lossy"
                streams, rec = codec.encode(batch.images, decoded=config.mode == "lossy")
                if config.mode != "lossy":
                    rec = codec.decode(streams, len(batch))  # what unpack will produce
                max_err = max(max_err, _check(rec, batch, config, dst, check))
                writer.write_chunk(len(batch), streams, batch.table)
                image_bytes += sum(len(v) for v in streams.values())
                bar.update(len(batch))
            if latent is not None and embed_model:
                for name in MODEL_FILES:
                    writer.add_attachment(f"model/{name}", (Path(latent.path) / name).read_bytes())
            n = f.n_jets
            raw = n * int(np.prod(f.image_shape)) * 4
            writer.close(footer_meta={"n_jets": n, "max_abs_error": max_err})
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
    )


def _prefetch(batches: Iterator[Batch]) -> Iterator[Batch]:
    """Read the next batch in a background thread while the current one is coded (Arrow and the
    kernels release the GIL, so reading and coding overlap on two cores)."""
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
    bit-exactness), raising before anything is committed. Works on the non-zero pixels only."""
    x = batch.images.reshape(-1)
    d = dec.reshape(-1)
    nz = np.flatnonzero(x)
    err = float(np.max(np.abs(d[nz] - x[nz]))) if nz.size else 0.0
    if not verify:
        return err
    where = f"jets {batch.start}..{batch.start + len(batch) - 1}"
    dnz = np.flatnonzero(d)
    if dnz.size and np.any(x[dnz] == 0):
        raise E2EError(f"{dst}: decoded non-zero pixels where the input is zero ({where}); nothing written")
    bound = 0.0 if config.mode == "lossless" else float(np.float32(config.max_error))
    exact = config.mode != "lossless" or np.array_equal(d.view(np.uint32), x.view(np.uint32))
    if err > bound or not exact:
        raise E2EError(
            f"{dst}: {where} decode with error {err:.3g} above the bound {bound:g} "
            "(float32 precision; use a larger --max-error or --lossless); nothing written"
        )
    return err


class Reader:
    """An open .e2ez file: header, per-chunk decoding, random access. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, model: str | os.PathLike | None = None):
        self.path = os.fspath(path)
        self._container = ContainerReader(self.path)
        self._tmp: tempfile.TemporaryDirectory | None = None
        try:
            self.header = self._container.header
            self.config = CodecConfig.from_dict(self.header["codec"])
            self.channels = tuple(self.header["channels"])
            self.shape = tuple(int(s) for s in self.header["shape"])
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
        want = self.header["model"]["id"]
        if model is None and "model/model.safetensors" in self._container.attachment_names:
            self._tmp = tempfile.TemporaryDirectory(prefix="e2ez-model-")
            for name in MODEL_FILES:
                Path(self._tmp.name, name).write_bytes(self._container.attachment(f"model/{name}"))
            model = self._tmp.name
        latent = _load_latent(model or self.header["model"]["name"])
        if latent.model_id != want:
            raise InputError(
                self.path,
                f"was packed with model {want[:12]}, not {latent.model_id[:12]} ({model or 'default'}); "
                "pass the right --model",
            )
        return latent

    @property
    def n_jets(self) -> int:
        return self._container.n_jets

    def iter_batches(self, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        """Decoded batches (one per chunk, trimmed to [start, stop))."""
        stop = self.n_jets if stop is None else stop
        if not 0 <= start <= stop <= self.n_jets:
            raise ValueError(f"range [{start}, {stop}) outside 0..{self.n_jets}")
        for chunk in self._container.iter_chunks(start, stop):
            try:
                images = self.codec.decode(chunk.streams, chunk.n_jets)
            except DecodeError as e:
                raise DecodeError(f"{self.path}: chunk {chunk.index}: {e}") from None
            batch = Batch(images, chunk.table, chunk.start)
            lo, hi = max(start - chunk.start, 0), min(stop - chunk.start, chunk.n_jets)
            yield batch if (lo, hi) == (0, chunk.n_jets) else batch.slice(lo, hi)

    def read(self, start: int = 0, stop: int | None = None) -> Batch:
        batches = list(self.iter_batches(start, stop))
        if not batches:
            table = None
            if self._container.n_chunks:  # keep the columns of an empty range
                table = self._container.read_chunk(0).table.slice(0, 0)
            return Batch(np.zeros((0, *self.shape), np.float32), table, start)
        return batches[0] if len(batches) == 1 else Batch.concat(batches)

    def close(self) -> None:
        self._container.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

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


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """Header, footer and sizes of an .e2ez file, without decoding it (no model needed)."""
    with ContainerReader(os.fspath(path)) as c:
        n = c.n_jets
        shape = c.header.get("shape", [0])
        return {
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
    t0 = time.perf_counter()
    with Reader(src, model) as r:
        h = r.header
        extra = dict(h.get("source", {}).get("metadata") or {})
        extra.pop(METADATA_KEY, None)
        channels = list(r.channels) if h.get("channels_known", True) else None
        max_err = float((r._container.footer_meta or {}).get("max_abs_error", math.nan))
        with (
            open_writer(
                dst, channels, layout=h.get("layout"), extra=extra, fmt=fmt, image_shape=r.shape
            ) as w,
            _progress(r.n_jets, "unpack", progress) as bar,
        ):
            for batch in r.iter_batches():
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
    )
