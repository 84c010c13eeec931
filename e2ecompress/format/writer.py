"""Writing .e2ez containers: to a temporary file beside the target, renamed onto it only when complete."""

from __future__ import annotations

import contextlib
import numbers
import os
import weakref
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import pyarrow as pa

from e2ecompress.errors import InputError, one_line
from e2ecompress.format.container import (
    CRC,
    FOOTER_PLACE_SIZE,
    FORMAT_VERSION,
    MAGIC,
    PREAMBLE,
    TRAILER,
    AttachmentInfo,
    ChunkInfo,
    attachment_head,
    check_attachment_name,
    check_stream_name,
    chunk_head,
    crc32c,
    encode_json,
    encode_side_table,
    pack_footer,
)
from e2ecompress.fsutil import remove_stale_temps, temp_name

_U32 = 0xFFFFFFFF


def _open_temp(directory: str, base: str) -> tuple[BinaryIO, str]:
    """A new file `.{base}.partial-{host}-{pid}` (or `....{k}` if that exists) in `directory`; the ones
    that killed runs left there are removed first."""
    remove_stale_temps(os.path.join(directory, base))
    stem = os.path.join(directory, temp_name(base))
    for k in range(100):
        path = stem if k == 0 else f"{stem}.{k}"
        try:
            return open(path, "xb"), path  # closed by close(), abort() or the finalizer
        except FileExistsError:
            continue
    raise FileExistsError(f"{stem}: too many partial files")


def _discard(f: BinaryIO, path: str) -> None:
    """Close and remove a temporary file, ignoring errors (also run by the finalizer)."""
    with contextlib.suppress(OSError):
        f.close()
    with contextlib.suppress(OSError):
        os.unlink(path)


def _bytes_view(data: object, what: str) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be bytes-like, got {type(data).__name__}") from None
    if not view.c_contiguous:
        raise TypeError(f"{what} must be contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class ContainerWriter:
    """Writes an .e2ez container (docs/FORMAT.md) to a temporary file renamed onto `path` by close().

    The temporary file is `.{name}.partial-{host}-{pid}` in the target's directory. `path` never holds a
    partial file: an existing file there is replaced only by a successful close(). On any exception inside
    `with`, write_chunk(), add_attachment() or close(), the temporary file is removed and `path` is left as
    it was. A process killed mid-write leaves its `.partial-` file behind (nothing else); the next writer of
    the same path removes it.

    header: JSON-safe dict written at the start of the file (codec-level keys: docs/FORMAT.md).
    """

    def __init__(self, path: str | os.PathLike, header: Mapping[str, Any]):
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise InputError(self.path, "output directory does not exist")
        if os.path.isdir(self.path):
            raise InputError(self.path, "is a directory, not a file")
        head = encode_json(header, "header")
        if len(head) > _U32:
            raise ValueError(f"header is {len(head)} bytes of JSON, more than 4 GiB")
        try:
            self._file, self.temp_path = _open_temp(directory, os.path.basename(self.path))
        except OSError as e:
            raise InputError(self.path, f"cannot write ({e.strerror or one_line(e)})") from None
        self._cleanup = weakref.finalize(self, _discard, self._file, self.temp_path)
        self._closed = False
        self._offset = 0
        self._chunks: list[ChunkInfo] = []
        self._attachments: dict[str, AttachmentInfo] = {}
        self.n_jets = 0
        fixed = PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(head), 0)[: PREAMBLE.size - CRC.size]
        self._guarded(self._put, fixed, CRC.pack(crc32c(fixed, head)), head)

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    def write_chunk(self, n_jets: int, streams: Mapping[str, bytes], table: pa.Table) -> None:
        """Append a chunk of `n_jets` (>= 1) jets: named byte streams (in order), a side table of n_jets rows.

        Stream names are printable ASCII, 1-255 characters; the streams may be empty. On failure the whole
        write is abandoned (see abort).
        """
        self._guarded(self._write_chunk, n_jets, streams, table)

    def add_attachment(self, name: str, data: bytes) -> None:
        """Store a named blob (e.g. a file of an embedded model), read back by ContainerReader.attachment."""
        self._guarded(self._add_attachment, name, data)

    def close(self, footer_meta: Mapping[str, Any] | None = None) -> None:
        """Write the footer (with the JSON-safe `footer_meta`), fsync and rename onto `path`."""
        if self._closed:
            return
        self._guarded(self._finish, footer_meta or {})
        self._closed = True
        self._cleanup.detach()
        with contextlib.suppress(OSError):  # make the rename durable too (POSIX; not possible everywhere)
            fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def abort(self) -> None:
        """Discard everything written; `path` is left untouched."""
        self._closed = True
        self._cleanup()

    def __enter__(self) -> ContainerWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ContainerWriter {self.path!r} {state} {self.n_chunks} chunks {self.n_jets} jets>"

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        try:
            fn(*args)
        except BaseException:
            self.abort()
            raise

    def _put(self, *pieces: bytes | memoryview) -> None:
        for piece in pieces:
            self._file.write(piece)
            self._offset += len(piece)

    def _write_chunk(self, n_jets: int, streams: Mapping[str, bytes], table: pa.Table) -> None:
        if isinstance(n_jets, bool) or not isinstance(n_jets, numbers.Integral) or n_jets < 1:
            raise ValueError(f"n_jets must be an int >= 1, got {n_jets!r}")
        n_jets = int(n_jets)
        if not isinstance(streams, Mapping):
            raise TypeError(f"streams must be a mapping of name to bytes, got {type(streams).__name__}")
        if not isinstance(table, pa.Table):
            raise TypeError(f"table must be a pyarrow Table, got {type(table).__name__}")
        if table.num_rows != n_jets or sum(b.num_rows for b in table.to_batches()) != n_jets:
            raise ValueError(f"table has {table.num_rows} rows but the chunk has {n_jets} jets")
        if len(self._chunks) >= _U32:
            raise ValueError(f"more than {_U32} chunks")
        names = [check_stream_name(name) for name in streams]
        views = [_bytes_view(data, f"stream {name!r}") for name, data in streams.items()]
        side = encode_side_table(table)
        directory = [(name, len(view)) for name, view in zip(names, views, strict=True)]
        head = chunk_head(len(self._chunks), self.n_jets, n_jets, directory, len(side))
        crc = crc32c(head, *views, side)
        offset = self._offset
        self._put(head, *views, side, CRC.pack(crc))
        self._chunks.append(
            ChunkInfo(len(self._chunks), self.n_jets, n_jets, offset, self._offset - offset, crc)
        )
        self.n_jets += n_jets

    def _add_attachment(self, name: str, data: bytes) -> None:
        raw = check_attachment_name(name)
        if name in self._attachments:
            raise ValueError(f"attachment {name!r} added twice")
        view = _bytes_view(data, f"attachment {name!r}")
        head = attachment_head(raw, len(view))
        crc = crc32c(head, view)
        offset = self._offset
        self._put(head, view, CRC.pack(crc))
        self._attachments[name] = AttachmentInfo(name, offset, self._offset - offset, crc)

    def _finish(self, footer_meta: Mapping[str, Any]) -> None:
        meta = encode_json(footer_meta, "footer_meta")
        footer = pack_footer(self._chunks, list(self._attachments.values()), self.n_jets, meta)
        place = (self._offset, len(footer))
        crc = crc32c(footer, TRAILER.pack(*place, 0, MAGIC, FORMAT_VERSION)[:FOOTER_PLACE_SIZE])
        self._put(footer, TRAILER.pack(*place, crc, MAGIC, FORMAT_VERSION))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temp_path, self.path)
