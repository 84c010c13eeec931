"""Shared parts of the jet readers and writers: metadata, input checks, batching, atomic writes."""

from __future__ import annotations

import json
import os
import secrets
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from e2ecompress.errors import InputError, one_line
from e2ecompress.fsutil import remove_stale_temps
from e2ecompress.io.batch import Batch, BufferRing
from e2ecompress.layouts import IMAGE_SIZE, Layout, get_layout

METADATA_KEY = "e2ecompress"
FORMAT_NAME = "e2e-jets"
FORMAT_VERSION = 1
PARQUET_MAGIC = b"PAR1"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_RESERVED = ("format", "version", "layout", "channels", "image_shape")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5"}

ChannelsArg = Sequence[str] | str | None


def sniff_format(path: str) -> str:
    """'parquet' or 'hdf5' from the file's first bytes; InputError for anything else."""
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    if os.path.isdir(path):
        raise InputError(path, "is a directory, not a file")
    if not os.path.isfile(path):
        raise InputError(path, "not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or one_line(e)})") from None
    if not head:
        raise InputError(path, "empty file")
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    raise InputError(path, f"not a parquet or HDF5 file (starts with {head[:4]!r})")


def format_from_suffix(path: str, fmt: str | None) -> str:
    """The output format: `fmt` when given, else from the file suffix."""
    if fmt is not None:
        if fmt not in ("parquet", "hdf5"):
            raise InputError(path, f"unknown format {fmt!r} (known: parquet, hdf5)")
        return fmt
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SUFFIXES:
        raise InputError(path, f"cannot tell the format from suffix {suffix!r}; use .parquet or .h5")
    return _SUFFIXES[suffix]


def channel_names(channels: Sequence[str] | None, n: int) -> tuple[str, ...]:
    """Names for display: the real ones, or ch0, ch1, ... when the order is unknown."""
    return tuple(channels) if channels is not None else tuple(f"ch{i}" for i in range(n))


def _as_channels(channels: ChannelsArg) -> tuple[str, ...] | None:
    if channels is None:
        return None
    if isinstance(channels, str):  # a layout name, never a string of one-letter channels
        return get_layout(channels).channels
    return tuple(str(c) for c in channels)


def resolve_channels(
    path: str, given: ChannelsArg, from_file: Sequence[str] | None, n: int
) -> tuple[str, ...] | None:
    """The channel order of a file being read: given by the caller, recorded in it, or unknown."""
    given = _as_channels(given)
    if given is not None:
        if len(given) != n:
            raise InputError(
                path, f"{len(given)} channels given ({', '.join(given)}) but the images have {n}"
            )
        if from_file is not None and tuple(from_file) != given:
            raise InputError(
                path, f"channels given ({', '.join(given)}) differ from the file's ({', '.join(from_file)})"
            )
        return given
    if from_file is not None:
        if len(from_file) != n:
            raise InputError(path, f"metadata lists {len(from_file)} channels but the images have {n}")
        return tuple(from_file)
    return None


