"""E2E parquet files: column X_jets holds one [C][H][W] nested list per jet, other columns as they are."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from e2ecompress.errors import InputError, one_line
from e2ecompress.io.base import (
    METADATA_KEY,
    ChannelsArg,
    JetFile,
    JetWriter,
    parse_metadata,
    resolve_channels,
)
from e2ecompress.io.batch import Batch, BufferRing, concat_tables, empty_table
from e2ecompress.layouts import Layout

IMAGE_COLUMN = "X_jets"
IMAGE_TYPE = pa.list_(pa.list_(pa.list_(pa.float32())))  # what the public files hold, in float32
DECODE_PIXELS = 1 << 22  # pixels Arrow decodes at a time (~85 jets of 3x125x125): bounds its memory
_DIM_NAMES = ("channels", "rows", "values per row")
_KEY = METADATA_KEY.encode()


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _leaf_type(path: str, t: pa.DataType) -> pa.DataType:
    """The pixel type of an X_jets column type, checking it nests exactly three lists of numbers."""
    inner = t
    for _ in range(3):
        if not _is_list(inner):
            raise InputError(path, f"{IMAGE_COLUMN} must hold one 3-D array [C][H][W] per jet, got type {t}")
        inner = inner.value_type
    if _is_list(inner):
        raise InputError(path, f"{IMAGE_COLUMN} must hold one 3-D array [C][H][W] per jet, got type {t}")
    if not (pa.types.is_floating(inner) or pa.types.is_integer(inner)):
        raise InputError(path, f"{IMAGE_COLUMN} values have non-numeric type {inner}")
    return inner


def _first_null(arr: pa.Array) -> int:
    return int(np.flatnonzero(~arr.is_valid().to_numpy(zero_copy_only=False))[0])


def nested_to_images(
    path: str, arr: pa.Array, shape: tuple[int, int, int], row0: int, out: np.ndarray
) -> None:
    """Fill out [n, C, H, W] from a nested-list X_jets array of n jets, without Python loops.

    Every level must have the same length in every row (ragged rows raise InputError naming the jet);
    `row0` is the file row of arr[0], used in messages.
    """
    per_row = 1
    size_text = "x".join(map(str, shape))
    for size, name in zip(shape, _DIM_NAMES, strict=True):
        if arr.null_count:
            row = row0 + _first_null(arr) // per_row
            raise InputError(path, f"{IMAGE_COLUMN} has null lists in jet {row}")
        if pa.types.is_fixed_size_list(arr.type):
            bad, got = (0, arr.type.list_size) if arr.type.list_size != size else (None, size)
        else:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            hits = np.flatnonzero(lengths != size)
            bad, got = (int(hits[0]), int(lengths[hits[0]])) if hits.size else (None, size)
        if bad is not None:
            raise InputError(
                path,
                f"{IMAGE_COLUMN} rows differ in shape: jet {row0 + bad // per_row} has {got} {name} "
                f"where {size} are expected (image shape {size_text})",
            )
        arr = arr.flatten()
        per_row *= size
    if arr.null_count:
        row = row0 + _first_null(arr) // per_row
        raise InputError(path, f"{IMAGE_COLUMN} has missing (null) pixel values in jet {row}")
    out[...] = arr.to_numpy(zero_copy_only=False).reshape(out.shape)


def images_to_nested(images: np.ndarray, image_type: pa.DataType = IMAGE_TYPE) -> pa.Array:
    """X_jets of `image_type` (three list levels: list, large_list or fixed_size_list, any numeric leaf;
    default list<list<list<float32>>>) from images [n, C, H, W]. Integer leaves get the values rounded."""
    n, c, h, w = images.shape
    levels, t = [], image_type
    for _ in range(3):
        levels.append(t)
        t = t.value_type
    leaf = np.dtype(t.to_pandas_dtype())
    flat = np.ascontiguousarray(images).reshape(-1)
    if leaf.kind in "iu":
        flat = np.rint(flat)
    if flat.size >= 2**31 and not any(pa.types.is_large_list(x) for x in levels):
        raise ValueError(f"{n} jets of {c}x{h}x{w} are too many for one row group; write fewer at a time")
    arr = pa.array(flat.astype(leaf, copy=False), type=t)
    for size, count, level in zip((w, h, c), (n * c * h, n * c, n), reversed(levels), strict=True):
        if pa.types.is_fixed_size_list(level):
            arr = pa.FixedSizeListArray.from_arrays(arr, type=level)
            continue
        off_type = np.int64 if pa.types.is_large_list(level) else np.int32
        offsets = pa.array(np.arange(0, (count + 1) * size, size, dtype=off_type))
        cls = pa.LargeListArray if pa.types.is_large_list(level) else pa.ListArray
        arr = cls.from_arrays(offsets, arr, type=level)
    return arr


class ParquetJetFile(JetFile):
    """An E2E parquet file (ours or public), streamed by row groups."""

    format = "parquet"

    def __init__(self, path: str | os.PathLike, channels: ChannelsArg = None):
        self.path = os.fspath(path)
        try:
            self._pf = pq.ParquetFile(self.path, pre_buffer=False)
        except (pa.ArrowException, OSError) as e:
            raise InputError(self.path, f"truncated or not a parquet file ({one_line(e)})") from None
        try:
            self._init(channels)
        except BaseException:
            self.close()
            raise

    def _init(self, channels: ChannelsArg) -> None:
        schema = self._pf.schema_arrow
        if IMAGE_COLUMN not in schema.names:
            raise InputError(
                self.path, f"column {IMAGE_COLUMN} missing (columns: {', '.join(schema.names) or 'none'})"
            )
        self.image_field = schema.field(IMAGE_COLUMN)
        self.image_index = schema.get_field_index(IMAGE_COLUMN)
        self._image_type = self.image_field.type
        self.pixel_dtype = np.dtype(_leaf_type(self.path, self._image_type).to_pandas_dtype())
        file_meta = dict(schema.metadata or {})
        self.metadata = parse_metadata(self.path, file_meta.pop(_KEY, None))
        self.n_jets = self._pf.metadata.num_rows
        self.other_schema = pa.schema(
            [f for f in schema if f.name != IMAGE_COLUMN], metadata=file_meta or None
        )
        self.image_shape = self._find_shape()
        self.channels = resolve_channels(
            self.path, channels, self.metadata.get("channels"), self.image_shape[0]
        )
        starts = [0]
        for i in range(self._pf.metadata.num_row_groups):
            starts.append(starts[-1] + self._pf.metadata.row_group(i).num_rows)
        self._group_starts = np.array(starts, dtype=np.int64)

    def _find_shape(self) -> tuple[int, int, int]:
        """(C, H, W) from the fixed-size list types, the metadata, or the first jet."""
        fixed: list[int | None] = []
        t = self._image_type
        for _ in range(3):
            fixed.append(t.list_size if pa.types.is_fixed_size_list(t) else None)
            t = t.value_type
        recorded = self.metadata.get("image_shape")
        if recorded is not None:
            shape = tuple(recorded)
        elif None not in fixed:
            shape = tuple(fixed)
        elif self.n_jets:
            shape = self._first_jet_shape()
        else:
            raise InputError(self.path, "the file holds no jets and its image shape is unknown")
        for got, want, name in zip(fixed, shape, _DIM_NAMES, strict=True):
            if got is not None and got != want:
                raise InputError(
                    self.path, f"{IMAGE_COLUMN} type has {got} {name} but the metadata says {want}"
                )
        return shape

    def _first_jet_shape(self) -> tuple[int, int, int]:
        try:
            first = next(self._pf.iter_batches(batch_size=1, columns=[IMAGE_COLUMN]))
        except (pa.ArrowException, OSError) as e:
            raise InputError(self.path, f"cannot read parquet data ({one_line(e)})") from None
        arr = first.column(0).slice(0, 1)
        shape = []
        for _ in range(3):
            if arr.null_count:
                raise InputError(self.path, f"{IMAGE_COLUMN} has null lists in jet 0")
            shape.append(int(pc.list_value_length(arr)[0].as_py()))
            arr = arr.flatten().slice(0, 1)
        if 0 in shape:
            raise InputError(
                self.path, f"{IMAGE_COLUMN} of jet 0 has an empty dimension (shape {tuple(shape)})"
            )
        return tuple(shape)

    def _iter_blocks(
        self, start: int, stop: int, batch_size: int, columns: list[str], dtype: str, ring: BufferRing
    ) -> Iterator[tuple[int, np.ndarray, pa.Table]]:
        if start == stop:
            return
        first_group = int(np.searchsorted(self._group_starts, start, side="right")) - 1
        last_group = int(np.searchsorted(self._group_starts, stop, side="left"))
        groups = list(range(first_group, last_group))
        skip = start - int(self._group_starts[first_group])
        schema = self._sub_schema(columns)
        decode_rows = max(1, DECODE_PIXELS // int(np.prod(self.image_shape)))
        pieces = self._pf.iter_batches(
            batch_size=decode_rows, row_groups=groups, columns=[IMAGE_COLUMN, *columns]
        )
        pos = start  # file row of the next row to place
        out = None
        for piece in self._guard(pieces):
            if skip >= piece.num_rows:
                skip -= piece.num_rows
                continue
            piece = piece.slice(skip, stop - pos)
            skip = 0
            while piece.num_rows:
                if out is None:
                    out = ring.empty((min(batch_size, stop - pos), *self.image_shape), dtype)
                    filled, parts, block_start = 0, [], pos
                take = min(piece.num_rows, len(out) - filled)
                part, piece = piece.slice(0, take), piece.slice(take)
                nested_to_images(
                    self.path, part.column(IMAGE_COLUMN), self.image_shape, pos, out[filled : filled + take]
                )
                if columns:
                    parts.append(pa.Table.from_arrays([part.column(c) for c in columns], schema=schema))
                filled += take
                pos += take
                if filled == len(out):
                    table = concat_tables(parts) if columns else empty_table(filled)
                    yield block_start, out, table
                    out = None
            if pos == stop:
                break
        if pos != stop:
            raise InputError(
                self.path, f"parquet data ends at row {pos}, before the {stop} rows its footer lists"
            )

    def _guard(self, pieces: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        while True:
            try:
                piece = next(pieces)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as e:
                raise InputError(self.path, f"cannot read parquet data ({one_line(e)})") from None
            yield piece

    def close(self) -> None:
        pf = getattr(self, "_pf", None)
        if pf is not None:
            pf.close()


class ParquetJetWriter(JetWriter):
    """Writes X_jets plus the other columns, zstd, uniform row groups.

    image_field: the X_jets field to write (type and metadata; default list<list<list<float32>>>), e.g. the
                 one of the file that was packed, so that its schema comes back exactly.
    image_index: the position of X_jets among the columns (default first).
    """

    format = "parquet"

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
        row_group_size: int = 256,
        compression: str = "zstd",
        compression_level: int | None = None,
        image_field: pa.Field | None = None,
        image_index: int = 0,
    ):
        if image_field is None:
            image_field = pa.field(IMAGE_COLUMN, IMAGE_TYPE)
        if image_field.name != IMAGE_COLUMN:
            raise ValueError(f"image_field must be named {IMAGE_COLUMN}, got {image_field.name!r}")
        _leaf_type(os.fspath(path), image_field.type)
        self.image_field = image_field
        self.image_index = int(image_index)
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be >= 1, got {row_group_size}")
        self.row_group_size = row_group_size
        self.compression = compression
        self.compression_level = compression_level
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[Batch] = []
        self._n_pending = 0
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
        if IMAGE_COLUMN in schema.names:
            raise InputError(self.path, f"the other columns must not include {IMAGE_COLUMN}")

    def _write(self, batch: Batch) -> None:
        pos, n = 0, len(batch)
        while pos < n:
            take = min(n - pos, self.row_group_size - self._n_pending)
            part = batch.slice(pos, pos + take)
            pos += take
            if take == self.row_group_size:
                self._write_group(part)
                continue
            # keep a copy: the caller may reuse its buffer once write() returns
            self._pending.append(Batch(part.images.copy(), part.table, dtype=part.dtype))
            self._n_pending += take
            if self._n_pending == self.row_group_size:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            group = self._pending[0] if len(self._pending) == 1 else Batch.concat(self._pending)
            self._pending, self._n_pending = [], 0
            self._write_group(group)

    def _open(self) -> pq.ParquetWriter:
        meta = dict(self.schema.metadata or {})
        meta[METADATA_KEY.encode()] = json.dumps(self.metadata()).encode()
        fields = list(self.schema)
        fields.insert(min(max(self.image_index, 0), len(fields)), self.image_field)
        self._arrow_schema = pa.schema(fields, metadata=meta)
        return pq.ParquetWriter(
            self._tmp,
            self._arrow_schema,
            compression=self.compression,
            compression_level=self.compression_level,
            use_dictionary=[f.name for f in self.schema],  # dictionaries only bloat the pixels
        )

    def _write_group(self, batch: Batch) -> None:
        if self._writer is None:
            self._writer = self._open()
        arrays = list(batch.table.columns)
        arrays.insert(
            self._arrow_schema.get_field_index(IMAGE_COLUMN),
            images_to_nested(batch.images, self.image_field.type),
        )
        table = pa.Table.from_arrays(arrays, schema=self._arrow_schema)
        self._writer.write_table(table, row_group_size=self.row_group_size)

    def _finish(self) -> None:
        self._flush()
        if self._writer is None:
            self._writer = self._open()
        self._writer.close()

    def _discard(self) -> None:
        self._pending = []
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
