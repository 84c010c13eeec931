"""Side tables coded column by column (format 2): bit-exact round trips, old files, malformed records."""

from __future__ import annotations

import decimal
import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ecompress.errors import DecodeError
from e2ecompress.format import FORMAT_VERSION, ContainerReader, ContainerWriter, sidecols
from e2ecompress.format import container as layout
from e2ecompress.io import open_jets
from e2ecompress.io.batch import empty_table

FIXTURES = Path(__file__).parent / "fixtures"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

INTS = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
FLOATS = [pa.float16(), pa.float32(), pa.float64()]
TEMPORAL = [
    pa.timestamp("s"),
    pa.timestamp("ms", tz="Europe/Zurich"),
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("ns"),
    pa.date32(),
    pa.date64(),
    pa.time32("s"),
    pa.time32("ms"),
    pa.time64("us"),
    pa.time64("ns"),
    pa.duration("s"),
    pa.duration("ns"),
]
PLANE_TYPES = INTS + FLOATS + TEMPORAL
OTHER_TYPES = [
    pa.bool_(),
    pa.string(),
    pa.large_string(),
    pa.binary(),
    pa.large_binary(),
    pa.binary(3),
    pa.list_(pa.int32()),
    pa.large_list(pa.int64()),
    pa.list_(pa.float32(), 2),
    pa.struct([pa.field("z", pa.float32(), metadata={"unit": "cm"}), pa.field("n", pa.int32())]),
    pa.map_(pa.string(), pa.int32()),
    pa.dictionary(pa.int8(), pa.string()),
    pa.decimal128(10, 3),
    pa.decimal256(40, 5),
    pa.month_day_nano_interval(),
    pa.null(),
]
_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def numeric_array(dtype: pa.DataType, n: int, rng: np.random.Generator, nulls: bool = True) -> pa.Array:
    """n values of a fixed-width numeric type: any bit pattern (floats: NaNs, -0.0, subnormals included)."""
    mask = rng.random(n) < 0.2 if nulls else None
    if pa.types.is_time(dtype) or pa.types.is_date64(dtype):
        day = 86_400_000 if pa.types.is_date64(dtype) else _DAY[dtype.unit]
        values = rng.integers(0, day, n) if pa.types.is_time(dtype) else rng.integers(-9, 9, n) * day
        storage = pa.array(values.astype(f"<i{dtype.bit_width // 8}"), mask=mask)
        return storage.view(dtype)
    width = dtype.bit_width // 8
    raw = np.frombuffer(rng.bytes(n * width), f"<u{width}")
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        np_type = {pa.float16(): np.float16, pa.float32(): np.float32, pa.float64(): np.float64}.get(dtype)
        return pa.array(raw.view(np_type or dtype.to_pandas_dtype()), dtype, mask=mask)
    return pa.array(raw.view(f"<i{width}"), mask=mask).view(dtype)


def other_array(dtype: pa.DataType, n: int, rng: np.random.Generator) -> pa.Array:
    """n values (some null) of one of OTHER_TYPES."""
    t = pa.types
    if t.is_null(dtype):
        return pa.nulls(n)
    if t.is_dictionary(dtype):
        indices = pa.array(rng.integers(0, 3, n).astype(np.int8), mask=rng.random(n) < 0.2)
        return pa.DictionaryArray.from_arrays(indices, pa.array(["q", "g", "ü"]))
    if t.is_boolean(dtype):
        values = [bool(v) for v in rng.integers(0, 2, n)]
    elif t.is_string(dtype) or t.is_large_string(dtype):
        values = [f"jet-{i}-é" for i in range(n)]
    elif t.is_fixed_size_binary(dtype):
        values = [rng.bytes(3) for _ in range(n)]
    elif t.is_binary(dtype) or t.is_large_binary(dtype):
        values = [rng.bytes(i % 5) for i in range(n)]
    elif t.is_fixed_size_list(dtype):
        values = [[float(v) for v in rng.random(2, np.float32)] for _ in range(n)]
    elif t.is_list(dtype) or t.is_large_list(dtype):
        values = [[int(v) for v in rng.integers(-9, 9, i % 4)] for i in range(n)]
    elif t.is_struct(dtype):
        values = [{"z": float(i) / 4, "n": i} for i in range(n)]
    elif t.is_map(dtype):
        values = [[("a", i), ("b", -i)][: i % 3] for i in range(n)]
    elif t.is_decimal(dtype):
        values = [decimal.Decimal(int(v)) / 8 for v in rng.integers(-1000, 1000, n)]
    elif t.is_interval(dtype):
        values = [pa.MonthDayNano([i, -i, i * 1000]) for i in range(n)]
    else:
        raise AssertionError(dtype)
    return pa.array([v if i % 5 != 2 else None for i, v in enumerate(values)], dtype)