def make_metadata(
    channels: Sequence[str] | None,
    image_shape: Sequence[int],
    layout: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON header of files we write (parquet schema metadata / HDF5 root attribute)."""
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "layout": layout,
        "channels": None if channels is None else list(channels),
        "image_shape": [int(s) for s in image_shape],
    }
    if extra:
        clash = sorted(set(extra) & set(_RESERVED))
        if clash:
            raise ValueError(f"extra metadata must not set {', '.join(clash)}")
        meta.update(extra)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra metadata must be JSON-serialisable: {e}") from None
    return meta


def parse_metadata(path: str, raw: bytes | str | None) -> dict[str, Any]:
    """The header of a file we wrote, checked; {} for files without one (public files)."""
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InputError(path, f"metadata {METADATA_KEY!r} is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise InputError(path, f"metadata {METADATA_KEY!r} is not an {FORMAT_NAME} header")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise InputError(path, f"metadata has a bad format version {version!r}")
    if version > FORMAT_VERSION:
        raise InputError(
            path, f"format version {version} is newer than this e2ecompress reads ({FORMAT_VERSION})"
        )
    channels = meta.get("channels")
    if channels is not None and not (
        isinstance(channels, list) and all(isinstance(c, str) for c in channels)
    ):
        raise InputError(path, f"metadata channels must be a list of names, got {channels!r}")
    shape = meta.get("image_shape")
    if shape is not None and not (
        isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)
    ):
        raise InputError(path, f"metadata image_shape must be [C, H, W], got {shape!r}")
    return meta


def first_nonfinite(images: np.ndarray) -> int | None:
    """Index of the first jet with a NaN or inf pixel, or None when all are finite."""
    if not images.size or np.isfinite(float(images.max()) - float(images.min())):  # NaN and inf propagate
        return None
    bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None  # a float64 sum can overflow with finite pixels


class JetFile(ABC):
    """A jet file open for reading; subclasses set the attributes below in __init__.

    path, n_jets, image_shape (C, H, W), channels (names, or None when the order is unknown),
    metadata (our JSON header, {} for public files), other_schema (Arrow schema of the other columns),
    pixel_dtype (numpy dtype of the stored pixel values).
    """

    format = ""
    path: str
    n_jets: int
    image_shape: tuple[int, int, int]
    channels: tuple[str, ...] | None
    metadata: dict[str, Any]
    other_schema: pa.Schema
    pixel_dtype: np.dtype

    @property
    def exact_dtype(self) -> str:
        """The Batch dtype that holds every stored pixel value exactly: "float64" for doubles and 32/64-bit
        integers, else "float32"."""
        d = np.dtype(self.pixel_dtype)
        return "float64" if d.itemsize >= 8 or (d.kind in "iu" and d.itemsize >= 4) else "float32"

    @property
    def layout(self) -> str | None:
        """Layout name recorded by our writer (e.g. 'qg3'), or None."""
        return self.metadata.get("layout")

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names for display: ch0, ch1, ... when the order is unknown."""
        return channel_names(self.channels, self.image_shape[0])

    @property
    def columns(self) -> list[str]:
        """Names of the non-image columns."""
        return list(self.other_schema.names)

    def __len__(self) -> int:
        return self.n_jets

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.image_shape))
        return f"<{type(self).__name__} {self.path!r} {self.n_jets} jets {shape} channels={self.channels}>"

    def iter_batches(
        self,
        batch_size: int = 256,
        columns: Sequence[str] | None = None,
        *,
        start: int = 0,
        stop: int | None = None,
        check_finite: bool = True,
        dtype: str = "float32",
        reuse: int = 0,
    ) -> Iterator[Batch]:
        """Batches of `batch_size` jets (the last may be shorter) over rows [start, stop), streamed;
        images as float32, or float64 with dtype="float64" (see `exact_dtype`). reuse=k > 0 recycles k
        image buffers: a batch's images are overwritten k batches later (for pipelines, see BufferRing)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        start, stop = self._check_range(start, stop)
        cols = self._select(columns)
        dtype = str(np.dtype(dtype))
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        ring = BufferRing(reuse)
        for first, images, table in self._iter_blocks(start, stop, batch_size, cols, dtype, ring):
            if check_finite:
                bad = first_nonfinite(images)
                if bad is not None:
                    raise InputError(self.path, f"non-finite pixel values (NaN or inf) in jet {first + bad}")
            yield Batch(images, table, first, dtype)

    def read(
        self,
        start: int = 0,
        stop: int | None = None,
        columns: Sequence[str] | None = None,
        *,
        check_finite: bool = True,
        dtype: str = "float32",
    ) -> Batch:
        """Rows [start, stop) as one batch."""
        start, stop = self._check_range(start, stop)
        if stop == start:
            cols = self._select(columns)
            images = np.empty((0, *self.image_shape), dtype)
            table = self._sub_schema(cols).empty_table()
            return Batch(images, table, start, dtype)
        (batch,) = self.iter_batches(
            stop - start, columns, start=start, stop=stop, check_finite=check_finite, dtype=dtype
        )
        return batch

    @abstractmethod
    def _iter_blocks(
        self, start: int, stop: int, batch_size: int, columns: list[str], dtype: str, ring: BufferRing
    ) -> Iterator[tuple[int, np.ndarray, pa.Table]]:
        """(first row, images [n, C, H, W] of dtype from ring.empty, table of `columns`) blocks of
        batch_size rows."""

    @abstractmethod
    def close(self) -> None:
        """Release the file handle."""

    def __enter__(self) -> JetFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sub_schema(self, columns: list[str]) -> pa.Schema:
        """The schema of a selection of the other columns (file-level metadata kept)."""
        return pa.schema([self.other_schema.field(c) for c in columns], metadata=self.other_schema.metadata)

    def _check_range(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.n_jets if stop is None else stop
        if not 0 <= start <= stop <= self.n_jets:
            raise InputError(self.path, f"rows {start}:{stop} out of range (the file has {self.n_jets} jets)")
        return int(start), int(stop)

    def _select(self, columns: Sequence[str] | None) -> list[str]:
        names = self.other_schema.names
        if columns is None:
            return list(names)
        if isinstance(columns, str):
            raise TypeError("columns must be a list of names, not a string")
        cols = list(columns)
        for c in cols:
            if c not in names:
                raise InputError(
                    self.path, f"column {c!r} not in file (columns: {', '.join(names) or 'none'})"
                )
        if len(set(cols)) != len(cols):
            raise ValueError(f"columns listed twice in {cols}")
        return cols


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class JetWriter(ABC):
    """Writes batches to a temporary file beside `path`, renamed onto `path` by close().

    On any exception inside `with`, write() or close(), the temporary file is removed and `path` is
    left as it was. Use as a context manager, or call close() (commit) / abort() (discard).

    channels: names in image order, or a layout name; None records an unknown order.
    layout:   layout name or Layout (sets channels when they are not given).
    extra:    JSON-safe entries added to the metadata header (settings, seeds, split, ...).
    schema:   Arrow schema of the other columns; default: that of the first batch.
    image_shape: (C, H, W), needed only to write a file with no jets.
    """

    format = ""

    def __init__(
        self,
        path: str | os.PathLike,
        channels: ChannelsArg = None,
        *,
        layout: str | Layout | None = None,
        extra: Mapping[str, Any] | None = None,
        schema: pa.Schema | None = None,
        image_shape: Sequence[int] | None = None,
        check_finite: bool = True,
    ):
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise InputError(self.path, "output directory does not exist")
        if os.path.isdir(self.path):
            raise InputError(self.path, "is a directory, not a file")
        self.channels, self.layout = self._resolve_layout(channels, layout)
        self.extra = dict(extra or {})
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        if self.image_shape is not None:
            self._check_shape(self.image_shape)
        make_metadata(self.channels, self.image_shape or (0, 0, 0), self.layout, self.extra)  # fail early
        self.schema = schema
        if schema is not None:
            self._check_schema(schema)
        self.check_finite = check_finite
        self.n_written = 0
        self._closed = False
        base = os.path.basename(self.path)
        remove_stale_temps(self.path)
        self._tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(self._tmp, "xb"):
                pass
        except OSError as e:
            raise InputError(self.path, f"cannot write ({e.strerror or one_line(e)})") from None
        self._cleanup = weakref.finalize(self, _remove_quietly, self._tmp)

    def _resolve_layout(
        self, channels: ChannelsArg, layout: str | Layout | None
    ) -> tuple[tuple[str, ...] | None, str | None]:
        if isinstance(channels, str) and layout is None:
            layout = channels
        if isinstance(layout, str):
            layout = get_layout(layout)
        channels = _as_channels(channels)
        if layout is None:
            return channels, None
        if channels is not None and channels != layout.channels:
            raise InputError(
                self.path,
                f"channels ({', '.join(channels)}) differ from layout {layout.name} "
                f"({', '.join(layout.channels)})",
            )
        return layout.channels, layout.name

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.channels is not None and shape[0] != len(self.channels):
            raise InputError(
                self.path,
                f"images have {shape[0]} channels but {len(self.channels)} are named"
                f" ({', '.join(self.channels)})",
            )
        if self.image_shape is not None and shape != self.image_shape:
            raise InputError(self.path, f"images of shape {shape} differ from the file's {self.image_shape}")

    @abstractmethod
    def _check_schema(self, schema: pa.Schema) -> None:
        """Reject other columns the format cannot hold (InputError)."""

    def metadata(self) -> dict[str, Any]:
        """The metadata header as it will be written."""
        return make_metadata(self.channels, self.image_shape or (0, 0, 0), self.layout, self.extra)

    def write(self, batch: Batch) -> None:
        """Append a batch; on failure the whole write is abandoned (see abort)."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        try:
            if not isinstance(batch, Batch):
                raise TypeError(f"write() takes a Batch, got {type(batch).__name__}")
            shape = tuple(batch.images.shape[1:])
            self._check_shape(shape)
            if self.image_shape is None:
                self.image_shape = shape
            table = batch.table
            if self.schema is None:
                self._check_schema(table.schema)
                self.schema = table.schema
            elif not table.schema.equals(self.schema):
                got, want = _describe(table.schema), _describe(self.schema)
                raise InputError(self.path, f"batch columns ({got}) differ from the file's ({want})")
            if self.check_finite:
                bad = first_nonfinite(batch.images)
                if bad is not None:
                    raise InputError(
                        self.path, f"non-finite pixel values (NaN or inf) in jet {self.n_written + bad}"
                    )
            if len(batch):
                table = (
                    pa.Table.from_arrays(table.columns, schema=self.schema) if table.num_columns else table
                )
                self._write(Batch(batch.images, table, dtype=batch.dtype))
            self.n_written += len(batch)
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        """Finish the file and rename it onto `path`."""
        if self._closed:
            return
        try:
            if self.image_shape is None:
                if self.channels is None:
                    raise InputError(self.path, "no jets written and the image shape is unknown")
                self.image_shape = (len(self.channels), IMAGE_SIZE, IMAGE_SIZE)
            if self.schema is None:
                self.schema = pa.schema([])
            self._finish()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._cleanup.detach()

    def abort(self) -> None:
        """Discard everything written; `path` is left untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._discard()
        finally:
            self._cleanup()

    def __enter__(self) -> JetWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @abstractmethod
    def _write(self, batch: Batch) -> None:
        """Append a non-empty, validated batch whose table has exactly self.schema."""

    @abstractmethod
    def _finish(self) -> None:
        """Flush and close the temporary file (self.image_shape and self.schema are set)."""

    @abstractmethod
    def _discard(self) -> None:
        """Close the temporary file without caring about errors."""


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema) or "none"
