"""Jet file readers and writers: round trips, public schemas, batching, bad input, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import re

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sparse_images
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ecompress.errors import InputError
from e2ecompress.io import (
    Batch,
    Hdf5JetFile,
    ParquetJetFile,
    open_jets,
    open_writer,
    write_jets,
)
from e2ecompress.io import parquet as parquet_io
from e2ecompress.io.parquet import images_to_nested

SUFFIX = {"parquet": ".parquet", "hdf5": ".h5"}
SMALL = (3, 5, 7)  # non-square so that an H/W mix-up shows


def other_table(rng, n: int) -> pa.Table:
    schema = pa.schema(
        [
            pa.field("y", pa.int64(), nullable=False),
            pa.field("pt", pa.float32(), metadata={"unit": "GeV"}),
            pa.field("m0", pa.float64()),
            pa.field("is_train", pa.bool_()),
        ],
        metadata={"source": "test"},
    )
    columns = [
        rng.integers(0, 2, n),
        rng.uniform(20, 200, n).astype(np.float32),
        rng.uniform(0, 50, n),
        rng.random(n) < 0.5,
    ]
    return pa.Table.from_arrays([pa.array(c) for c in columns], schema=schema)


def batches_of(images, table, sizes):
    pos = 0
    for size in sizes:
        yield Batch(images[pos : pos + size], table.slice(pos, size))
        pos += size
    assert pos == len(images)


def read_all(f, **kw) -> Batch:
    return Batch.concat(list(f.iter_batches(**kw)))


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def message(path, problem: str) -> str:
    return re.escape(str(path)) + ": .*" + problem


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["parquet", "hdf5"])
def test_round_trip(tmp_path, rng, make_images, fmt):
    n = 11
    images = make_images(n, *SMALL)
    table = other_table(rng, n)
    path = tmp_path / f"jets{SUFFIX[fmt]}"
    options = {"row_group_size": 4} if fmt == "parquet" else {"chunk_bytes": 4096}
    extra = {"seed": 7, "split": "train", "settings": {"pt_min": 20.0}}
    written = write_jets(path, batches_of(images, table, [3, 5, 0, 3]), "qg3", extra=extra, **options)
    assert written == n
    with open_jets(path) as f:
        assert f.format == fmt
        assert (f.n_jets, f.image_shape) == (n, SMALL)
        assert f.channels == ("ECAL", "HCAL", "Tracks")
        assert f.layout == "qg3"
        assert f.metadata["seed"] == 7 and f.metadata["settings"] == {"pt_min": 20.0}
        assert f.metadata["image_shape"] == list(SMALL)
        assert f.other_schema.equals(table.schema, check_metadata=True)
        back = read_all(f, batch_size=4)
    assert back.images.dtype == np.float32 and back.images.flags.c_contiguous
    np.testing.assert_array_equal(back.images, images)
    assert back.table.schema.equals(table.schema, check_metadata=True)
    assert back.table.equals(table)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_parquet_layout_on_disk(tmp_path, rng, make_images):
    images = make_images(10, *SMALL)
    path = tmp_path / "jets.parquet"
    write_jets(path, [Batch(images, other_table(rng, 10))], "qg3", row_group_size=4)
    pf = pq.ParquetFile(path)
    x_type = pf.schema_arrow.field("X_jets").type
    assert pa.types.is_list(x_type) and x_type.value_type.value_type.value_type == pa.float32()
    assert [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)] == [4, 4, 2]
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    meta = json.loads(pf.schema_arrow.metadata[b"e2ecompress"])
    assert (
        meta["format"] == "e2e-jets"
        and meta["version"] == 1
        and meta["channels"] == ["ECAL", "HCAL", "Tracks"]
    )
    row = pq.read_table(path).slice(2, 1).column("X_jets").to_pylist()[0]
    np.testing.assert_array_equal(np.array(row, np.float32), images[2])


def test_hdf5_layout_on_disk(tmp_path, rng, make_images):
    images = make_images(6, *SMALL)
    table = other_table(rng, 6)
    path = tmp_path / "jets.h5"
    write_jets(path, [Batch(images, table)], "qg3", compression="lzf")
    with h5py.File(path, "r") as h:
        assert h["jet"].shape == (6, 5, 7, 3) and h["jet"].chunks is not None
        np.testing.assert_array_equal(h["jet"][...], images.transpose(0, 2, 3, 1))
        assert h["Y"].shape == (6, 1)
        np.testing.assert_array_equal(h["Y"][:, 0], table.column("y").to_numpy())
        assert h["m0"].shape == (6,)
        assert json.loads(h.attrs["e2ecompress"])["layout"] == "qg3"


def test_converting_between_formats_keeps_everything(tmp_path, rng, make_images):
    images = make_images(9, *SMALL)
    table = other_table(rng, 9)
    first = tmp_path / "a.parquet"
    write_jets(first, [Batch(images, table)], "qg3", extra={"seed": 3})
    before = sha(first)
    with open_jets(first) as f:
        write_jets(tmp_path / "b.h5", f.iter_batches(4), f.channels, extra={"seed": 3})
    with open_jets(tmp_path / "b.h5") as f:
        write_jets(tmp_path / "c.parquet", f.iter_batches(2), f.channels, extra={"seed": 3})
    with open_jets(tmp_path / "c.parquet") as f:
        back = f.read()
        assert f.metadata["seed"] == 3
    np.testing.assert_array_equal(back.images, images)
    assert back.table.equals(table) and back.table.schema.equals(table.schema, check_metadata=True)
    assert sha(first) == before


def test_empty_file(tmp_path):
    for name in ("empty.parquet", "empty.h5"):
        write_jets(tmp_path / name, [], "e2e8")
        with open_jets(tmp_path / name) as f:
            assert f.n_jets == 0 and f.image_shape == (8, 125, 125)
            assert list(f.iter_batches()) == []
            assert f.read().images.shape == (0, 8, 125, 125)


def test_writer_does_not_touch_the_callers_arrays(tmp_path, make_images):
    images = make_images(5, *SMALL)
    keep = images.copy()
    with open_writer(tmp_path / "w.parquet", ["a", "b", "c"], row_group_size=3) as w:
        w.write(Batch(images[:2]))
        images[:2] = -1.0  # the caller reuses its buffer; the pending rows must not change
        w.write(Batch(keep[2:]))
    with open_jets(tmp_path / "w.parquet") as f:
        np.testing.assert_array_equal(f.read().images, keep)
        assert f.columns == []


# ---------------------------------------------------------------- public-style files


def public_parquet(path, images, list_type, values_type=None, metadata=None):
    """X_jets, pt, m0, y like the CMS quark/gluon files; no e2ecompress metadata."""
    n, c, h, w = images.shape
    values_type = values_type or pa.float64()
    values = pa.array(images.reshape(-1).astype(values_type.to_pandas_dtype()))
    if list_type == "fixed":
        arr = values
        for size in (w, h, c):
            arr = pa.FixedSizeListArray.from_arrays(arr, size)
    else:
        cls, dtype = (pa.LargeListArray, np.int64) if list_type == "large" else (pa.ListArray, np.int32)
        arr = values
        for size, count in ((w, n * c * h), (h, n * c), (c, n)):
            arr = cls.from_arrays(pa.array(np.arange(0, (count + 1) * size, size, dtype=dtype)), arr)
    table = pa.table(
        {"X_jets": arr, "pt": np.linspace(30, 90, n), "m0": np.linspace(1, 9, n), "y": np.arange(n) % 2}
    )
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path, row_group_size=4)
    return table


@pytest.mark.parametrize("list_type", ["list", "large", "fixed"])
def test_public_parquet(tmp_path, make_images, list_type):
    images = make_images(9)
    path = tmp_path / "qg.parquet"
    values_type = pa.float32() if list_type == "fixed" else pa.float64()
    public_parquet(path, images, list_type, values_type, metadata={b"pandas": b"{}"})
    with open_jets(path) as f:
        assert isinstance(f, ParquetJetFile)
        assert f.channels is None and f.channel_names == ("ch0", "ch1", "ch2")
        assert f.metadata == {} and f.layout is None
        assert f.image_shape == (3, 125, 125) and f.n_jets == 9
        assert f.other_schema.names == ["pt", "m0", "y"]
        assert f.other_schema.metadata == {b"pandas": b"{}"}
        back = read_all(f, batch_size=5)
    np.testing.assert_array_equal(back.images, images)
    np.testing.assert_array_equal(back.table.column("m0").to_numpy(), np.linspace(1, 9, 9))
    with open_jets(path, channels=["Tracks", "ECAL", "HCAL"]) as f:
        assert f.channels == ("Tracks", "ECAL", "HCAL") and f.channel_names == f.channels


def test_public_hdf5(tmp_path, make_images):
    n = 7
    images = make_images(n, channels=8)
    path = tmp_path / "ml4sci.h5"
    with h5py.File(path, "w") as h:
        h["jet"] = images.transpose(0, 2, 3, 1)
        h["Y"] = (np.arange(n) % 2).astype(np.float32).reshape(n, 1)
        h["m"] = np.linspace(5, 50, n).astype(np.float32)
        h["pT"] = np.linspace(50, 500, n).reshape(n, 1)
        h["extra_2d"] = np.zeros((n, 2))  # not a column
        h.create_group("notes")
    before = sha(path)
    with open_jets(path, channels="e2e8") as f:
        assert isinstance(f, Hdf5JetFile)
        assert f.image_shape == (8, 125, 125) and f.channels[0] == "TrackPT"
        assert set(f.columns) == {"y", "m", "pT"}
        assert f.other_schema.field("y").type == pa.float32()
        back = read_all(f, batch_size=3)
    np.testing.assert_array_equal(back.images, images)
    np.testing.assert_array_equal(back.table.column("y").to_numpy(), np.arange(n) % 2)
    np.testing.assert_array_equal(back.table.column("pT").to_numpy(), np.linspace(50, 500, n))
    with open_jets(path) as f:
        assert f.channels is None and f.metadata == {}
    assert sha(path) == before


# ---------------------------------------------------------------- batching


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A parquet file with row groups of 3 and an HDF5 file, 11 small jets each."""
    rng = np.random.default_rng(5)
    images = sparse_images(rng, 11, *SMALL)
    table = other_table(rng, 11)
    directory = tmp_path_factory.mktemp("shards")
    paths = {"parquet": directory / "s.parquet", "hdf5": directory / "s.h5"}
    write_jets(paths["parquet"], [Batch(images, table)], "qg3", row_group_size=3)
    write_jets(paths["hdf5"], [Batch(images, table)], "qg3")
    return images, table, paths


