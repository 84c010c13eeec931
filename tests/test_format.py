"""The .e2ez container: round trips, random access, atomic writes, and every kind of corruption."""

from __future__ import annotations

import decimal
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ecompress import _core
from e2ecompress.errors import DecodeError, InputError
from e2ecompress.format import FORMAT_VERSION, MAGIC, Chunk, ContainerReader, ContainerWriter
from e2ecompress.format import container as layout
from e2ecompress.io.batch import empty_table

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
SIGNATURE = MAGIC + struct.pack("<I", FORMAT_VERSION)


def rich_table(n: int, seed: int = 0) -> pa.Table:
    """n rows of many Arrow types, with nulls, field metadata and schema metadata."""
    rng = np.random.default_rng(seed)
    schema = pa.schema(
        [
            pa.field("y", pa.int8(), metadata={"meaning": "label"}),
            pa.field("pt", pa.float32(), nullable=False, metadata={b"unit": b"GeV"}),
            pa.field("m0", pa.float64()),
            pa.field("run", pa.uint64()),
            pa.field("half", pa.float16()),
            pa.field("ok", pa.bool_()),
            pa.field("tag", pa.string()),
            pa.field("raw", pa.binary()),
            pa.field("hits", pa.list_(pa.float32())),
            pa.field("vtx", pa.struct([("z", pa.float32()), ("n", pa.int32())])),
            pa.field("kind", pa.dictionary(pa.int8(), pa.string())),
            pa.field("t", pa.timestamp("us", tz="UTC")),
            pa.field("d", pa.decimal128(10, 3)),
            pa.field("nothing", pa.null()),
        ],
        metadata={"e2ecompress": '{"format": "e2e-jets"}', "note": "ünïcode"},
    )
    arrays = [
        pa.array([int(v) if v % 3 else None for v in rng.integers(-5, 5, n)], pa.int8()),
        pa.array(rng.random(n, np.float32)),
        pa.array(rng.normal(size=n)),
        pa.array(rng.integers(0, 2**63, n, dtype=np.uint64)),
        pa.array(rng.random(n).astype(np.float16)),
        pa.array([bool(v) for v in rng.integers(0, 2, n)]),
        pa.array([f"jet-{i}-é" if i % 4 else None for i in range(n)]),
        pa.array([bytes(rng.integers(0, 256, i % 5, dtype=np.uint8)) for i in range(n)]),
        pa.array([list(rng.random(i % 4, np.float32)) for i in range(n)], pa.list_(pa.float32())),
        pa.array([{"z": float(i), "n": i} for i in range(n)], schema.field("vtx").type),
        pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 2, n), pa.int8()), pa.array(["q", "g"])),
        pa.array([1_700_000_000_000_000 + i for i in range(n)], pa.timestamp("us", tz="UTC")),
        pa.array([decimal.Decimal(i) / 8 for i in range(n)], pa.decimal128(10, 3)),
        pa.nulls(n),
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def small_table(n: int, first: int) -> pa.Table:
    return pa.table(
        {"y": pa.array(range(first, first + n), pa.int32()), "pt": pa.array([0.5] * n, pa.float32())}
    )


# A small multi-chunk file (~2 KB): truncated and mutated at every byte below.
SAMPLE_HEADER = {"layout": "qg3", "channels": ["Tracks", "ECAL", "HCAL"], "note": "ü"}
SAMPLE_CHUNKS = [
    (2, {"occ": b"\x01\x02\x03", "latent": b"L" * 20, "resid": b""}),
    (3, {"occ": b"\x04" * 7, "latent": b"", "resid": b"R" * 5}),
    (1, {"occ": b"", "latent": b"\x00", "resid": b"\xff" * 3}),
]
SAMPLE_META = {"n_jets": 6, "max_abs_error": 0.25}


def write_sample(path) -> None:
    with ContainerWriter(path, SAMPLE_HEADER) as w:
        first = 0
        for i, (n, streams) in enumerate(SAMPLE_CHUNKS):
            w.write_chunk(n, streams, small_table(n, first))
            first += n
            if i == 0:
                w.add_attachment("model/config.json", b'{"dim": 4}')
        w.add_attachment("tables.bin", bytes(range(40)))
        w.close(SAMPLE_META)