def plane_bits(column: pa.ChunkedArray | pa.Array) -> tuple[list[bool], bytes]:
    """Validity and the raw value bytes (also under nulls) of a fixed-width column, read independently."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = arr.type.bit_width // 8
    valid = arr.is_valid().to_pylist()
    if len(arr) == 0:
        return valid, b""
    data = arr.buffers()[1]
    return valid, data.to_pybytes()[arr.offset * width : (arr.offset + len(arr)) * width]


def encode(table: pa.Table) -> bytes:
    return layout.encode_side_table(table)


def decode(data: bytes, n_rows: int) -> pa.Table:
    return layout.decode_side_table(data, n_rows, "x.e2ez: chunk 0", FORMAT_VERSION)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def assert_exact(got: pa.Table, want: pa.Table) -> None:
    """Same schema with every metadata, same values; fixed-width columns bit for bit, the others equal
    (or, with NaN, which equals() calls unequal, the same IPC bytes)."""
    assert got.schema.equals(want.schema, check_metadata=True)
    assert got.num_rows == want.num_rows
    for i, field in enumerate(want.schema):
        if sidecols.plane_width(field.type):
            assert plane_bits(got.column(i)) == plane_bits(want.column(i)), field.name
        else:
            same = got.column(i).equals(want.column(i))
            assert same or ipc_bytes(got.select([i])) == ipc_bytes(want.select([i])), field.name


def round_trip(table: pa.Table, coding: int = layout.SIDE_COLUMNS) -> pa.Table:
    data = encode(table)
    assert data[0] == coding
    got = decode(data, table.num_rows)
    assert_exact(got, table)
    return got


def generated_like(n: int, seed: int = 0) -> pa.Table:
    """Columns like those of generated jets: float64 physics values, small counts, a running jet id."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "y": pa.array(rng.integers(0, 2, n).astype(np.float32)),
            "pt": rng.uniform(70, 300, n),
            "eta": rng.uniform(-1.5, 1.5, n),
            "phi": rng.uniform(-np.pi, np.pi, n),
            "parton_id": pa.array(rng.choice([1, 2, 3, 21], n).astype(np.int32)),
            "n_constituents": pa.array(rng.poisson(20, n).astype(np.int32)),
            "jet_uid": pa.array(np.arange(n, dtype=np.int64) + 563734153965600768),
        }
    )


# --- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", PLANE_TYPES, ids=str)
def test_plane_types_round_trip(dtype):
    rng = np.random.default_rng(0)
    for n in [0, 1, 7, 300]:
        table = pa.table({"v": numeric_array(dtype, n, rng), "w": numeric_array(dtype, n, rng, nulls=False)})
        round_trip(table)


@pytest.mark.parametrize("dtype", OTHER_TYPES, ids=str)
def test_other_types_round_trip_beside_planes(dtype):
    rng = np.random.default_rng(1)
    for n in [0, 1, 9]:
        table = pa.table({"x": other_array(dtype, n, rng), "pt": numeric_array(pa.float64(), n, rng)})
        got = round_trip(table)
        assert got.column("x").type == dtype


@pytest.mark.parametrize("dtype", OTHER_TYPES, ids=str)
def test_tables_without_plane_columns_stay_ipc(dtype):
    rng = np.random.default_rng(2)
    table = pa.table({"x": other_array(dtype, 6, rng)})
    round_trip(table, layout.SIDE_IPC)