@pytest.mark.parametrize("fmt", ["parquet", "hdf5"])
def test_batch_boundaries(shards, fmt):
    images, table, paths = shards
    with open_jets(paths[fmt]) as f:
        batches = list(f.iter_batches(batch_size=4))
        assert [len(b) for b in batches] == [4, 4, 3]
        assert [b.start for b in batches] == [0, 4, 8]
        np.testing.assert_array_equal(batches[1].images, images[4:8])
        assert batches[2].table.equals(table.slice(8, 3))
        part = f.read(2, 9)
        assert part.start == 2
        np.testing.assert_array_equal(part.images, images[2:9])
        assert part.table.equals(table.slice(2, 7))
        assert len(f.read(5, 5)) == 0 and f.read(5, 5).table.schema.equals(table.schema)
        only_y = f.read(1, 4, columns=["y"])
        assert only_y.table.column_names == ["y"] and only_y.table.num_rows == 3
        none = list(f.iter_batches(2, columns=[], start=3, stop=8))
        assert [len(b) for b in none] == [2, 2, 1] and none[0].table.num_columns == 0
        with pytest.raises(InputError, match=message(paths[fmt], r"rows 4:12 out of range")):
            f.read(4, 12)
        with pytest.raises(InputError, match=message(paths[fmt], r"column 'nope' not in file")):
            f.read(0, 1, columns=["nope"])
        with pytest.raises(ValueError, match="batch_size"):
            next(f.iter_batches(0))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(0, 11),
    st.integers(0, 11),
    st.sampled_from(["parquet", "hdf5"]),
    st.sampled_from([1, 2, 5, 256]),
)
def test_any_window(shards, batch_size, a, b, fmt, decode_rows):
    images, table, paths = shards
    start, stop = min(a, b), max(a, b)
    # Arrow decodes pieces of decode_rows jets, smaller or larger than the batches
    saved, parquet_io.DECODE_PIXELS = parquet_io.DECODE_PIXELS, decode_rows * int(np.prod(SMALL))
    try:
        with open_jets(paths[fmt]) as f:
            batches = list(f.iter_batches(batch_size, start=start, stop=stop))
            window = f.read(start, stop, columns=["pt"])
    finally:
        parquet_io.DECODE_PIXELS = saved
    assert window.table.equals(table.select(["pt"]).slice(start, stop - start))
    assert all(len(x) == batch_size for x in batches[:-1])
    assert [x.start for x in batches] == list(range(start, stop, batch_size))
    got = np.concatenate([x.images for x in batches]) if batches else images[:0]
    np.testing.assert_array_equal(got, images[start:stop])