def read_everything(path) -> tuple:
    """Everything a file holds, in plain Python objects (so two reads compare with ==)."""
    with ContainerReader(path) as r:
        chunks = [
            (c.index, c.start, c.n_jets, c.streams, c.table.schema, c.table.to_pylist())
            for c in r.iter_chunks()
        ]
        attachments = {name: r.attachment(name) for name in r.attachment_names}
        return r.header, r.footer_meta, r.n_jets, chunks, attachments


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[bytes, tuple]:
    path = tmp_path_factory.mktemp("sample") / "sample.e2ez"
    write_sample(path)
    return path.read_bytes(), read_everything(path)


def expect_detected(path, data: bytes, original: tuple) -> str:
    """Writes `data` to `path` and reads all of it: the DecodeError's message, or else the original data."""
    path.write_bytes(data)
    try:
        got = read_everything(path)
    except DecodeError as e:
        assert "\n" not in str(e) and str(e).startswith(f"{path}: ")
        return str(e)
    assert got == original, "corruption went undetected and changed the data"
    return ""


def resign(data: bytes, footer_body: bytes | None = None) -> bytes:
    """`data` with its footer replaced by `footer_body` (default: unchanged) and a correct footer CRC."""
    offset, size, _, magic, version = layout.TRAILER.unpack(data[-layout.TRAILER.size :])
    body = data[offset : offset + size] if footer_body is None else footer_body
    place = struct.pack("<QQ", offset, len(body))
    crc = _core.crc32c(place, _core.crc32c(body))
    return data[:offset] + body + layout.TRAILER.pack(offset, len(body), crc, magic, version)


def footer_of(data: bytes) -> bytes:
    offset, size, *_ = layout.TRAILER.unpack(data[-layout.TRAILER.size :])
    return data[offset : offset + size]


# --- round trips --------------------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    path = tmp_path / "x.e2ez"
    header = {"layout": "qg3", "nested": {"a": [1, 2.5, None, True]}, "name": "ünï"}
    tables = [rich_table(5, 1), empty_table(3), pa.concat_tables([rich_table(2, 2), rich_table(4, 3)])]
    streams = [
        {"occ": b"\x00\x01", "latent": bytearray(b"abc"), "resid": memoryview(b"")},
        {},
        {"a": np.arange(4, dtype=np.int32), "z": b"\xff" * 1000},
    ]
    attachments = {"model/weights.safetensors": os.urandom(3000), "empty": b"", "конфиг": b"{}"}
    with ContainerWriter(path, header) as w:
        for table, s in zip(tables, streams, strict=True):
            w.write_chunk(np.int64(table.num_rows), s, table)
        for name, data in attachments.items():
            w.add_attachment(name, data)
        w.close({"max_abs_error": 1e-3, "n_jets": 14})
    assert os.listdir(tmp_path) == ["x.e2ez"]
    with ContainerReader(path) as r:
        assert r.header == header
        assert r.footer_meta == {"max_abs_error": 1e-3, "n_jets": 14}
        assert (r.n_jets, r.n_chunks, r.file_size) == (14, 3, path.stat().st_size)
        assert [(c.index, c.start, c.n_jets) for c in r.chunks] == [(0, 0, 5), (1, 5, 3), (2, 8, 6)]
        assert r.attachment_names == list(attachments)
        for name, data in attachments.items():
            assert r.attachment(name) == data
        for i, chunk in enumerate(r.iter_chunks()):
            assert isinstance(chunk, Chunk)
            assert (chunk.index, chunk.start, chunk.stop) == (i, r.chunks[i].start, r.chunks[i].stop)
            assert chunk.streams == {k: bytes(memoryview(v).cast("B")) for k, v in streams[i].items()}
            assert list(chunk.streams) == list(streams[i])  # order kept
            assert all(type(v) is bytes for v in chunk.streams.values())
            assert chunk.table.schema.equals(tables[i].schema, check_metadata=True)
            assert chunk.table.equals(tables[i], check_metadata=True)
        assert r.read_chunk(-1).index == 2
        with pytest.raises(KeyError, match="no attachment 'nope'"):
            r.attachment("nope")
        with pytest.raises(IndexError):
            r.read_chunk(3)


