"""Files this project did not write: inputs are never overwritten, double pixels stay exact in lossless mode,
the X_jets type, column order and the other columns come back, out-of-range options are one-line errors."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_codec import CHANNELS, jet_images
from test_pack import assert_one_line_error, run_cli

from e2ecompress import api
from e2ecompress.io import Batch, write_jets

N = 12
CH = ",".join(CHANNELS)
DOUBLE = pa.list_(pa.list_(pa.list_(pa.float64())))


def _public_table(images: np.ndarray, image_type: pa.DataType, rng: np.random.Generator) -> pa.Table:
    """A public-style table: X_jets between other columns, a string column, no e2ecompress metadata."""
    n = len(images)
    return pa.table(
        {
            "pt": pa.array(rng.uniform(70, 250, n)),
            "X_jets": pa.array(images.tolist(), type=image_type),
            "y": pa.array(rng.integers(0, 2, n).astype(np.float64)),
            "run": pa.array([f"r{i}" for i in range(n)]),
        }
    )


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return jet_images(np.random.default_rng(5), N)[0]


@pytest.fixture(scope="module")
def doubles(images, tmp_path_factory) -> dict:
    """A list<double> file whose values are not float32-exact (1.0000000001 and float64 noise)."""
    rng = np.random.default_rng(6)
    x = images.astype(np.float64)
    nz = x != 0
    x[nz] *= 1.0 + rng.uniform(-1e-9, 1e-9, int(nz.sum()))
    x[0, 0, 0, 0] = 1.0000000001
    path = tmp_path_factory.mktemp("doubles") / "dbl.parquet"
    pq.write_table(_public_table(x, DOUBLE, rng), path)
    return {"path": path, "images": x}


def _same_table(a_path, b_path) -> None:
    a, b = pq.read_table(a_path), pq.read_table(b_path)
    assert b.schema.remove_metadata().equals(a.schema.remove_metadata())
    for name in a.column_names:  # bit-exact, column by column
        assert a.column(name).equals(b.column(name)), name


# --- an input is never overwritten -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "dot", "symlink", "hardlink"])
def test_pack_refuses_an_output_that_is_the_input(doubles, tmp_path, capsys, how):
    src = tmp_path / "in.parquet"
    src.write_bytes(doubles["path"].read_bytes())
    before = src.read_bytes()
    out = {"same": src, "dot": f"./{os.path.relpath(src)}", "symlink": tmp_path / "o.e2ez"}.get(how)
    if how == "symlink":
        os.symlink(src, out)
    if how == "hardlink":
        out = tmp_path / "o.e2ez"
        os.link(src, out)
    listing = sorted(os.listdir(tmp_path))
    for mode in (["--max-error", "0.01"], ["--lossless"]):
        code, _, err = run_cli(capsys, "pack", src, out, *mode, "--channels", CH)
        assert_one_line_error(code, err, "is the input")
    assert src.read_bytes() == before and sorted(os.listdir(tmp_path)) == listing


def test_unpack_and_many_shards_refuse_inputs(doubles, tmp_path, capsys):
    packed = tmp_path / "a.e2ez"
    api.pack(doubles["path"], packed, lossless=True, channels=CHANNELS)
    before = packed.read_bytes()
    code, _, err = run_cli(capsys, "unpack", packed, f"{tmp_path}/./a.e2ez")
    assert_one_line_error(code, err, "is the input")
    h5 = tmp_path / "b.h5"
    write_jets(h5, [Batch(doubles["images"][:2].astype(np.float32))], channels=CHANNELS)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    os.symlink(h5, out_dir / "b.e2ez")  # a shard's output that links to the shard itself
    code, _, err = run_cli(capsys, "pack", h5, str(out_dir) + "/", "--lossless")
    assert_one_line_error(code, err, "is the input")
    assert packed.read_bytes() == before and os.path.islink(out_dir / "b.e2ez")


# --- double pixels, list types and the schema round-trip ---------------------------------------------------


def test_lossless_keeps_double_pixels_exactly(doubles, tmp_path, capsys):
    out, back = tmp_path / "x.e2ez", tmp_path / "back.parquet"
    code, text, _ = run_cli(capsys, "pack", doubles["path"], out, "--lossless", "--channels", CH)
    assert code == 0 and "max |error| 0 GeV" in text
    code, _, _ = run_cli(capsys, "unpack", out, back)
    assert code == 0
    _same_table(doubles["path"], back)
    restored = np.array(pq.read_table(back).column("X_jets")[0].as_py()[0][0][0])
    assert restored == 1.0000000001
    batch = api.read(out)
    assert batch.images.dtype == np.float64
    assert batch.images.tobytes() == doubles["images"].tobytes()


def test_float32_exact_doubles_cost_no_more_than_float32(images, tmp_path):
    rng = np.random.default_rng(7)
    paths = {}
    for name, t in (("f8", DOUBLE), ("f4", pa.list_(pa.list_(pa.list_(pa.float32()))))):
        paths[name] = tmp_path / f"{name}.parquet"
        pq.write_table(_public_table(images, t, rng), paths[name])
    sizes = {}
    for name, path in paths.items():
        summary = api.pack(path, tmp_path / f"{name}.e2ez", lossless=True, channels=CHANNELS)
        sizes[name] = summary.image_bytes
    assert sizes["f8"] <= sizes["f4"] + 8  # one empty residual stream per chunk
    api.unpack(tmp_path / "f8.e2ez", tmp_path / "f8back.parquet")
    _same_table(paths["f8"], tmp_path / "f8back.parquet")


def test_bounded_double_input_is_bounded_against_the_doubles(doubles, tmp_path):
    summary = api.pack(doubles["path"], tmp_path / "b.e2ez", max_error=0.01, channels=CHANNELS)
    assert summary.max_abs_error <= 0.01
    api.unpack(tmp_path / "b.e2ez", tmp_path / "b.parquet")
    table = pq.read_table(tmp_path / "b.parquet")
    assert table.schema.field("X_jets").type == DOUBLE and table.column_names == ["pt", "X_jets", "y", "run"]
    decoded = np.array(table.column("X_jets").to_pylist())
    x = doubles["images"]
    assert np.abs(decoded - x).max() <= 0.01 and (decoded[x == 0] == 0).all()


@pytest.mark.parametrize(
    "image_type",
    [
        pa.list_(pa.list_(pa.list_(pa.float32(), 125), 125), 3),
        pa.large_list(pa.large_list(pa.large_list(pa.float32()))),
        pa.list_(pa.list_(pa.list_(pa.field("element", pa.float64(), nullable=False)))),
    ],
    ids=["fixed_size_list", "large_list", "named-non-null"],
)
def test_image_column_type_round_trips(images, tmp_path, image_type):
    src = tmp_path / "src.parquet"
    pq.write_table(_public_table(images, image_type, np.random.default_rng(8)), src)
    api.pack(src, tmp_path / "x.e2ez", lossless=True, channels=CHANNELS)
    api.unpack(tmp_path / "x.e2ez", tmp_path / "back.parquet")
    _same_table(src, tmp_path / "back.parquet")
    assert pq.read_schema(tmp_path / "back.parquet").field("X_jets").type == image_type


def test_zero_rows_keep_every_column(tmp_path):
    table = pa.table(
        {"pt": pa.array([], pa.float64()), "y": pa.array([], pa.int64()), "s": pa.array([], pa.string())}
    )
    src = tmp_path / "empty.parquet"
    write_jets(src, [Batch(np.zeros((0, 3, 125, 125), np.float32), table)], channels=CHANNELS)
    for mode in ({"lossless": True}, {"max_error": 0.01}):
        api.pack(src, tmp_path / "e.e2ez", **mode)
        api.unpack(tmp_path / "e.e2ez", tmp_path / "back.parquet")
        back = pq.read_table(tmp_path / "back.parquet")
        assert back.num_rows == 0 and back.column_names == ["X_jets", "pt", "y", "s"]
        assert back.schema.field("y").type == pa.int64()
        assert api.read(tmp_path / "e.e2ez").table.column_names == ["pt", "y", "s"]


def test_hdf5_double_jets_stay_double(doubles, tmp_path):
    src = tmp_path / "d.h5"
    with h5py.File(src, "w") as f:
        f["jet"] = doubles["images"].transpose(0, 2, 3, 1)
        f["Y"] = np.arange(N, dtype=np.float64).reshape(N, 1) % 2
    api.pack(src, tmp_path / "d.e2ez", lossless=True, channels=CHANNELS)
    api.unpack(tmp_path / "d.e2ez", tmp_path / "back.h5")
    with h5py.File(src) as a, h5py.File(tmp_path / "back.h5") as b:
        assert b["jet"].dtype == np.float64
        assert a["jet"][:].tobytes() == b["jet"][:].tobytes()
        assert np.array_equal(a["Y"][:], b["Y"][:])


# --- options and values out of range ---------------------------------------------------------------------


@pytest.mark.parametrize("level", ["0", "99", "x"])
def test_quality_out_of_range_is_a_usage_error(doubles, tmp_path, capsys, level):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "pack", doubles["path"], tmp_path / "q.e2ez", "--quality", level)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--quality" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("eps", ["0.01", "1e38"])
def test_values_near_float32_max_give_one_line(tmp_path, capsys, eps):
    x = np.zeros((2, 3, 125, 125), np.float32)
    x[0, 0, 5, 5], x[1, 2, 3, 3] = 3.4e38, 1.0
    src = tmp_path / "big.parquet"
    write_jets(src, [Batch(x)], channels=CHANNELS)
    code, _, err = run_cli(capsys, "pack", src, tmp_path / "big.e2ez", "--max-error", eps)
    assert_one_line_error(code, err, "big.parquet", "float32")
    assert sorted(os.listdir(tmp_path)) == ["big.parquet"]
    assert api.pack(src, tmp_path / "big.e2ez", lossless=True).max_abs_error == 0


def test_unpack_summary_states_sizes(doubles, tmp_path, capsys):
    api.pack(doubles["path"], tmp_path / "x.e2ez", max_error=0.01, channels=CHANNELS)
    code, text, _ = run_cli(capsys, "unpack", tmp_path / "x.e2ez", tmp_path / "back.parquet")
    assert code == 0 and "vs the input" not in text
    assert " .e2ez file into " in text and "kB" in text


def test_inspect_budget_adds_up(doubles, tmp_path, capsys):
    path = tmp_path / "x.e2ez"
    api.pack(doubles["path"], path, max_error=0.01, channels=CHANNELS, chunk_size=5)
    info = api.inspect(path)
    budget = info["budget"]
    assert sum(budget.values()) * N == pytest.approx(info["bytes"])
    for c in CHANNELS:
        assert budget[f"positions {c}"] > 0 and budget[f"values {c}"] > 0
    assert budget["side columns"] > 0 and budget["framing"] > 0
    images = sum(v for k, v in budget.items() if k not in ("side columns", "framing"))
    assert images == pytest.approx(info["image_bytes_per_jet"])
    code, text, _ = run_cli(capsys, "inspect", path)
    assert code == 0 and "bytes/jet: images" in text and "positions ECAL" in text


def test_unnamed_channels_compress_like_named_ones(images, tmp_path):
    """Tower planes are found in the data: a public-style file without channel names, in another channel
    order, codes to the same image bytes as the named file."""
    order = [2, 0, 1]  # Tracks, ECAL, HCAL like the public files
    rng = np.random.default_rng(9)
    public = tmp_path / "public.parquet"
    pq.write_table(_public_table(images[:, order], DOUBLE, rng), public)
    named = tmp_path / "named.parquet"
    write_jets(named, [Batch(images)], channels=CHANNELS)
    sizes = {}
    for name, src in (("public", public), ("named", named)):
        summary = api.pack(src, tmp_path / f"{name}.e2ez", max_error=0.01)
        sizes[name] = summary.image_bytes
    assert sizes["public"] == sizes["named"]
    back = api.read(tmp_path / "public.e2ez").images
    assert np.abs(back - images[:, order]).max() <= 0.01
