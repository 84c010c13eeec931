"""The .e2ez container's byte layout (docs/FORMAT.md): fixed-width records, JSON, side tables, CRC32C.

Pure functions on bytes shared by the writer (`e2ecompress.format.writer`) and the reader
(`e2ecompress.format.reader`). Parsers take `where` ("x.e2ez: chunk 3") and raise `DecodeError`
with it; they never trust a length before checking it against the bytes they were given.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import pyarrow as pa

from e2ecompress import _core
from e2ecompress.errors import DecodeError, one_line
from e2ecompress.format import sidecols

MAGIC = b"E2EZ"
FORMAT_VERSION = 2  # what the writer writes
READ_VERSIONS = (1, 2)  # what the reader reads: version 1 side tables are a bare Arrow IPC stream
CHUNK_TAG = b"CHNK"
ATTACHMENT_TAG = b"ATCH"

# Every struct is little-endian without padding; the field lists are in docs/FORMAT.md.
PREAMBLE = struct.Struct("<4sIII")  # magic, version, header_len, header_crc
TRAILER = struct.Struct("<QQI4sI")  # footer_offset, footer_size, footer_crc, magic, version
CHUNK_HEAD = struct.Struct("<4sIQQIQ")  # tag, index, start, n_jets, n_streams, table_len
STREAM_LEN = struct.Struct("<Q")  # after the u8 name length and the name
ATTACHMENT_HEAD = struct.Struct("<4sHQ")  # tag, name_len, data_len
FOOTER_HEAD = struct.Struct("<QQII")  # n_chunks, total_jets, n_attachments, meta_len
CHUNK_ENTRY = struct.Struct("<QQQQI")  # offset, size, start, n_jets, crc
ATTACHMENT_ENTRY = struct.Struct("<QQIH")  # offset, size, crc, name_len (the name follows)
CRC = struct.Struct("<I")
FOOTER_PLACE_SIZE = 16  # the trailer's footer_offset and footer_size, covered by the footer CRC

MAX_STREAM_NAME = 255
MAX_ATTACHMENT_NAME = 0xFFFF
MIN_CHUNK_SIZE = CHUNK_HEAD.size + CRC.size
MIN_ATTACHMENT_SIZE = ATTACHMENT_HEAD.size + 1 + CRC.size


class ChunkInfo(NamedTuple):
    """Where a chunk lies: jets [start, start + n_jets) in bytes [offset, offset + size)."""

    index: int
    start: int
    n_jets: int
    offset: int
    size: int
    crc: int

    @property
    def stop(self) -> int:
        return self.start + self.n_jets


class AttachmentInfo(NamedTuple):
    """Where an attachment's record lies."""

    name: str
    offset: int
    size: int
    crc: int


class Chunk(NamedTuple):
    """One decoded chunk: jets [start, start + n_jets), its named byte streams and its side table."""

    index: int
    start: int
    n_jets: int
    streams: dict[str, bytes]
    table: pa.Table
    table_bytes: int = 0  # the coded side table's size in the record

    @property
    def stop(self) -> int:
        return self.start + self.n_jets