def test_many_types_with_metadata_in_one_table():
    rng = np.random.default_rng(3)
    n = 40
    fields, arrays = [], []
    for i, dtype in enumerate(PLANE_TYPES + OTHER_TYPES):
        metadata = {"unit": f"u{i}", b"\xff": b"\x00"} if i % 3 == 0 else None
        fields.append(pa.field(f"c{i}", dtype, nullable=i % 4 != 1, metadata=metadata))
        if dtype in PLANE_TYPES:
            arrays.append(numeric_array(dtype, n, rng, nulls=i % 4 != 1))
        else:
            arrays.append(other_array(dtype, n, rng))
    schema = pa.schema(fields, metadata={"e2ecompress": json.dumps({"format": "e2e-jets"}), "note": "ünï"})
    table = pa.Table.from_arrays(arrays, schema=schema)
    got = round_trip(table)
    assert got.schema.field("c0").metadata == {b"unit": b"u0", b"\xff": b"\x00"}
    assert not got.schema.field("c1").nullable
    assert got.schema.metadata == schema.metadata


def test_float_bit_patterns_are_kept():
    specials = {
        np.float64: [0x7FF8000000000001, 0xFFF4000000000123, 0x7FF0000000000000, 0x8000000000000000, 1],
        np.float32: [0x7FC00001, 0xFFA00123, 0x7F800000, 0x80000000, 1],
        np.float16: [0x7E01, 0xFD23, 0x7C00, 0x8000, 1],
    }
    for np_type, patterns in specials.items():
        width = np.dtype(np_type).itemsize
        bits = np.array(patterns * 30, f"<u{width}")
        table = pa.table({"x": pa.array(bits.view(np_type))})
        got = round_trip(table)
        out = np.frombuffer(got.column("x").chunk(0).buffers()[1], f"<u{width}", count=len(bits))
        assert np.array_equal(out, bits), np_type
        assert not table.equals(got)  # equals() is false for NaN: the bits above are the real check


def test_values_under_nulls_offsets_and_chunks_are_kept():
    rng = np.random.default_rng(4)
    values = np.arange(100, dtype=np.int64) * 1_000_003
    validity = np.packbits(rng.random(100) < 0.7, bitorder="little")
    arr = pa.Array.from_buffers(pa.int64(), 100, [pa.py_buffer(validity), pa.py_buffer(values)])
    table = pa.table({"a": arr, "b": numeric_array(pa.float32(), 100, rng)})
    for piece in [table, table.slice(3, 61), table.slice(13, 0), pa.concat_tables([table.slice(5, 9)] * 3)]:
        round_trip(piece)
    got = round_trip(table)
    assert got.column("a").chunk(0).buffers()[1].to_pybytes() == values.tobytes()  # also under the nulls


def test_empty_tables():
    round_trip(generated_like(0))
    schema = pa.schema([pa.field("pt", pa.float64(), metadata={"a": "b"})], metadata={"c": "d"})
    round_trip(schema.empty_table())
    for n in [0, 5]:
        round_trip(empty_table(n), layout.SIDE_IPC)
        round_trip(empty_table(n).replace_schema_metadata({"k": "v"}), layout.SIDE_IPC)


def test_duplicate_names_and_all_null_columns():
    arrays = [pa.array([1, 2, 3]), pa.array(["a", "b", "c"]), pa.array([1.5, None, -0.0])]
    arrays.append(pa.nulls(3, pa.int64()))
    round_trip(pa.Table.from_arrays(arrays, names=["x", "x", "y", "x"]))


def test_extension_type_column():
    class Label(pa.ExtensionType):
        def __init__(self):
            super().__init__(pa.int16(), "e2e.test.label")

        def __arrow_ext_serialize__(self):
            return b""

        @classmethod
        def __arrow_ext_deserialize__(cls, storage_type, serialized):
            return cls()

    labels = pa.ExtensionArray.from_storage(Label(), pa.array([1, 2, None], pa.int16()))
    table = pa.table({"label": labels, "pt": [1.0, 2.0, 3.0]})
    pa.register_extension_type(Label())
    try:
        got = round_trip(table)
        assert isinstance(got.column("label").type, Label)
    finally:
        pa.unregister_extension_type("e2e.test.label")
    got = decode(encode(table), 3)  # unregistered: the storage type with the extension's field metadata
    assert got.column("label").type == pa.int16()