# ---------------------------------------------------------------- bad input


def test_not_a_jet_file(tmp_path):
    with pytest.raises(InputError, match=message(tmp_path / "none.parquet", "no such file")):
        open_jets(tmp_path / "none.parquet")
    with pytest.raises(InputError, match=message(tmp_path, "is a directory")):
        open_jets(tmp_path)
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(InputError, match=message(tmp_path / "empty.parquet", "empty file")):
        open_jets(tmp_path / "empty.parquet")
    (tmp_path / "notes.txt").write_text("hello, world")
    with pytest.raises(InputError, match=message(tmp_path / "notes.txt", "not a parquet or HDF5 file")):
        open_jets(tmp_path / "notes.txt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable(tmp_path):
    path = tmp_path / "locked.parquet"
    path.write_bytes(b"PAR1")
    path.chmod(0)
    with pytest.raises(InputError, match=message(path, "cannot read")):
        open_jets(path)


@pytest.mark.parametrize("fmt", ["parquet", "hdf5"])
def test_truncated(tmp_path, make_images, fmt):
    path = tmp_path / f"cut{SUFFIX[fmt]}"
    write_jets(path, [Batch(make_images(4, *SMALL))], "qg3")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=message(path, "truncated or not an? (parquet|HDF5) file")):
        open_jets(path)