def crc32c(*pieces: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C of the pieces one after another."""
    for piece in pieces:
        value = _core.crc32c(piece, value)
    return value


# --- JSON ---------------------------------------------------------------------------------------------------


def encode_json(obj: Mapping[str, Any], what: str) -> bytes:
    """A mapping as strict UTF-8 JSON (no NaN/inf); TypeError/ValueError when it is not JSON-safe."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"{what} must be a dict, got {type(obj).__name__}")
    try:
        text = json.dumps(dict(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what} must be JSON-serialisable (no NaN/inf): {e}") from None
    return text.encode("utf-8")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(data: bytes, where: str) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes; DecodeError for anything else."""
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DecodeError(f"{where}: not valid UTF-8 JSON (file corrupt)") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"{where}: not a JSON object (file corrupt)")
    return obj


# --- side tables --------------------------------------------------------------------------------------------

SIDE_IPC = 0  # version 2 side table coding byte: an Arrow IPC stream follows (the whole table in version 1)
SIDE_COLUMNS = 1  # the column coding of e2ecompress.format.sidecols follows


def encode_table(table: pa.Table) -> pa.Buffer:
    """A table as one Arrow IPC stream with zstd-compressed buffers (schema and metadata kept)."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def decode_table(data: bytes | memoryview, n_rows: int, where: str) -> pa.Table:
    """The table of an IPC stream, fully validated; DecodeError when it is malformed or has the wrong rows."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        table.validate(full=True)
    except Exception as e:  # pyarrow raises several types (ArrowInvalid, OSError, ...) for bad input
        raise DecodeError(f"{where}: side table unreadable ({one_line(e)})") from None
    if table.num_rows != n_rows:
        raise DecodeError(f"{where}: side table has {table.num_rows} rows, expected {n_rows} (file corrupt)")
    return table


def encode_side_table(table: pa.Table, level: int | None = None) -> bytes:
    """A version 2 side table: the column coding when the table has columns it applies to and it decodes
    back bit for bit (checked here), else the Arrow IPC stream of encode_table; a coding byte first.

    level: the column coding's zstd level (None: sidecols.pick_level)."""
    try:
        body = sidecols.encode_columns(table, level)
        if body is not None and not sidecols.same_table(table, sidecols.decode_columns(body, table.num_rows)):
            body = None
    except Exception:  # any surprise in the column coding: the IPC stream below is always correct
        body = None
    if body is None:
        return bytes([SIDE_IPC]) + encode_table(table).to_pybytes()
    return bytes([SIDE_COLUMNS]) + body


def decode_side_table(data: bytes | memoryview, n_rows: int, where: str, version: int) -> pa.Table:
    """The side table of a chunk record of format `version`; DecodeError when it is malformed."""
    if version == 1:
        return decode_table(data, n_rows, where)
    if len(data) == 0:
        raise DecodeError(f"{where}: side table has no coding byte (file corrupt)")
    coding, body = data[0], memoryview(data)[1:]
    if coding == SIDE_IPC:
        return decode_table(body, n_rows, where)
    if coding != SIDE_COLUMNS:
        raise DecodeError(f"{where}: unknown side table coding {coding} (file corrupt)")
    try:
        table = sidecols.decode_columns(body, n_rows)
        table.validate(full=True)
    except Exception as e:  # ValueError, pyarrow and zstd errors for bad input
        raise DecodeError(f"{where}: side table unreadable ({one_line(e)})") from None
    if table.num_rows != n_rows:
        raise DecodeError(f"{where}: side table has {table.num_rows} rows, expected {n_rows} (file corrupt)")
    return table


# --- records ------------------------------------------------------------------------------------------------


def check_stream_name(name: object) -> bytes:
    """The ASCII bytes of a stream name (printable, 1-255 characters); ValueError otherwise."""
    if not isinstance(name, str) or not name or not name.isascii() or not name.isprintable():
        raise ValueError(f"stream names must be printable ASCII strings, got {name!r}")
    if len(name) > MAX_STREAM_NAME:
        raise ValueError(f"stream name {name[:20]!r}... is longer than {MAX_STREAM_NAME} characters")
    return name.encode("ascii")


def check_attachment_name(name: object) -> bytes:
    """The UTF-8 bytes of an attachment name (non-empty, printable, < 64 KiB); ValueError otherwise."""
    if not isinstance(name, str) or not name or not name.isprintable():
        raise ValueError(f"attachment names must be non-empty printable strings, got {name!r}")
    raw = name.encode("utf-8")
    if len(raw) > MAX_ATTACHMENT_NAME:
        raise ValueError(f"attachment name {name[:20]!r}... is longer than {MAX_ATTACHMENT_NAME} bytes")
    return raw


def chunk_head(
    index: int, start: int, n_jets: int, streams: list[tuple[bytes, int]], table_len: int
) -> bytes:
    """Fixed chunk head plus the stream directory (name, length) of a chunk record."""
    parts = [CHUNK_HEAD.pack(CHUNK_TAG, index, start, n_jets, len(streams), table_len)]
    for name, length in streams:
        parts += [bytes([len(name)]), name, STREAM_LEN.pack(length)]
    return b"".join(parts)


def parse_chunk(record: bytes, info: ChunkInfo, where: str, version: int = FORMAT_VERSION) -> Chunk:
    """A chunk record (CRC already checked) of a file of format `version` -> Chunk; DecodeError when it is
    malformed or disagrees with the index."""
    end = len(record) - CRC.size
    if end < CHUNK_HEAD.size:
        raise DecodeError(f"{where}: record too short (file corrupt)")
    tag, index, start, n_jets, n_streams, table_len = CHUNK_HEAD.unpack_from(record)
    if tag != CHUNK_TAG:
        raise DecodeError(f"{where}: not a chunk record (file corrupt)")
    if (index, start, n_jets) != (info.index, info.start, info.n_jets):
        raise DecodeError(
            f"{where}: record says chunk {index} with jets {start}+{n_jets}, the index says "
            f"{info.index} with {info.start}+{info.n_jets} (file corrupt)"
        )
    pos = CHUNK_HEAD.size
    directory: list[tuple[str, int]] = []
    for _ in range(n_streams):  # each entry is >= 9 bytes, so a bad count fails the bounds check quickly
        if pos + 1 > end or pos + 1 + record[pos] + STREAM_LEN.size > end:
            raise DecodeError(f"{where}: stream directory runs past the record (file corrupt)")
        name_len = record[pos]
        raw = record[pos + 1 : pos + 1 + name_len]
        (length,) = STREAM_LEN.unpack_from(record, pos + 1 + name_len)
        pos += 1 + name_len + STREAM_LEN.size
        try:
            name = raw.decode("ascii")
            check_stream_name(name)
        except ValueError:
            raise DecodeError(f"{where}: bad stream name {raw!r} (file corrupt)") from None
        directory.append((name, length))
    if len({name for name, _ in directory}) != len(directory):
        raise DecodeError(f"{where}: a stream name appears twice (file corrupt)")
    streams: dict[str, bytes] = {}
    for name, length in directory:
        if length > end - pos:
            raise DecodeError(f"{where}: stream {name!r} runs past the record (file corrupt)")
        streams[name] = record[pos : pos + length]
        pos += length
    if table_len != end - pos:
        raise DecodeError(
            f"{where}: side table is {table_len} bytes but {end - pos} remain in the record (file corrupt)"
        )
    table = decode_side_table(memoryview(record)[pos:end], n_jets, where, version)
    return Chunk(index, start, n_jets, streams, table, table_len)


def attachment_head(name: bytes, data_len: int) -> bytes:
    """Fixed attachment head plus the name."""
    return ATTACHMENT_HEAD.pack(ATTACHMENT_TAG, len(name), data_len) + name


def parse_attachment(record: bytes, info: AttachmentInfo, where: str) -> bytes:
    """An attachment record (CRC already checked) -> its data; DecodeError if it disagrees with the index."""
    end = len(record) - CRC.size
    if end < ATTACHMENT_HEAD.size:
        raise DecodeError(f"{where}: record too short (file corrupt)")
    tag, name_len, data_len = ATTACHMENT_HEAD.unpack_from(record)
    pos = ATTACHMENT_HEAD.size + name_len
    if tag != ATTACHMENT_TAG or pos > end or data_len != end - pos:
        raise DecodeError(f"{where}: malformed attachment record (file corrupt)")
    if record[ATTACHMENT_HEAD.size : pos] != info.name.encode("utf-8"):
        raise DecodeError(f"{where}: record holds another attachment's name (file corrupt)")
    return record[pos:end]


# --- footer -------------------------------------------------------------------------------------------------


def pack_footer(
    chunks: list[ChunkInfo], attachments: list[AttachmentInfo], total_jets: int, meta: bytes
) -> bytes:
    """The footer: counts, chunk index, attachment index, footer_meta JSON."""
    parts = [FOOTER_HEAD.pack(len(chunks), total_jets, len(attachments), len(meta))]
    parts += [CHUNK_ENTRY.pack(c.offset, c.size, c.start, c.n_jets, c.crc) for c in chunks]
    for a in attachments:
        name = a.name.encode("utf-8")
        parts += [ATTACHMENT_ENTRY.pack(a.offset, a.size, a.crc, len(name)), name]
    parts.append(meta)
    return b"".join(parts)


def parse_footer(footer: bytes, where: str) -> tuple[list[ChunkInfo], list[AttachmentInfo], int, bytes]:
    """A footer (CRC already checked) -> (chunks, attachments, total_jets, footer_meta JSON bytes)."""
    if len(footer) < FOOTER_HEAD.size:
        raise DecodeError(f"{where}: too short (file corrupt)")
    n_chunks, total_jets, n_attachments, meta_len = FOOTER_HEAD.unpack_from(footer)
    pos = FOOTER_HEAD.size
    if n_chunks > (len(footer) - pos) // CHUNK_ENTRY.size:
        raise DecodeError(f"{where}: {n_chunks} chunks do not fit in the index (file corrupt)")
    chunks = []
    for i in range(n_chunks):
        offset, size, start, n_jets, crc = CHUNK_ENTRY.unpack_from(footer, pos)
        chunks.append(ChunkInfo(i, start, n_jets, offset, size, crc))
        pos += CHUNK_ENTRY.size
    attachments = []
    for _ in range(n_attachments):  # each entry is >= 23 bytes, so a bad count fails the bounds check quickly
        if pos + ATTACHMENT_ENTRY.size > len(footer):
            raise DecodeError(f"{where}: attachment index runs past the footer (file corrupt)")
        offset, size, crc, name_len = ATTACHMENT_ENTRY.unpack_from(footer, pos)
        pos += ATTACHMENT_ENTRY.size
        raw = footer[pos : pos + name_len]
        pos += name_len
        try:
            if len(raw) != name_len:
                raise ValueError
            name = raw.decode("utf-8")
            check_attachment_name(name)
        except ValueError:
            raise DecodeError(f"{where}: bad attachment name {raw[:40]!r} (file corrupt)") from None
        attachments.append(AttachmentInfo(name, offset, size, crc))
    if meta_len != len(footer) - pos:
        raise DecodeError(
            f"{where}: footer_meta is {meta_len} bytes but {len(footer) - pos} remain (file corrupt)"
        )
    return chunks, attachments, total_jets, footer[pos:]
