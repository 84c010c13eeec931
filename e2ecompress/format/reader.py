"""Reading .e2ez containers: everything checked on open, then chunks read one at a time by seek + read."""

from __future__ import annotations

import bisect
import os
import stat
from collections.abc import Iterator
from typing import Any

from e2ecompress.errors import DecodeError, InputError, one_line
from e2ecompress.format.container import (
    CRC,
    FOOTER_PLACE_SIZE,
    MAGIC,
    MIN_ATTACHMENT_SIZE,
    MIN_CHUNK_SIZE,
    PREAMBLE,
    READ_VERSIONS,
    TRAILER,
    AttachmentInfo,
    Chunk,
    ChunkInfo,
    crc32c,
    decode_json,
    parse_attachment,
    parse_chunk,
    parse_footer,
)


class ContainerReader:
    """An .e2ez container open for reading (docs/FORMAT.md).

    Opening reads only the preamble, header and footer and checks them (magics, version, CRCs, the index
    tiling the file); chunks and attachments are read, CRC-checked and parsed on demand, so memory does not
    grow with the file. Corrupt or truncated input raises DecodeError; a missing file InputError.
    Not thread-safe (one file position).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            raise InputError(self.path, "no such file") from None
        except OSError as e:
            raise InputError(self.path, f"cannot read ({e.strerror or one_line(e)})") from None
        if stat.S_ISDIR(mode):
            raise InputError(self.path, "is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise InputError(self.path, "not a regular file")
        try:
            self._file = open(self.path, "rb", buffering=0)  # closed by close()
        except OSError as e:
            raise InputError(self.path, f"cannot read ({e.strerror or one_line(e)})") from None
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    # --- opening ------------------------------------------------------------------------------------------

    def _fail(self, problem: str) -> DecodeError:
        return DecodeError(f"{self.path}: {problem}")

    def _open(self) -> None:
        size = self._size = os.fstat(self._file.fileno()).st_size
        if size == 0:
            raise self._fail("empty file (not an .e2ez file)")
        head = self._read(0, min(size, PREAMBLE.size))
        if not head.startswith(MAGIC):
            truncated = len(head) < len(MAGIC) and MAGIC.startswith(head)
            raise self._fail("truncated (no end marker)" if truncated else "not an .e2ez file")
        if size < len(MAGIC) + 4:
            raise self._fail("truncated (no end marker)")
        version = int.from_bytes(head[4:8], "little")
        if version not in READ_VERSIONS:
            known = ", ".join(map(str, READ_VERSIONS))
            raise self._fail(f"unsupported format version {version} (this e2ecompress reads {known})")
        if size < PREAMBLE.size + TRAILER.size:
            raise self._fail("truncated (no end marker)")
        trailer = self._read(size - TRAILER.size, TRAILER.size)
        footer_offset, footer_size, footer_crc, end_magic, end_version = TRAILER.unpack(trailer)
        if end_magic != MAGIC:
            raise self._fail("truncated (no end marker)")
        if end_version != version:
            raise self._fail(f"end marker says version {end_version}, the start {version} (file corrupt)")

        _, _, header_len, header_crc = PREAMBLE.unpack(head)
        data_start = PREAMBLE.size + header_len
        if data_start > size - TRAILER.size:
            raise self._fail(f"header length {header_len} runs past the end (file corrupt)")
        raw = self._read(PREAMBLE.size, header_len)
        if crc32c(head[: PREAMBLE.size - CRC.size], raw) != header_crc:
            raise self._fail("header: CRC32C mismatch (file corrupt)")
        self.header: dict[str, Any] = decode_json(raw, f"{self.path}: header")

        if footer_offset < data_start or footer_offset + footer_size != size - TRAILER.size:
            raise self._fail("footer position out of range (file corrupt)")
        footer = self._read(footer_offset, footer_size)
        if crc32c(footer, trailer[:FOOTER_PLACE_SIZE]) != footer_crc:
            raise self._fail("footer: CRC32C mismatch (file corrupt)")
        chunks, attachments, total_jets, meta = parse_footer(footer, f"{self.path}: footer")
        self.footer_meta: dict[str, Any] = decode_json(meta, f"{self.path}: footer_meta")
        self._check_index(chunks, attachments, total_jets, data_start, footer_offset)
        self._chunks = chunks
        self._starts = [c.start for c in chunks]
        self._attachments = {a.name: a for a in attachments}
        self.n_jets = total_jets
        self.version = version

    def _check_index(
        self,
        chunks: list[ChunkInfo],
        attachments: list[AttachmentInfo],
        total_jets: int,
        data_start: int,
        data_stop: int,
    ) -> None:
        """Jet counts add up and the records tile [data_start, data_stop) exactly: no gap, no overlap."""
        jets = 0
        for c in chunks:
            if c.n_jets < 1 or c.start != jets:
                raise self._fail(
                    f"index: chunk {c.index} has jets {c.start}+{c.n_jets}, expected {jets}+ (file corrupt)"
                )
            if c.size < MIN_CHUNK_SIZE:
                raise self._fail(f"index: chunk {c.index} is {c.size} bytes, too small (file corrupt)")
            jets += c.n_jets
        if jets != total_jets:
            raise self._fail(f"index: chunks hold {jets} jets, the footer says {total_jets} (file corrupt)")
        if len({a.name for a in attachments}) != len(attachments):
            raise self._fail("index: an attachment name appears twice (file corrupt)")
        records = [(c.offset, c.size, f"chunk {c.index}") for c in chunks]
        for a in attachments:
            if a.size < MIN_ATTACHMENT_SIZE:
                raise self._fail(f"index: attachment {a.name!r} is {a.size} bytes, too small (file corrupt)")
            records.append((a.offset, a.size, f"attachment {a.name!r}"))
        pos = data_start
        for offset, size, what in sorted(records):
            if offset != pos or size > data_stop - pos:
                raise self._fail(
                    f"index: {what} at bytes {offset}+{size} does not follow byte {pos} (file corrupt)"
                )
            pos += size
        if pos != data_stop:
            raise self._fail(f"index: bytes {pos}..{data_stop} belong to no record (file corrupt)")

    def _read(self, offset: int, size: int) -> bytes:
        """Bytes [offset, offset + size), checked by the caller to lie in the file as it was opened."""
        pieces = []
        try:
            self._file.seek(offset)
            while size:  # unbuffered: a read returns at most ~2 GiB, and what is on disk now
                piece = self._file.read(size)
                if not piece:
                    raise self._fail("truncated (the file shrank while being read)")
                pieces.append(piece)
                size -= len(piece)
        except OSError as e:
            raise InputError(self.path, f"cannot read ({e.strerror or one_line(e)})") from None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    # --- reading ------------------------------------------------------------------------------------------

    @property
    def file_size(self) -> int:
        return self._size

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    @property
    def chunks(self) -> list[ChunkInfo]:
        """Index, start jet, n_jets, byte offset and size of every chunk."""
        return list(self._chunks)

    @property
    def attachment_names(self) -> list[str]:
        return list(self._attachments)

    def chunk_range(self, start: int = 0, stop: int | None = None) -> range:
        """Indices of the chunks holding any of jets [start, stop)."""
        stop = self.n_jets if stop is None else stop
        if not 0 <= start <= stop <= self.n_jets:
            raise InputError(self.path, f"jets {start}:{stop} out of range (the file has {self.n_jets} jets)")
        if start == stop:
            return range(0)
        return range(bisect.bisect_right(self._starts, start) - 1, bisect.bisect_left(self._starts, stop))

    def read_chunk(self, index: int) -> Chunk:
        """Chunk `index` (negative counts from the end), CRC-checked; reads only that chunk's bytes."""
        info = self._chunks[index]
        where = f"{self.path}: chunk {info.index}"
        return parse_chunk(self._checked_record(info, where), info, where, self.version)

    def iter_chunks(self, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        """The chunks holding any of jets [start, stop), whole and in order, one read at a time."""
        for i in self.chunk_range(start, stop):
            yield self.read_chunk(i)

    def attachment(self, name: str) -> bytes:
        """The data of attachment `name`, CRC-checked; KeyError when the file has none of that name."""
        if name not in self._attachments:
            raise KeyError(
                f"{self.path}: no attachment {name!r} (has: {', '.join(self._attachments) or 'none'})"
            )
        info = self._attachments[name]
        where = f"{self.path}: attachment {name!r}"
        return parse_attachment(self._checked_record(info, where), info, where)

    def _checked_record(self, info, where: str) -> bytes:
        """The record at info.offset, info.size bytes, whose trailing CRC32C and index CRC both match."""
        record = self._read(info.offset, info.size)
        body = memoryview(record)[: -CRC.size]
        (stored,) = CRC.unpack_from(record, len(body))
        if crc32c(body) != info.crc or stored != info.crc:
            raise DecodeError(f"{where}: CRC32C mismatch (file corrupt)")
        return record

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ContainerReader {self.path!r} {self.n_chunks} chunks {self.n_jets} jets>"