def test_field_metadata_kept(tmp_path):
    table = rich_table(3)
    with ContainerWriter(tmp_path / "x.e2ez", {}) as w:
        w.write_chunk(3, {}, table)
    with ContainerReader(tmp_path / "x.e2ez") as r:
        got = r.read_chunk(0).table
    assert got.schema.field("pt").metadata == {b"unit": b"GeV"}
    assert got.schema.field("y").metadata == {b"meaning": b"label"}
    assert got.schema.metadata == table.schema.metadata
    assert not got.schema.field("pt").nullable


def test_empty_file(tmp_path):
    with ContainerWriter(tmp_path / "x.e2ez", {}) as w:
        pass
    assert w.n_chunks == 0
    with ContainerReader(tmp_path / "x.e2ez") as r:
        assert (r.header, r.footer_meta, r.n_jets, r.n_chunks, r.attachment_names) == ({}, {}, 0, 0, [])
        assert r.chunk_range() == range(0)
        assert list(r.iter_chunks()) == []


def test_layout_of_a_minimal_file(tmp_path):
    """The bytes of a file without chunks, built from docs/FORMAT.md by hand."""
    path = tmp_path / "x.e2ez"
    with ContainerWriter(path, {"a": 1}) as w:
        w.add_attachment("m", b"xyz")
    head = b'{"a":1}'
    fixed = MAGIC + struct.pack("<II", 2, len(head))
    preamble = fixed + struct.pack("<I", _core.crc32c(head, _core.crc32c(fixed)))
    body = b"ATCH" + struct.pack("<HQ", 1, 3) + b"m" + b"xyz"
    record = body + struct.pack("<I", _core.crc32c(body))
    offset = len(preamble) + len(head)
    footer = struct.pack("<QQII", 0, 0, 1, 2) + struct.pack(
        "<QQIH", offset, len(record), _core.crc32c(body), 1
    )
    footer += b"m{}"
    place = struct.pack("<QQ", offset + len(record), len(footer))
    trailer = place + struct.pack("<I", _core.crc32c(place, _core.crc32c(footer))) + MAGIC + b"\x02\0\0\0"
    assert path.read_bytes() == preamble + head + record + footer + trailer
    assert path.read_bytes()[:8] == path.read_bytes()[-8:] == SIGNATURE


# --- random access ------------------------------------------------------------------------------------------


def test_chunk_range(sample, tmp_path):
    path = tmp_path / "x.e2ez"
    path.write_bytes(sample[0])
    with ContainerReader(path) as r:
        owner = [c.index for c in r.chunks for _ in range(c.n_jets)]  # chunk of each jet
        for start in range(r.n_jets + 1):
            for stop in range(start, r.n_jets + 1):
                assert list(r.chunk_range(start, stop)) == sorted(set(owner[start:stop]))
                assert [c.index for c in r.iter_chunks(start, stop)] == sorted(set(owner[start:stop]))
        assert r.chunk_range() == range(3)
        for bad in [(-1, 2), (3, 2), (0, 7)]:
            with pytest.raises(InputError, match="out of range"):
                r.chunk_range(*bad)


