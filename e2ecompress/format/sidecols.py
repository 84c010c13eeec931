"""Side tables coded column by column: smaller than an Arrow IPC stream, and decoded bit for bit.

The byte layout is in docs/FORMAT.md ("Side table"). Fixed-width numeric columns (integers, floats,
dates, times, timestamps, durations) leave the Arrow stream: the values of such a column, read as unsigned
integers of the column's width, go through one reversible transform (none, zigzag, zigzag of the wrapping
difference to the previous value, or xor with the previous value; the writer picks the one with the
smallest estimated entropy) and are split into byte planes (byte k of every value, in row order). Planes
that look incompressible are stored as they are. Everything else (the Arrow schema, the validity bitmaps,
the other planes and an Arrow IPC stream of the remaining columns) goes through one zstd frame.

`encode_columns` returns None for a table without such columns. `decode_columns` raises assorted
exceptions (ValueError, pyarrow and zstd errors) on malformed input; the container turns them into
DecodeError. `same_table` is the bit-exact comparison the writer runs on what it decodes before using it.
"""

from __future__ import annotations

import math
import struct
import threading

import numpy as np
import pyarrow as pa
import zstandard

U64 = struct.Struct("<Q")

KIND_IPC = 0  # the column is in the Arrow IPC stream of the remaining columns
KIND_PLANES = 1  # the column is coded as byte planes

NONE, ZIGZAG, DELTA, XOR = 0, 1, 2, 3  # transforms of a column's values (as unsigned integers)
TRANSFORMS = (NONE, ZIGZAG, DELTA, XOR)
HAS_VALIDITY = 1  # descriptor flag: a validity bitmap precedes the column's packed planes

# zstd level when the caller gives none: SMALL_LEVEL for a frame of at most SMALL_BYTES_PER_ROW bytes per row
# and SMALL_MAX_BYTES in all (numeric columns: level 19 takes ~1 µs/jet there, 1% smaller than level 3;
# its worst case, ~0.2 µs/byte on text, stays under ~15 µs/jet), else LEVEL (~1 GB/s on such data).
LEVEL = 3
SMALL_LEVEL = 19
SMALL_BYTES_PER_ROW = 64
SMALL_MAX_BYTES = 1 << 16
STORE_BITS = 7.8  # a plane whose estimated entropy is at least this many bits per byte is stored as is
MAX_RATIO = 32768  # no zstd frame expands more than this (a 4-byte RLE block holds at most 128 KiB)

_WIDTHS = (1, 2, 4, 8)
_LN2 = math.log(2)
_local = threading.local()