@FUZZ
@given(
    dtype=st.sampled_from(PLANE_TYPES),
    n=st.integers(0, 70),
    seed=st.integers(0, 2**32 - 1),
    cut=st.tuples(st.integers(0, 70), st.integers(0, 70)),
    nulls=st.booleans(),
    kind=st.sampled_from(["random", "sorted", "constant", "small"]),
)
def test_fuzz_plane_columns(dtype, n, seed, cut, nulls, kind):
    rng = np.random.default_rng(seed)
    arr = numeric_array(dtype, n, rng, nulls)
    if kind != "random" and n and not pa.types.is_time(dtype):
        width = dtype.bit_width // 8
        raw = np.frombuffer(arr.buffers()[1], f"<u{width}", count=n).copy()
        raw = {"sorted": np.sort(raw), "constant": np.full_like(raw, raw[0]), "small": raw % 7}[kind]
        if pa.types.is_date64(dtype):
            raw = raw - raw % 86_400_000
        arr = pa.Array.from_buffers(dtype, n, [arr.buffers()[0], pa.py_buffer(raw)], offset=0)
    table = pa.table({"v": arr})
    start, length = min(cut[0], n), cut[1]
    round_trip(table.slice(start, length))


def test_transforms_invert_at_the_extremes():
    rng = np.random.default_rng(5)
    for width in (1, 2, 4, 8):
        dtype = np.dtype(f"<u{width}")
        top = np.iinfo(dtype).max
        edges = np.array([0, top, 1, top - 1, top // 2, top // 2 + 1, 0], dtype)
        values = np.concatenate([edges, rng.integers(0, top, 50, dtype)])
        for transform in sidecols.TRANSFORMS:
            coded = sidecols.forward(values, transform)
            assert coded.dtype == dtype
            assert np.array_equal(sidecols.inverse(coded, transform), values), (width, transform)
        planes = sidecols.split_planes(values)
        assert planes.shape == (width, len(values))
        assert np.array_equal(sidecols.join_planes(planes, width), values)


def test_transform_choice():
    n = 512
    uid = np.arange(n, dtype=np.uint64) + np.uint64(563734153965600768)
    assert sidecols.best_planes(uid)[0] == sidecols.DELTA
    small = np.random.default_rng(6).integers(-3, 4, n).astype(np.int32).view(np.uint32)
    assert sidecols.best_planes(small)[0] == sidecols.ZIGZAG
    transform, _, bits = sidecols.best_planes(np.random.default_rng(7).normal(size=n).view(np.uint64))
    assert transform == sidecols.NONE
    assert (bits[:6] >= sidecols.STORE_BITS).all()  # random mantissa bytes: stored, not compressed
    assert bits[7] < 4


def test_smaller_than_ipc():
    table = generated_like(512)
    ipc, columns = layout.encode_table(table).size, len(encode(table))
    assert columns < 0.88 * ipc, (columns, ipc)  # uniform float64: ~6.5 of 8 bytes are random
    running = pa.table({"jet_uid": pa.array(np.arange(512, dtype=np.int64) + 10**15)})
    assert len(encode(running)) < 0.2 * layout.encode_table(running).size  # 136 vs 888 bytes


def test_level_is_only_a_writer_choice():
    table = generated_like(300)
    for level in [1, 3, 19, None]:
        data = layout.encode_side_table(table, level)
        assert data[0] == layout.SIDE_COLUMNS
        assert_exact(decode(data, 300), table)
    assert sidecols.pick_level(100, 512) == sidecols.SMALL_LEVEL
    assert sidecols.pick_level(64 * 512 + 1, 512) == sidecols.LEVEL
    assert sidecols.pick_level(sidecols.SMALL_MAX_BYTES + 1, 10**6) == sidecols.LEVEL


def test_falls_back_to_ipc_when_not_exact(monkeypatch):
    table = generated_like(20)
    real = sidecols.decode_columns
    monkeypatch.setattr(sidecols, "decode_columns", lambda data, n: real(data, n).slice(0, n - 1))
    round_trip(table, layout.SIDE_IPC)
    monkeypatch.setattr(sidecols, "decode_columns", lambda data, n: 1 / 0)
    round_trip(table, layout.SIDE_IPC)


def test_nan_in_an_ipc_column_keeps_the_column_coding():
    table = pa.table(
        {
            "hits": pa.array([[1.0, float("nan")], [], None], pa.list_(pa.float64())),
            "pt": [1.0, float("nan"), -0.0],
        }
    )
    round_trip(table)


# --- files --------------------------------------------------------------------------------------------------


def test_container_round_trip_writes_format_2(tmp_path):
    path = tmp_path / "x.e2ez"
    tables = [generated_like(512, 0), generated_like(100, 1), empty_table(3)]
    with ContainerWriter(path, {}) as w:
        for table in tables:
            w.write_chunk(table.num_rows, {"s": b"x"}, table)
    assert path.read_bytes()[4:8] == struct.pack("<I", 2) == path.read_bytes()[-4:]
    with ContainerReader(path) as r:
        assert r.version == FORMAT_VERSION == 2
        for chunk, table in zip(r.iter_chunks(), tables, strict=True):
            assert_exact(chunk.table, table)


@pytest.mark.parametrize("name", ["v1_bounded_0.01.e2ez", "v1_lossless.e2ez"])
def test_format_1_fixtures_still_decode(name):
    expected = json.loads((FIXTURES / "v1_expected.json").read_text())
    with open_jets(FIXTURES / expected["input"]["file"]) as f:
        original = f.read().table
    with ContainerReader(FIXTURES / name) as r:
        assert r.version == 1
        tables = [chunk.table for chunk in r.iter_chunks()]
    assert [t.num_rows for t in tables] == expected["fixtures"][name]["chunks"]
    got = pa.concat_tables(tables)
    assert got.schema.equals(original.schema, check_metadata=True)
    assert got.equals(original)
    assert_exact(got.combine_chunks(), original.combine_chunks())


def test_format_1_side_table_is_bare_ipc():
    table = generated_like(10)
    data = layout.encode_table(table).to_pybytes()
    assert_exact(layout.decode_side_table(data, 10, "x", 1), table)
    with pytest.raises(DecodeError, match="unknown side table coding 255"):
        layout.decode_side_table(data, 10, "x", 2)  # in format 2 the first byte is the coding


# --- malformed records --------------------------------------------------------------------------------------


def unpack_record(data: bytes) -> tuple[bytes, bytes]:
    """(decompressed frame, stored planes) of a column-coded side table."""
    assert data[0] == layout.SIDE_COLUMNS
    body_len, frame_len = struct.unpack_from("<QQ", data, 1)
    body = zstandard.ZstdDecompressor().decompress(data[17 : 17 + frame_len])
    assert len(body) == body_len
    return body, data[17 + frame_len :]


def pack_record(body: bytes, stored: bytes) -> bytes:
    frame = zstandard.ZstdCompressor(level=1).compress(body)
    return bytes([layout.SIDE_COLUMNS]) + struct.pack("<QQ", len(body), len(frame)) + frame + stored


def expect_error(data: bytes, n_rows: int, match: str = ".") -> None:
    with pytest.raises(DecodeError, match=match) as e:
        decode(data, n_rows)
    assert str(e.value).startswith("x.e2ez: chunk 0: ") and "\n" not in str(e.value)


def body_parts(table: pa.Table) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """(schema message, descriptors, IPC part, planes, stored) of a table's column coding."""
    body, stored = unpack_record(encode(table))
    (schema_len,) = struct.unpack_from("<Q", body)
    schema = body[8 : 8 + schema_len]
    pos = 8 + schema_len
    n_desc = sum(4 if sidecols.plane_width(f.type) else 1 for f in table.schema)
    descriptors = body[pos : pos + n_desc]
    pos += n_desc
    (ipc_len,) = struct.unpack_from("<Q", body, pos)
    ipc = body[pos + 8 : pos + 8 + ipc_len]
    return schema, descriptors, ipc, body[pos + 8 + ipc_len :], stored


def build(schema: bytes, descriptors: bytes, ipc: bytes, planes: bytes, stored: bytes) -> bytes:
    body = struct.pack("<Q", len(schema)) + schema + descriptors + struct.pack("<Q", len(ipc)) + ipc + planes
    return pack_record(body, stored)


def test_reassembled_record_decodes():
    table = pa.table({"s": ["a", None, "c"], "v": pa.array([1, None, 3], pa.int16())})
    assert_exact(decode(build(*body_parts(table)), 3), table)


def test_malformed_records_raise_decode_error():
    rng = np.random.default_rng(7)
    table = pa.table({"s": ["a", None, "c", "d"], "v": numeric_array(pa.float32(), 4, rng)})
    data = encode(table)
    schema, descriptors, ipc, planes, stored = body_parts(table)
    expect_error(b"", 4, "no coding byte")
    expect_error(b"\x07" + data[1:], 4, "unknown side table coding 7")
    expect_error(data + b"\x00", 4, "too many")
    expect_error(data, 5, "side table unreadable")
    expect_error(data, 2**40, "side table unreadable")  # more rows than bytes: no huge allocation
    expect_error(data[:1] + struct.pack("<Q", 2**62) + data[9:], 4, "zstd frame size")
    frame_len = struct.unpack_from("<Q", data, 9)[0]
    expect_error(data[:9] + struct.pack("<Q", frame_len + 10**9) + data[17:], 4, "ends")
    expect_error(build(b"\x00" * 40, descriptors, ipc, planes, stored), 4)  # not a schema

    def descriptor(pos: int, value: int) -> bytes:  # descriptors: s (kind 0), then v (kind 1, t, flags, mask)
        changed = descriptors[:pos] + bytes([value]) + descriptors[pos + 1 :]
        return build(schema, changed, ipc, planes, stored)

    expect_error(descriptor(0, 1), 4, "bad kind 1 for type string")
    expect_error(descriptor(1, 2), 4, "bad kind 2")
    expect_error(descriptor(2, 9), 4, "bad descriptor 9")  # transform
    expect_error(descriptor(3, 2), 4, "bad descriptor")  # flags
    expect_error(descriptor(4, 0x10), 4, "bad descriptor")  # plane mask beyond the 4 planes of float32
    expect_error(build(schema, descriptors, b"", planes, stored), 4)  # no IPC part
    other = pa.table({"s": pa.array(["a", "b", "c", "d"], pa.large_string())})
    bad_ipc = body_parts(other.append_column("v", table.column("v")))[2]
    expect_error(build(schema, descriptors, bad_ipc, planes, stored), 4, "IPC part has type")
    two = body_parts(pa.table({"s": ["a"] * 4, "t": ["b"] * 4, "v": table.column("v")}))[2]
    expect_error(build(schema, descriptors, two, planes, stored), 4, "IPC part has 2 columns")
    expect_error(build(schema, descriptors, ipc, planes[:-1], stored), 4, "ends")
    expect_error(build(schema, descriptors, ipc, planes + b"\x00", stored), 4, "too many")
    expect_error(build(schema, descriptors, ipc, planes, stored + b"\x00"), 4, "too many")
    no_ipc = body_parts(pa.table({"v": table.column("v")}))
    expect_error(build(*no_ipc[:2], ipc, *no_ipc[3:]), 4, "IPC part without columns")


def test_truncated_records_raise_decode_error():
    table = pa.table({"s": ["a", None], "v": pa.array([1.5, None]), "u": pa.array([1, 2], pa.uint8())})
    data = encode(table)
    for cut in range(len(data)):
        expect_error(data[:cut], 2)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
    inside=st.booleans(),
)
def test_fuzz_edited_records(edits, inside):
    """Bytes changed in the record, or in the frame's content (re-framed so that zstd accepts it): only
    DecodeError, or a table of the right rows."""
    rng = np.random.default_rng(8)
    table = pa.table(
        {
            "s": other_array(pa.string(), 5, rng),
            "v": numeric_array(pa.float64(), 5, rng),
            "i": numeric_array(pa.int32(), 5, rng),
        }
    )
    data = bytearray(encode(table))
    if inside:
        body, stored = unpack_record(bytes(data))
        body = bytearray(body)
        for where, value in edits:
            body[int(where * len(body))] = value
        data = bytearray(pack_record(bytes(body), stored))
    else:
        for where, value in edits:
            data[int(where * len(data))] = value
    try:
        got = decode(bytes(data), 5)
    except DecodeError as e:
        assert str(e).startswith("x.e2ez: chunk 0: ")
        return
    assert got.num_rows == 5