def test_random_access_reads_only_needed_chunks(sample, tmp_path):
    data, original = sample
    path = tmp_path / "x.e2ez"
    path.write_bytes(data)
    with ContainerReader(path) as r:
        infos = r.chunks
    for bad in infos:
        broken = bytearray(data)
        broken[bad.offset + bad.size // 2] ^= 0x55
        path.write_bytes(broken)
        with ContainerReader(path) as r:  # opening reads no chunk
            for c in infos:
                if c.index == bad.index:
                    with pytest.raises(DecodeError, match=rf"^{path}: chunk {bad.index}: CRC32C mismatch"):
                        list(r.iter_chunks(c.start, c.stop))
                else:
                    (got,) = r.iter_chunks(c.start, c.stop)
                    assert got.streams == original[3][c.index][3]


def test_iterating_does_not_load_the_file(tmp_path):
    path = tmp_path / "big.e2ez"
    stream = os.urandom(20_000)
    with ContainerWriter(path, {}) as w:
        for _ in range(100):
            w.write_chunk(4, {"latent": stream}, small_table(4, 0))
    assert path.stat().st_size > 2_000_000
    with ContainerReader(path) as r:
        tracemalloc.start()
        try:
            for chunk in r.iter_chunks():
                assert chunk.streams["latent"] == stream
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 200_000


# --- truncation and corruption ------------------------------------------------------------------------------


def test_truncated_at_every_byte(sample, tmp_path):
    data, original = sample
    path = tmp_path / "x.e2ez"
    for cut in range(len(data)):
        assert expect_detected(path, data[:cut], original)


def test_truncated_at_chunk_boundaries(sample, tmp_path):
    data, _ = sample
    path = tmp_path / "x.e2ez"
    path.write_bytes(data)
    with ContainerReader(path) as r:
        ends = [c.offset + c.size for c in r.chunks]
        cuts = [c.offset for c in r.chunks] + ends + [len(data) - layout.TRAILER.size]
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(DecodeError, match=rf"^{path}: truncated \(no end marker\)$"):
            ContainerReader(path)


def test_every_byte_flip_is_detected(sample, tmp_path):
    data, original = sample
    path = tmp_path / "x.e2ez"
    xor = np.random.default_rng(1).integers(1, 256, len(data))
    for pos in range(len(data)):
        broken = bytearray(data)
        broken[pos] ^= int(xor[pos])
        assert expect_detected(path, bytes(broken), original), f"flip at byte {pos} not detected"


def test_bit_flips_are_detected(sample, tmp_path):
    data, original = sample
    path = tmp_path / "x.e2ez"
    rng = np.random.default_rng(2)
    for pos, bit in zip(rng.integers(0, len(data), 600), rng.integers(0, 8, 600), strict=True):
        broken = bytearray(data)
        broken[pos] ^= 1 << int(bit)
        assert expect_detected(path, bytes(broken), original), f"bit {bit} of byte {pos} not detected"


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_arbitrary_bytes(tmp_path, blob, signed):
    path = tmp_path / "x.e2ez"
    data = SIGNATURE + blob + SIGNATURE if signed else blob
    path.write_bytes(data)
    with pytest.raises(DecodeError):
        read_everything(path)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    insert=st.one_of(st.none(), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8))),
)
def test_fuzz_mutated_files(tmp_path, sample, edits, cut, insert):
    data, original = sample
    broken = bytearray(data)
    for where, value in edits:
        broken[int(where * len(broken))] = value
    if insert is not None:
        at = int(insert[0] * len(broken))
        broken[at:at] = insert[1]
    if cut is not None:
        del broken[int(cut * len(broken)) :]
    expect_detected(tmp_path / "x.e2ez", bytes(broken), original)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_fuzz_footer_with_valid_crc(tmp_path, sample, edits):
    """A footer that passes its CRC but says nonsense: only DecodeError, never a crash or wrong data."""
    data, original = sample
    footer = bytearray(footer_of(data))
    for where, value in edits:
        footer[int(where * len(footer))] = value
    path = tmp_path / "x.e2ez"
    path.write_bytes(resign(data, bytes(footer)))
    try:
        got = read_everything(path)
    except DecodeError:
        return
    assert got[3:] == original[3:]  # only footer_meta may change with a forged CRC