def plane_width(dtype: pa.DataType) -> int:
    """Bytes per value of a column coded as planes; 0 for a column that stays in the Arrow stream."""
    t = pa.types
    if not (
        t.is_integer(dtype)
        or t.is_floating(dtype)
        or t.is_date(dtype)
        or t.is_time(dtype)
        or t.is_timestamp(dtype)
        or t.is_duration(dtype)
    ):
        return 0
    width = dtype.bit_width // 8
    return width if width in _WIDTHS else 0


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = _local.__dict__.setdefault("compressors", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor


# --- values, transforms, planes -----------------------------------------------------------------------------


def column_values(column: pa.ChunkedArray | pa.Array, width: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(values as `<u{width}`, packed validity bitmap or None when there is no null) of a column."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    dtype = np.dtype(f"<u{width}")
    if n == 0:
        return np.zeros(0, dtype), None
    values = np.frombuffer(arr.buffers()[1], dtype, count=n, offset=arr.offset * width)
    bitmap = None
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        bitmap = np.packbits(valid, bitorder="little")
    return values, bitmap


def forward(u: np.ndarray, transform: int) -> np.ndarray:
    """The transform of unsigned values u (wrapping arithmetic in u's width)."""
    if transform == NONE:
        return u
    if transform == XOR:
        x = u.copy()
        x[1:] ^= u[:-1]
        return x
    if transform == DELTA:
        d = u.copy()
        d[1:] -= u[:-1]
        u = d
    s = u.view(u.dtype.str.replace("u", "i"))
    return ((s << 1) ^ (s >> (8 * u.dtype.itemsize - 1))).view(u.dtype)


def inverse(x: np.ndarray, transform: int) -> np.ndarray:
    """The values whose `forward(., transform)` is x."""
    if transform == NONE:
        return x
    if transform == XOR:
        return np.bitwise_xor.accumulate(x)
    signed = x.dtype.str.replace("u", "i")
    u = ((x >> 1).view(signed) ^ -((x & 1).view(signed))).view(x.dtype)
    return np.cumsum(u, dtype=x.dtype) if transform == DELTA else u


def split_planes(x: np.ndarray) -> np.ndarray:
    """[width, n] bytes: plane k holds byte k (little-endian) of every value."""
    width = x.dtype.itemsize
    return np.ascontiguousarray(x.view(np.uint8).reshape(len(x), width).T)


def join_planes(planes: np.ndarray, width: int) -> np.ndarray:
    """Inverse of split_planes: the `<u{width}` values of [width, n] planes."""
    return np.ascontiguousarray(planes.T).view(f"<u{width}").reshape(planes.shape[1])


def plane_bits(planes: np.ndarray) -> np.ndarray:
    """Estimated entropy in bits per byte of each plane (order 0, Miller-Madow corrected, at most 8)."""
    width, n = planes.shape
    if n == 0:
        return np.zeros(width)
    offsets = (np.arange(width, dtype=np.intp) * 256)[:, None]
    counts = np.bincount((planes + offsets).ravel(), minlength=256 * width).reshape(width, 256)
    p = counts / n
    h = -(p * np.log2(np.where(p > 0, p, 1.0))).sum(axis=1)
    h += ((counts > 0).sum(axis=1) - 1) / (2 * n * _LN2)
    return np.minimum(h, 8.0)


def best_planes(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(transform, planes, bits per byte of each plane) of the transform with the smallest estimate."""
    width = values.dtype.itemsize
    planes = np.concatenate([split_planes(forward(values, transform)) for transform in TRANSFORMS])
    bits = plane_bits(planes).reshape(len(TRANSFORMS), width)
    best = int(np.argmin(bits.sum(axis=1)))  # the first of equal estimates: NONE before the others
    return TRANSFORMS[best], planes[best * width : (best + 1) * width], bits[best]


# --- the record ---------------------------------------------------------------------------------------------


def _ipc_stream(table: pa.Table) -> bytes:
    """The table as an uncompressed Arrow IPC stream (the zstd frame around it compresses it)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def pick_level(size: int, n_rows: int) -> int:
    """The zstd level for a frame of `size` bytes in a table of `n_rows` rows."""
    small = size <= min(SMALL_BYTES_PER_ROW * n_rows, SMALL_MAX_BYTES)
    return SMALL_LEVEL if small else LEVEL


def encode_columns(table: pa.Table, level: int | None = None) -> bytes | None:
    """The column coding of a table (after the coding byte), or None when no column is coded as planes.

    level: zstd level; None picks one by size (pick_level)."""
    schema = table.schema
    widths = [plane_width(field.type) for field in schema]
    if not any(widths):
        return None
    descriptors = bytearray()
    packed: list[bytes | memoryview] = []
    stored: list[bytes | memoryview] = []
    rest = []
    for i, width in enumerate(widths):
        if not width:
            descriptors.append(KIND_IPC)
            rest.append(i)
            continue
        values, bitmap = column_values(table.column(i), width)
        transform, planes, bits = best_planes(values)
        mask = sum(1 << k for k in range(width) if bits[k] >= STORE_BITS)
        flags = HAS_VALIDITY if bitmap is not None else 0
        descriptors += bytes([KIND_PLANES, transform, flags, mask])
        if bitmap is not None:
            packed.append(bitmap.tobytes())
        for k in range(width):
            (stored if mask >> k & 1 else packed).append(memoryview(planes[k]))
    others = b""
    if rest:  # field metadata is in the schema above; the stream keeps only the types
        sub = table.select(rest)
        bare = pa.schema([field.remove_metadata() for field in sub.schema])
        others = _ipc_stream(pa.Table.from_arrays(sub.columns, schema=bare))
    head = schema.serialize().to_pybytes()
    body = b"".join([U64.pack(len(head)), head, descriptors, U64.pack(len(others)), others, *packed])
    if level is None:
        level = pick_level(len(body), table.num_rows)
    frame = _compressor(level).compress(body)
    return b"".join([U64.pack(len(body)), U64.pack(len(frame)), frame, *stored])


class _Cursor:
    """Bounds-checked reads from a byte string."""

    def __init__(self, data: bytes | memoryview, what: str):
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    def take(self, size: int) -> memoryview:
        if size > len(self.data) - self.pos:
            raise ValueError(f"{self.what} ends {size - (len(self.data) - self.pos)} bytes early")
        piece = self.data[self.pos : self.pos + size]
        self.pos += size
        return piece

    def u64(self) -> int:
        return U64.unpack(self.take(U64.size))[0]

    def u8s(self, count: int) -> bytes:
        return bytes(self.take(count))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{self.what} has {len(self.data) - self.pos} bytes too many")


def decode_columns(data: bytes | memoryview, n_rows: int) -> pa.Table:
    """The table of a column coding (after the coding byte); assorted errors if malformed."""
    outer = _Cursor(data, "side table")
    body_len = outer.u64()
    frame_len = outer.u64()
    frame = outer.take(frame_len)
    if body_len > MAX_RATIO * frame_len or zstandard.frame_content_size(frame) != body_len:
        raise ValueError("zstd frame size does not match")
    body = _Cursor(_decompressor().decompress(frame, allow_extra_data=False), "zstd frame")
    if len(body.data) != body_len:
        raise ValueError("zstd frame size does not match")
    stored = _Cursor(outer.take(len(outer.data) - outer.pos), "stored planes")

    schema = pa.ipc.read_schema(pa.py_buffer(body.take(body.u64())))
    planned: list[tuple[int, int, int, int] | None] = []  # per field: (width, transform, flags, mask)
    for field in schema:
        (kind,) = body.u8s(1)
        if kind == KIND_IPC:
            planned.append(None)
            continue
        width = plane_width(field.type)
        if kind != KIND_PLANES or not width:
            raise ValueError(f"column {field.name!r}: bad kind {kind} for type {field.type}")
        transform, flags, mask = body.u8s(3)
        if transform not in TRANSFORMS or flags & ~HAS_VALIDITY or mask >> width:
            raise ValueError(f"column {field.name!r}: bad descriptor {transform}, {flags}, {mask}")
        planned.append((width, transform, flags, mask))
    others = body.take(body.u64())

    columns: list[pa.Array | pa.ChunkedArray | None] = [None] * len(schema)
    rest = [i for i, plan in enumerate(planned) if plan is None]
    if rest:
        table = pa.ipc.open_stream(pa.py_buffer(others)).read_all()
        if table.num_columns != len(rest) or table.num_rows != n_rows:
            raise ValueError(f"IPC part has {table.num_columns} columns and {table.num_rows} rows")
        for i, column in zip(rest, table.columns, strict=True):
            if column.type != schema.field(i).type:
                raise ValueError(f"column {schema.field(i).name!r}: IPC part has type {column.type}")
            columns[i] = column
    elif len(others):
        raise ValueError("IPC part without columns")
    for i, plan in enumerate(planned):
        if plan is None:
            continue
        width, transform, flags, mask = plan
        bitmap = body.take((n_rows + 7) // 8) if flags & HAS_VALIDITY else None
        sources = [stored.take(n_rows) if mask >> k & 1 else body.take(n_rows) for k in range(width)]
        planes = np.empty((width, n_rows), np.uint8)  # n_rows <= the bytes just taken: no huge allocation
        for k, source in enumerate(sources):
            planes[k] = np.frombuffer(source, np.uint8)
        values = inverse(join_planes(planes, width), transform)
        validity = None if bitmap is None else pa.py_buffer(bytes(bitmap))
        columns[i] = pa.Array.from_buffers(schema.field(i).type, n_rows, [validity, pa.py_buffer(values)])
    body.end()
    stored.end()
    return pa.Table.from_arrays(columns, schema=schema)


def same_table(a: pa.Table, b: pa.Table) -> bool:
    """Same schema (with all metadata), rows and values; plane-coded columns compared bit for bit (also the
    values under nulls), the others with equals() or, where that fails (NaN), by their IPC bytes."""
    if a.num_rows != b.num_rows or not a.schema.equals(b.schema, check_metadata=True):
        return False
    for i, field in enumerate(a.schema):
        width = plane_width(field.type)
        if not width:  # equals() is false for NaN; then the bytes of the two IPC streams must agree
            same = a.column(i).equals(b.column(i)) or _ipc_stream(a.select([i])) == _ipc_stream(b.select([i]))
            if not same:
                return False
            continue
        (va, ma), (vb, mb) = column_values(a.column(i), width), column_values(b.column(i), width)
        if (ma is None) != (mb is None) or (ma is not None and not np.array_equal(ma, mb)):
            return False
        if not np.array_equal(va, vb):
            return False
    return True
