"""Read and write jet files (E2E parquet, ML4SCI HDF5) as streams of Batch in bounded memory.

with open_jets("qg.parquet") as f:
    for batch in f.iter_batches(256):
        batch.images   # [B, C, H, W] float32
        batch.table    # y, pt, m0, ... as Arrow

write_jets("out.parquet", batches, channels="qg3", extra={"seed": 1})
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from e2ecompress.io.base import (
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA_KEY,
    ChannelsArg,
    JetFile,
    JetWriter,
    format_from_suffix,
    sniff_format,
)
from e2ecompress.io.batch import Batch, empty_table
from e2ecompress.io.hdf5 import Hdf5JetFile, Hdf5JetWriter
from e2ecompress.io.parquet import IMAGE_COLUMN, ParquetJetFile, ParquetJetWriter
from e2ecompress.layouts import Layout

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGE_COLUMN",
    "METADATA_KEY",
    "Batch",
    "Hdf5JetFile",
    "Hdf5JetWriter",
    "JetFile",
    "JetWriter",
    "ParquetJetFile",
    "ParquetJetWriter",
    "empty_table",
    "open_jets",
    "open_writer",
    "write_jets",
]

_READERS = {"parquet": ParquetJetFile, "hdf5": Hdf5JetFile}
_WRITERS = {"parquet": ParquetJetWriter, "hdf5": Hdf5JetWriter}


def open_jets(path: str | os.PathLike, channels: ChannelsArg = None) -> JetFile:
    """Open a parquet or HDF5 jet file, told apart by its magic bytes.

    channels: the channel order when the file does not record it (public files), or a layout name;
    it must agree with what the file records.
    """
    path = os.fspath(path)
    return _READERS[sniff_format(path)](path, channels)


def open_writer(
    path: str | os.PathLike,
    channels: ChannelsArg = None,
    *,
    layout: str | Layout | None = None,
    extra: Mapping[str, Any] | None = None,
    fmt: str | None = None,
    **options: Any,
) -> JetWriter:
    """A JetWriter for `fmt` ('parquet' or 'hdf5'; default from the suffix). Use it as a context manager."""
    path = os.fspath(path)
    cls = _WRITERS[format_from_suffix(path, fmt)]
    return cls(path, channels, layout=layout, extra=extra, **options)


def write_jets(
    path: str | os.PathLike,
    batches: Iterable[Batch],
    channels: ChannelsArg = None,
    *,
    layout: str | Layout | None = None,
    extra: Mapping[str, Any] | None = None,
    fmt: str | None = None,
    **options: Any,
) -> int:
    """Write all `batches` to `path` atomically (nothing is left there on failure); returns the jet count."""
    with open_writer(path, channels, layout=layout, extra=extra, fmt=fmt, **options) as writer:
        for batch in batches:
            writer.write(batch)
    return writer.n_written