@FUZZ
@given(
    chunk=st.integers(0, 2),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_fuzz_chunk_with_valid_crc(tmp_path, sample, chunk, edits):
    """A chunk record that passes its CRCs but says nonsense: only DecodeError, or a consistent chunk."""
    data, _ = sample
    path = tmp_path / "x.e2ez"
    path.write_bytes(data)
    with ContainerReader(path) as r:
        info = r.chunks[chunk]
    body = bytearray(data[info.offset : info.offset + info.size - 4])
    for where, value in edits:
        body[int(where * len(body))] = value
    crc = _core.crc32c(bytes(body))
    broken = data[: info.offset] + body + struct.pack("<I", crc) + data[info.offset + info.size :]
    footer = bytearray(footer_of(broken))
    entry = layout.FOOTER_HEAD.size + chunk * layout.CHUNK_ENTRY.size
    footer[entry + 32 : entry + 36] = struct.pack("<I", crc)
    path.write_bytes(resign(broken, bytes(footer)))
    with ContainerReader(path) as r:
        try:
            got = r.read_chunk(chunk)
        except DecodeError as e:
            assert str(e).startswith(f"{path}: chunk {chunk}: ")
            return
    assert got.table.num_rows == got.n_jets == info.n_jets
    assert sum(map(len, got.streams.values())) <= info.size


def test_forged_index_is_rejected(sample, tmp_path):
    data, _ = sample
    path = tmp_path / "x.e2ez"
    footer = footer_of(data)
    head = layout.FOOTER_HEAD.unpack_from(footer)
    entries = [layout.CHUNK_ENTRY.unpack_from(footer, layout.FOOTER_HEAD.size + 36 * i) for i in range(3)]
    rest = footer[layout.FOOTER_HEAD.size + 36 * 3 :]

    def forge(head=head, entries=entries) -> str:
        body = layout.FOOTER_HEAD.pack(*head) + b"".join(layout.CHUNK_ENTRY.pack(*e) for e in entries) + rest
        path.write_bytes(resign(data, body))
        with pytest.raises(DecodeError) as e:
            ContainerReader(path)
        return str(e.value)

    (o0, s0, st0, n0, c0), (o1, s1, st1, n1, c1), third = entries
    assert "chunks hold 6 jets, the footer says 7" in forge(head=(3, 7, *head[2:]))
    assert "chunks do not fit" in forge(head=(2**40, *head[1:]))
    assert "footer_meta is" in forge(head=(*head[:3], 10**6))
    assert "chunk 1 has jets 3+3, expected 2+" in forge(entries=[entries[0], (o1, s1, 3, n1, c1), third])
    assert "does not follow byte" in forge(entries=[(o0, s0 + 1, st0, n0, c0), entries[1], third])
    assert "does not follow byte" in forge(entries=[entries[0], (o0, s1, st1, n1, c1), third])
    assert "too small" in forge(entries=[(o0, 3, st0, n0, c0), entries[1], third])
    assert "does not follow byte" in forge(entries=[entries[0], (o1, 2**62, st1, n1, c1), third])
    # chunks 0 and 1 swapped in the index: each record passes its CRC, but its head names the other chunk
    body = layout.FOOTER_HEAD.pack(*head) + b"".join(
        layout.CHUNK_ENTRY.pack(*e) for e in [(o1, s1, st0, n0, c1), (o0, s0, st1, n1, c0), third]
    )
    path.write_bytes(resign(data, body + rest))
    with ContainerReader(path) as r, pytest.raises(DecodeError, match="chunk 0: record says chunk 1"):
        r.read_chunk(0)


def test_not_an_e2ez_file(tmp_path):
    path = tmp_path / "x.e2ez"
    cases = {
        b"": "empty file (not an .e2ez file)",
        b"E2": "truncated (no end marker)",
        b"E2EZ\x01": "truncated (no end marker)",
        b"PAR1" + bytes(100): "not an .e2ez file",
        b"\x89HDF\r\n\x1a\n" + bytes(100): "not an .e2ez file",
        MAGIC + struct.pack("<I", 3) + bytes(9): "unsupported format version 3 (this e2ecompress reads 1, 2)",
        MAGIC + struct.pack("<I", 0) + bytes(100): "unsupported format version 0",
        MAGIC + struct.pack("<I", 4): "unsupported format version 4",
    }
    for data, message in cases.items():
        path.write_bytes(data)
        with pytest.raises(DecodeError, match=re.escape(f"{path}: {message}")):
            ContainerReader(path)


def test_end_marker_version_must_match(sample, tmp_path):
    data, _ = sample
    path = tmp_path / "x.e2ez"
    path.write_bytes(data[:-4] + struct.pack("<I", 1))
    with pytest.raises(DecodeError, match="end marker says version 1, the start 2"):
        ContainerReader(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file") as e:
        ContainerReader(tmp_path / "nope.e2ez")
    assert e.value.path == str(tmp_path / "nope.e2ez")
    with pytest.raises(InputError, match="is a directory"):
        ContainerReader(tmp_path)


def test_file_shrinking_after_open(sample, tmp_path):
    data, _ = sample
    path = tmp_path / "x.e2ez"
    path.write_bytes(data)
    with ContainerReader(path) as r:
        os.truncate(path, r.chunks[1].offset + 5)
        r.read_chunk(0)
        with pytest.raises(DecodeError, match="truncated"):
            r.read_chunk(1)


# --- writing: checks and atomicity --------------------------------------------------------------------------


def test_writer_rejects_bad_input(tmp_path):
    path = tmp_path / "x.e2ez"
    bad_calls = [
        (lambda w: w.write_chunk(0, {}, empty_table(0)), ValueError, "n_jets must be"),
        (lambda w: w.write_chunk(2, {}, empty_table(3)), ValueError, "table has 3 rows"),
        (lambda w: w.write_chunk(1, {"é": b""}, empty_table(1)), ValueError, "printable ASCII"),
        (lambda w: w.write_chunk(1, {"": b""}, empty_table(1)), ValueError, "printable ASCII"),
        (lambda w: w.write_chunk(1, {"x" * 256: b""}, empty_table(1)), ValueError, "longer than 255"),
        (lambda w: w.write_chunk(1, {"a": "text"}, empty_table(1)), TypeError, "bytes-like"),
        (lambda w: w.write_chunk(1, {"a": np.arange(8)[::2]}, empty_table(1)), TypeError, "contiguous"),
        (lambda w: w.write_chunk(1, {}, pa.record_batch([])), TypeError, "pyarrow Table"),
        (lambda w: w.add_attachment("", b""), ValueError, "attachment names"),
        (lambda w: (w.add_attachment("a", b""), w.add_attachment("a", b"")), ValueError, "added twice"),
        (lambda w: w.close({"bad": float("nan")}), ValueError, "JSON-serialisable"),
        (lambda w: w.close({"bad": object()}), TypeError, "JSON-serialisable"),
    ]
    for call, error, message in bad_calls:
        w = ContainerWriter(path, {})
        with pytest.raises(error, match=message):
            call(w)
        with pytest.raises(ValueError, match="writer is closed"):  # the write was abandoned
            w.write_chunk(1, {}, empty_table(1))
        assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError, match="header must be a dict"):
        ContainerWriter(path, [1])
    with pytest.raises(ValueError, match="header must be JSON-serialisable"):
        ContainerWriter(path, {"x": float("inf")})
    with pytest.raises(InputError, match="output directory does not exist"):
        ContainerWriter(tmp_path / "no" / "x.e2ez", {})
    assert os.listdir(tmp_path) == []


def test_exception_inside_with_leaves_nothing(tmp_path):
    path = tmp_path / "x.e2ez"
    with pytest.raises(RuntimeError, match="boom"), ContainerWriter(path, {}) as w:
        w.write_chunk(1, {"a": b"x"}, empty_table(1))
        assert os.path.exists(w.temp_path) and os.path.basename(w.temp_path).startswith(".x.e2ez.partial-")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_existing_file_replaced_only_on_success(sample, tmp_path):
    path = tmp_path / "x.e2ez"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), ContainerWriter(path, {}) as w:
        w.write_chunk(1, {}, empty_table(1))
        raise RuntimeError
    assert path.read_bytes() == b"old"
    w = ContainerWriter(path, {})
    w.abort()
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.e2ez"]
    write_sample(path)
    assert path.read_bytes() == sample[0]  # the writer is deterministic
    assert os.listdir(tmp_path) == ["x.e2ez"]