def test_missing_image_data(tmp_path):
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1], "b": [2.0]}), path)
    with pytest.raises(InputError, match=re.escape(f"{path}: column X_jets missing (columns: a, b)")):
        open_jets(path)
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as h:
        h["Y"] = np.zeros((3, 1))
    with pytest.raises(InputError, match=re.escape(f"{path}: dataset jet missing (datasets: Y)")):
        open_jets(path)


def test_wrong_parquet_shape(tmp_path, make_images):
    path = tmp_path / "two_d.parquet"
    pq.write_table(pa.table({"X_jets": pa.array([[[1.0]], [[2.0]]]), "y": [0, 1]}), path)
    with pytest.raises(InputError, match=message(path, r"3-D array \[C\]\[H\]\[W\] per jet")):
        open_jets(path)
    path = tmp_path / "strings.parquet"
    pq.write_table(pa.table({"X_jets": pa.array([[[["a"]]]])}), path)
    with pytest.raises(InputError, match=message(path, "non-numeric type string")):
        open_jets(path)

    images = make_images(6, *SMALL)
    ragged = images_to_nested(images).to_pylist()
    ragged[4][1][2] = ragged[4][1][2][:-1]  # jet 4, channel 1, row 2 one value short
    path = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"X_jets": ragged}), path, row_group_size=4)
    with open_jets(path) as f:
        assert f.image_shape == SMALL
        first = next(f.iter_batches(4))
        np.testing.assert_array_equal(first.images, images[:4])
        with pytest.raises(
            InputError, match=message(path, "rows differ in shape: jet 4 has 6 values per row")
        ):
            list(f.iter_batches(4))

    ragged = images_to_nested(images).to_pylist()
    ragged[2] = ragged[2][:2]
    pq.write_table(pa.table({"X_jets": ragged}), path)
    with open_jets(path) as f, pytest.raises(InputError, match=message(path, "jet 2 has 2 channels")):
        f.read()


def test_wrong_hdf5_shape(tmp_path):
    path = tmp_path / "three_d.h5"
    with h5py.File(path, "w") as h:
        h["jet"] = np.zeros((2, 5, 5), np.float32)
    with pytest.raises(InputError, match=message(path, r"must be 4-D \(N, H, W, C\), got shape \(2, 5, 5\)")):
        open_jets(path)
    with h5py.File(path, "w") as h:
        h["jet"] = np.zeros((2, 5, 5, 3), "S1")
    with pytest.raises(InputError, match=message(path, "non-numeric dtype")):
        open_jets(path)


@pytest.mark.parametrize("fmt", ["parquet", "hdf5"])
def test_channels_mismatch(tmp_path, make_images, fmt):
    path = tmp_path / f"c{SUFFIX[fmt]}"
    write_jets(path, [Batch(make_images(2, *SMALL))], "qg3")
    with pytest.raises(InputError, match=message(path, r"2 channels given \(a, b\) but the images have 3")):
        open_jets(path, channels=["a", "b"])
    with pytest.raises(InputError, match=message(path, "differ from the file's")):
        open_jets(path, channels=["HCAL", "ECAL", "Tracks"])
    with pytest.raises(InputError, match="unknown layout"):
        open_jets(path, channels="rgb")


