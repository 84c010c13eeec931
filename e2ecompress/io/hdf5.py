"""ML4SCI HDF5 files: dataset `jet` (N, H, W, C) channels-last, labels `Y` (N, 1), other 1-D datasets."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import pyarrow as pa

from e2ecompress.errors import InputError, one_line
from e2ecompress.io.base import (
    METADATA_KEY,
    ChannelsArg,
    JetFile,
    JetWriter,
    parse_metadata,
    resolve_channels,
)
from e2ecompress.io.batch import Batch, BufferRing, empty_table
from e2ecompress.layouts import Layout

JET = "jet"
LABEL_DATASET = "Y"  # stored as (N, 1) like the public files
LABEL_COLUMN = "y"  # its name in the table, as in the parquet files
SCHEMA_ATTR = "arrow_schema"  # serialized Arrow schema of the other columns, restores exact types
_COLUMN_CHUNK = 16384


def _column_name(dataset: str) -> str:
    return LABEL_COLUMN if dataset == LABEL_DATASET else dataset


def _dataset_name(column: str) -> str:
    return LABEL_DATASET if column == LABEL_COLUMN else column


def _attr_text(value: Any) -> str | bytes | None:
    if value is None or isinstance(value, (str, bytes)):
        return value
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return bytes(value) if isinstance(value, (np.bytes_, np.void)) else str(value)


class Hdf5JetFile(JetFile):
    """An ML4SCI-style HDF5 file (ours or public), read in slices."""

    format = "hdf5"

    def __init__(self, path: str | os.PathLike, channels: ChannelsArg = None):
        self.path = os.fspath(path)
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            raise InputError(self.path, f"truncated or not an HDF5 file ({one_line(e)})") from None
        try:
            self._init(channels)
        except BaseException:
            self.close()
            raise

    def _init(self, channels: ChannelsArg) -> None:
        f = self._f
        names = list(f.keys())
        if JET not in f:
            raise InputError(self.path, f"dataset {JET} missing (datasets: {', '.join(names) or 'none'})")
        jet = f[JET]
        if not isinstance(jet, h5py.Dataset):
            raise InputError(self.path, f"{JET} is a group, not a dataset")
        if jet.ndim != 4:
            raise InputError(self.path, f"dataset {JET} must be 4-D (N, H, W, C), got shape {jet.shape}")
        if jet.dtype.kind not in "fiu":
            raise InputError(self.path, f"dataset {JET} has non-numeric dtype {jet.dtype}")
        n, h, w, c = jet.shape
        if 0 in (h, w, c):
            raise InputError(self.path, f"dataset {JET} has an empty image dimension (shape {jet.shape})")
        self._jet = jet
        self.pixel_dtype = jet.dtype
        self.n_jets = int(n)
        self.image_shape = (int(c), int(h), int(w))
        self.metadata = parse_metadata(self.path, _attr_text(f.attrs.get(METADATA_KEY)))
        recorded = self.metadata.get("image_shape")
        if recorded is not None and tuple(recorded) != self.image_shape:
            raise InputError(
                self.path, f"dataset {JET} holds {c}x{h}x{w} images but the metadata says {tuple(recorded)}"
            )
        self.channels = resolve_channels(self.path, channels, self.metadata.get("channels"), c)
        self._columns: dict[str, h5py.Dataset] = {}
        for name in names:
            ds = f[name]
            if name == JET or not isinstance(ds, h5py.Dataset):
                continue
            if ds.shape in ((n,), (n, 1)) and ds.dtype.kind in "biuf":
                column = _column_name(name)
                self._columns[column if column not in self._columns else name] = ds
        self.other_schema = self._schema()

    def _schema(self) -> pa.Schema:
        raw = self._f.attrs.get(SCHEMA_ATTR)
        fields = {}
        if raw is not None:
            try:
                stored = pa.ipc.read_schema(pa.py_buffer(_attr_text(raw)))
            except (pa.ArrowException, TypeError, ValueError) as e:
                raise InputError(self.path, f"attribute {SCHEMA_ATTR} is corrupt ({one_line(e)})") from None
            fields = {f.name: f for f in stored if f.name in self._columns}
        for name, ds in self._columns.items():
            if name not in fields:
                fields[name] = pa.field(name, pa.from_numpy_dtype(ds.dtype))
        meta = None if raw is None else stored.metadata
        return pa.schema(list(fields.values()), metadata=meta)

    def _iter_blocks(
        self, start: int, stop: int, batch_size: int, columns: list[str], dtype: str, ring: BufferRing
    ) -> Iterator[tuple[int, np.ndarray, pa.Table]]:
        schema = self._sub_schema(columns)
        for first in range(start, stop, batch_size):
            last = min(first + batch_size, stop)
            try:
                raw = self._jet[first:last]
                values = [self._columns[c][first:last].reshape(last - first) for c in columns]
            except OSError as e:
                raise InputError(self.path, f"cannot read HDF5 data ({one_line(e)})") from None
            images = ring.empty((last - first, *self.image_shape), dtype)
            images[...] = raw.transpose(0, 3, 1, 2)
            del raw
            if columns:
                arrays = [pa.array(v, type=f.type) for v, f in zip(values, schema, strict=True)]
                table = pa.Table.from_arrays(arrays, schema=schema)
            else:
                table = empty_table(last - first)
            yield first, images, table

    def close(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None:
            f.close()


class Hdf5JetWriter(JetWriter):
    """Writes `jet` channels-last, `Y` (N, 1) from column y, other numeric columns as datasets.

    Datasets are chunked and compressed (gzip with shuffle by default, or lzf). image_dtype: the pixel
    type of `jet` (default float32; integer types get the values rounded).
    """

    format = "hdf5"

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
        compression: str = "gzip",
        compression_opts: int | None = 4,
        chunk_bytes: int = 1 << 20,
        image_dtype: Any = np.float32,
    ):
        self.image_dtype = np.dtype(image_dtype)
        if self.image_dtype.kind not in "fiu":
            raise ValueError(f"image_dtype must be numeric, got {self.image_dtype}")
        if compression not in ("gzip", "lzf"):
            raise ValueError(f"compression must be gzip or lzf, got {compression!r}")
        self.compression = compression
        self.compression_opts = compression_opts if compression == "gzip" else None
        self.chunk_bytes = chunk_bytes
        self._f: h5py.File | None = None
        super().__init__(
            path,
            channels,
            layout=layout,
            extra=extra,
            schema=schema,
            image_shape=image_shape,
            check_finite=check_finite,
        )

    def _check_schema(self, schema: pa.Schema) -> None:
        seen = set()
        for field in schema:
            t = field.type
            dataset = _dataset_name(field.name)
            if field.name == JET or dataset in seen or "/" in field.name or field.name in ("", "."):
                raise InputError(self.path, f"column name {field.name!r} cannot be an HDF5 dataset here")
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                raise InputError(
                    self.path, f"column {field.name} of type {t} cannot be stored in HDF5 (numbers only)"
                )
            seen.add(dataset)

    def _dataset(
        self, name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]
    ) -> h5py.Dataset:
        return self._f.create_dataset(
            name,
            shape=(0, *shape),
            maxshape=(None, *shape),
            dtype=dtype,
            chunks=chunks,
            compression=self.compression,
            compression_opts=self.compression_opts,
            shuffle=True,
        )

    def _open(self) -> None:
        self._f = h5py.File(self._tmp, "w", track_order=True)
        c, h, w = self.image_shape
        rows = max(1, self.chunk_bytes // (c * h * w * self.image_dtype.itemsize))
        self._jet = self._dataset(JET, (h, w, c), self.image_dtype, (rows, h, w, c))
        self._cols = []
        for field in self.schema:
            dtype = np.dtype(field.type.to_pandas_dtype())
            if field.name == LABEL_COLUMN:
                ds = self._dataset(LABEL_DATASET, (1,), dtype, (_COLUMN_CHUNK, 1))
            else:
                ds = self._dataset(field.name, (), dtype, (_COLUMN_CHUNK,))
            self._cols.append(ds)

    def _write(self, batch: Batch) -> None:
        if self._f is None:
            self._open()
        n0, n = self._jet.shape[0], len(batch)
        for field, ds in zip(self.schema, self._cols, strict=True):
            column = batch.table.column(field.name)
            if column.null_count:
                raise InputError(self.path, f"column {field.name} has nulls, which HDF5 cannot hold")
            ds.resize(n0 + n, axis=0)
            ds[n0:] = column.to_numpy().reshape(n, *ds.shape[1:])
        self._jet.resize(n0 + n, axis=0)
        images = batch.images.transpose(0, 2, 3, 1)
        if self.image_dtype.kind in "iu":
            images = np.rint(images)
        self._jet[n0:] = images.astype(self.image_dtype, copy=False)

    def _finish(self) -> None:
        if self._f is None:
            self._open()
        self._f.attrs[METADATA_KEY] = json.dumps(self.metadata())
        self._f.attrs[SCHEMA_ATTR] = np.void(self.schema.serialize().to_pybytes())
        self._f.close()

    def _discard(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except Exception:
                pass