def test_dropped_writer_removes_its_temp_file(tmp_path):
    w = ContainerWriter(tmp_path / "x.e2ez", {})
    w.write_chunk(1, {}, empty_table(1))
    del w
    assert os.listdir(tmp_path) == []


def test_two_writers_same_target(tmp_path):
    path = tmp_path / "x.e2ez"
    with ContainerWriter(path, {"n": 1}) as a, ContainerWriter(path, {"n": 2}) as b:
        assert a.temp_path != b.temp_path
    with ContainerReader(path) as r:
        assert r.header == {"n": 1}  # b closes first, then a: the last close wins
    assert os.listdir(tmp_path) == ["x.e2ez"]


def test_killed_writer_leaves_no_final_file(tmp_path):
    path = tmp_path / "x.e2ez"
    path.write_bytes(b"old")
    script = textwrap.dedent(
        f"""
        import time
        from e2ecompress.format import ContainerWriter
        from e2ecompress.io.batch import empty_table
        w = ContainerWriter({str(path)!r}, {{}})
        for _ in range(3):
            w.write_chunk(1, {{"a": b"x" * 1000}}, empty_table(1))
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line == b"ready\n", proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert path.read_bytes() == b"old"
    (partial,) = tmp_path.glob(f".x.e2ez.partial-*-{proc.pid}")
    assert sorted(os.listdir(tmp_path)) == sorted(["x.e2ez", partial.name])
