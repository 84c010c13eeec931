"""The one batch type that flows through io -> model -> codec -> format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa


class BufferRing:
    """Reuses `size` image buffers in turn (fresh 100 MB arrays cost more in page faults than the work
    done on them). A buffer handed out is overwritten `size` requests later: only for pipelines that
    drop each batch before then. size 0: always a new array."""

    def __init__(self, size: int = 0):
        self.size = int(size)
        self._bufs: list[np.ndarray] = []
        self._next = 0

    def empty(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        if not self.size:
            return np.empty(shape, dtype)
        k = self._next
        self._next = (k + 1) % self.size
        n = int(np.prod(shape))
        dtype = np.dtype(dtype)
        if k == len(self._bufs):
            self._bufs.append(np.empty(0, np.uint8))
        if self._bufs[k].nbytes < n * dtype.itemsize:
            self._bufs[k] = np.empty(n * dtype.itemsize, np.uint8)
        return self._bufs[k][: n * dtype.itemsize].view(dtype).reshape(shape)

    def zeros(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        out = self.empty(shape, dtype)
        if self.size:
            out.fill(0)
        else:
            out = np.zeros(shape, dtype)
        return out


def empty_table(n_rows: int) -> pa.Table:
    """A table with no columns and `n_rows` rows (for jets that carry no other columns)."""
    return pa.table({"_": pa.nulls(n_rows)}).drop_columns(["_"])


def concat_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """pa.concat_tables that also keeps the row count of tables without columns."""
    if tables and tables[0].num_columns == 0:
        return empty_table(sum(t.num_rows for t in tables))
    return pa.concat_tables(tables)


@dataclass(eq=False)
class Batch:
    """A block of jets: images plus every other column of the same rows, untouched.

    images: [B, C, H, W] of `dtype`, C-contiguous (other numeric input is converted).
    table:  the other columns (y, pt, m0, ...) as an Arrow table of B rows; None means no columns.
    start:  row offset of the first jet in the file it came from (None when not read from a file).
    dtype:  "float32" (the default, what models take) or "float64" (files of doubles read for exact
            lossless coding).
    """

    images: np.ndarray
    table: pa.Table | None = None
    start: int | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {images.shape}")
        if images.dtype.kind not in "fiu":
            raise ValueError(f"images must be numeric, got dtype {images.dtype}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        self.images = np.ascontiguousarray(images, dtype=self.dtype)
        if self.table is None:
            self.table = empty_table(images.shape[0])
        elif isinstance(self.table, pa.RecordBatch):
            self.table = pa.Table.from_batches([self.table])
        elif not isinstance(self.table, pa.Table):
            raise TypeError(f"table must be a pyarrow Table, got {type(self.table).__name__}")
        if self.table.num_rows != images.shape[0]:
            raise ValueError(f"table has {self.table.num_rows} rows but there are {images.shape[0]} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one jet."""
        return tuple(self.images.shape[1:])

    def slice(self, start: int, stop: int | None = None) -> Batch:
        """Rows [start, stop) of this batch (views, no copies)."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(start, stop)
        offset = None if self.start is None else self.start + start
        return Batch(self.images[start:stop], self.table.slice(start, stop - start), offset, self.dtype)

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """One batch holding the rows of all `batches` in order (copies the images)."""
        if not batches:
            raise ValueError("concat needs at least one batch")
        images = np.concatenate([b.images for b in batches])
        table = concat_tables([b.table for b in batches])
        return Batch(images, table, batches[0].start, batches[0].dtype)