def test_non_finite_pixels(tmp_path, make_images):
    images = make_images(6, *SMALL)
    images[4, 2, 1, 1] = np.nan
    path = tmp_path / "nan.parquet"
    public_parquet(path, images, "list")
    with open_jets(path) as f:
        with pytest.raises(
            InputError, match=message(path, r"non-finite pixel values \(NaN or inf\) in jet 4")
        ):
            list(f.iter_batches(2))
        assert len(list(f.iter_batches(2, check_finite=False))) == 3
    path = tmp_path / "inf.h5"
    images[4, 2, 1, 1] = -np.inf
    with h5py.File(path, "w") as h:
        h["jet"] = images.transpose(0, 2, 3, 1)
    with open_jets(path) as f, pytest.raises(InputError, match=message(path, "in jet 4")):
        f.read(3, 6)


def test_newer_format_version(tmp_path, make_images):
    path = tmp_path / "future.parquet"
    header = {"format": "e2e-jets", "version": 99, "channels": None, "image_shape": [3, 125, 125]}
    public_parquet(path, make_images(2), "list", metadata={b"e2ecompress": json.dumps(header).encode()})
    with pytest.raises(InputError, match=message(path, "format version 99 is newer")):
        open_jets(path)


# ---------------------------------------------------------------- failed writes


def failing(batches, after: int):
    for i, batch in enumerate(batches):
        if i == after:
            raise RuntimeError("generator broke")
        yield batch


@pytest.mark.parametrize("fmt", ["parquet", "hdf5"])
def test_failed_write_leaves_nothing(tmp_path, rng, make_images, fmt):
    images = make_images(12, *SMALL)
    table = other_table(rng, 12)
    path = tmp_path / f"out{SUFFIX[fmt]}"
    with pytest.raises(RuntimeError, match="generator broke"):
        write_jets(path, failing(batches_of(images, table, [4, 4, 4]), 2), "qg3")
    assert os.listdir(tmp_path) == []

    path.write_bytes(b"old contents")
    bad = images.copy()
    bad[9, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match=message(path, "non-finite pixel values .* in jet 9")):
        write_jets(path, batches_of(bad, table, [4, 4, 4]), "qg3")
    assert os.listdir(tmp_path) == [path.name] and path.read_bytes() == b"old contents"


def test_writer_rejects_inconsistent_batches(tmp_path, rng, make_images):
    path = tmp_path / "w.parquet"
    with pytest.raises(InputError, match=message(path, "images have 3 channels but 8 are named")):
        write_jets(path, [Batch(make_images(2, *SMALL))], "e2e8")
    table = other_table(rng, 4)
    batches = [
        Batch(make_images(2, *SMALL), table.slice(0, 2)),
        Batch(make_images(2, *SMALL), table.slice(2, 2).drop_columns(["y"])),
    ]
    with pytest.raises(InputError, match=message(path, "batch columns .* differ from the file's")):
        write_jets(path, batches, "qg3")
    batches = [Batch(make_images(2, *SMALL)), Batch(make_images(2, 3, 7, 5))]
    with pytest.raises(InputError, match=message(path, r"images of shape \(3, 7, 5\) differ")):
        write_jets(path, batches, "qg3")
    strings = pa.table({"name": ["a", "b"]})
    with pytest.raises(
        InputError, match=message(tmp_path / "w.h5", "column name of type string cannot be stored")
    ):
        write_jets(tmp_path / "w.h5", [Batch(make_images(2, *SMALL), strings)], "qg3")
    with pytest.raises(ValueError, match="must not set channels"):
        write_jets(path, [], "qg3", extra={"channels": ["x"]})
    with pytest.raises(InputError, match="cannot tell the format"):
        write_jets(tmp_path / "w.txt", [], "qg3")
    with pytest.raises(
        InputError, match=message(tmp_path / "no" / "w.h5", "output directory does not exist")
    ):
        write_jets(tmp_path / "no" / "w.h5", [], "qg3")
    assert os.listdir(tmp_path) == []


def test_batch_checks(make_images):
    images = make_images(3, *SMALL)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        Batch(images[0])
    with pytest.raises(ValueError, match="table has 2 rows but there are 3 images"):
        Batch(images, pa.table({"y": [0, 1]}))
    batch = Batch(images.astype(np.float64), start=10)
    assert batch.images.dtype == np.float32 and batch.table.num_rows == 3
    assert batch.slice(1, 3).start == 11 and len(batch.slice(1, 3)) == 2
    assert len(Batch.concat([batch, batch])) == 6 and Batch.concat([batch, batch]).table.num_rows == 6
