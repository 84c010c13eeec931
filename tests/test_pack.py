"""pack / unpack / inspect / show end to end (api and CLI): round trips with the other columns, random
access, one-line errors without partial output, a killed pack, bounded memory, and the committed v1
fixtures (tools/make_fixtures.py) that every later version must still decode to the same images."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_codec import CHANNELS, jet_images

from e2ecompress import api
from e2ecompress.cli import main
from e2ecompress.codec.header import PackHeader
from e2ecompress.errors import DecodeError
from e2ecompress.format import ContainerReader
from e2ecompress.io import Batch, open_jets, write_jets

N = 40
CHUNK = 7  # 6 chunks, the last one of 5 jets
FIXTURES = Path(__file__).parent / "fixtures"
MODES = {
    "lossless": ["--lossless"],
    "bounded 0.01": ["--max-error", "0.01"],
    "bounded 0.5": ["--max-error", "0.5"],
}


def side_table(rng: np.random.Generator, n: int, strings: bool = True) -> pa.Table:
    columns = {
        "y": pa.array(rng.integers(0, 2, n).astype(np.float32)),
        "pt": pa.array(rng.uniform(20.0, 500.0, n)),
        "parton_id": pa.array(rng.choice([1, 2, 3, 21], n).astype(np.int32)),
        "jet_uid": pa.array(rng.integers(0, 2**62, n, dtype=np.int64)),
    }
    if strings:
        columns["sample"] = pa.array([f"qg3-{i % 3}-ü" for i in range(n)])
    return pa.table(columns)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """src.parquet (with a string column) and src.h5 (numbers only) of the same N jets."""
    rng = np.random.default_rng(11)
    images, _ = jet_images(rng, N)
    table = side_table(rng, N)
    d = tmp_path_factory.mktemp("inputs")
    write_jets(d / "src.parquet", [Batch(images, table)], channels=CHANNELS, extra={"seed": 11})
    numbers = table.drop_columns(["sample"])
    write_jets(d / "src.h5", [Batch(images, numbers)], channels=CHANNELS, extra={"seed": 11})
    return {"dir": d, "images": images, "table": table, "parquet": d / "src.parquet", "h5": d / "src.h5"}


@pytest.fixture(scope="module")
def packed(inputs) -> Path:
    """src.parquet packed lossless in chunks of 7 jets."""
    path = inputs["dir"] / "lossless.e2ez"
    api.pack(inputs["parquet"], path, lossless=True, chunk_size=CHUNK)
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("e2ecompress: error: "), err
    for needle in needles:
        assert needle in lines[0], err


def check_images(decoded: np.ndarray, original: np.ndarray, eps: float | None) -> None:
    assert decoded.shape == original.shape and decoded.dtype == np.float32
    if eps is None:
        assert decoded.tobytes() == original.tobytes()
        return
    assert np.abs(decoded.astype(np.float64) - original).max() <= eps
    assert (decoded[original == 0] == 0).all()


def _eps(mode: str) -> float | None:
    return float(MODES[mode][1]) if mode.startswith("bounded") else None


# --- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_parquet_round_trip(inputs, tmp_path, capsys, mode):
    out, back = tmp_path / "x.e2ez", tmp_path / "back.parquet"
    code, text, _ = run_cli(
        capsys, "pack", inputs["parquet"], out, *MODES[mode], "--chunk-size", 16, "--quiet"
    )
    assert code == 0 and f"packed {N} jets" in text
    code, text, _ = run_cli(capsys, "unpack", out, back, "--quiet")
    assert code == 0 and f"unpacked {N} jets" in text
    assert sorted(os.listdir(tmp_path)) == ["back.parquet", "x.e2ez"]  # no temporary files left
    original, restored = pq.read_table(inputs["parquet"]), pq.read_table(back)
    assert restored.schema.names == original.schema.names
    for name in original.schema.names:
        assert restored.schema.field(name) == original.schema.field(name)
        if name != "X_jets":
            assert restored.column(name).equals(original.column(name)), name
    meta = json.loads(restored.schema.metadata[b"e2ecompress"])
    assert meta == json.loads(original.schema.metadata[b"e2ecompress"])
    assert meta["channels"] == list(CHANNELS) and meta["seed"] == 11
    with open_jets(back) as f:
        assert f.channels == CHANNELS
        check_images(f.read().images, inputs["images"], _eps(mode))


@pytest.mark.parametrize("mode", ["lossless", "bounded 0.01"])
def test_hdf5_round_trip(inputs, tmp_path, capsys, mode):
    out, back = tmp_path / "x.e2ez", tmp_path / "back.h5"
    assert run_cli(capsys, "pack", inputs["h5"], out, *MODES[mode], "--chunk-size", CHUNK)[0] == 0
    assert run_cli(capsys, "unpack", out, back)[0] == 0
    with open_jets(inputs["h5"]) as f, open_jets(back) as g:
        assert g.channels == f.channels == CHANNELS
        assert g.other_schema == f.other_schema
        assert g.metadata == f.metadata
        want, got = f.read(), g.read()
        assert got.table.equals(want.table)
        check_images(got.images, inputs["images"], _eps(mode))
    assert api.inspect(out)["header"]["source"]["format"] == "hdf5"


def test_parquet_to_hdf5_and_back(inputs, packed, tmp_path, capsys):
    code, _, err = run_cli(capsys, "unpack", packed, tmp_path / "x.h5")  # the string column cannot go to HDF5
    assert_one_line_error(code, err, "sample", "HDF5")
    assert os.listdir(tmp_path) == []
    numbers = tmp_path / "numbers.e2ez"
    api.pack(inputs["h5"], numbers, lossless=True, chunk_size=CHUNK)
    assert run_cli(capsys, "unpack", numbers, tmp_path / "back.parquet")[0] == 0
    restored = pq.read_table(tmp_path / "back.parquet")
    for name in ("y", "pt", "parton_id", "jet_uid"):
        assert restored.column(name).equals(inputs["table"].column(name)), name


def test_api_summary(inputs, tmp_path):
    s = api.pack(inputs["parquet"], tmp_path / "x.e2ez", max_error=0.01, chunk_size=CHUNK)
    assert (s.n_jets, s.mode, s.bytes) == (N, "bounded", (tmp_path / "x.e2ez").stat().st_size)
    assert 0 < s.max_abs_error <= 0.01
    assert s.raw_bytes == N * 3 * 125 * 125 * 4 and s.raw_bytes / s.bytes > 20
    u = api.unpack(tmp_path / "x.e2ez", tmp_path / "x.parquet")
    assert (u.n_jets, u.mode, u.max_abs_error) == (N, "bounded", s.max_abs_error)


@pytest.mark.parametrize("bad", [{"max_error": 0.0}, {"max_error": -1.0}, {"chunk_size": 0}])
def test_api_rejects_bad_options(inputs, tmp_path, bad):
    with pytest.raises(ValueError):
        api.pack(inputs["parquet"], tmp_path / "x.e2ez", **{"max_error": 0.1, **bad})
    with pytest.raises(ValueError, match="one of"):
        api.pack(inputs["parquet"], tmp_path / "x.e2ez", max_error=0.1, lossless=True)
    assert os.listdir(tmp_path) == []


# --- random access, inspect, show ---------------------------------------------------------------------------


def test_random_access(inputs, packed):
    images, table = inputs["images"], inputs["table"]
    with ContainerReader(packed) as r:
        assert r.n_chunks == 6 and [c.n_jets for c in r.chunks] == [7] * 5 + [5]
    ranges = [(0, N), (0, 1), (5, 9), (6, 7), (7, 14), (13, 29), (34, 35), (39, 40), (0, 7)]
    for start, stop in ranges:
        batch = api.read(packed, start, stop)
        assert batch.images.tobytes() == images[start:stop].tobytes(), (start, stop)
        assert batch.table.equals(table.slice(start, stop - start)), (start, stop)
        assert (len(batch), batch.start) == (stop - start, start)
    empty = api.read(packed, 20, 20)
    assert empty.images.shape == (0, 3, 125, 125) and empty.table.num_rows == 0
    with api.open_e2ez(packed) as r:
        assert [b.start for b in r.iter_batches(3, 30)] == [3, 7, 14, 21, 28]
        for bad in ((-1, 3), (5, 4), (0, N + 1)):
            with pytest.raises(ValueError):
                r.read(*bad)


def test_inspect(packed, capsys):
    code, text, _ = run_cli(capsys, "inspect", packed, "--json")
    assert code == 0
    info = json.loads(text)
    assert (info["n_jets"], info["n_chunks"], info["bytes"]) == (N, 6, packed.stat().st_size)
    assert info["header"]["codec"]["mode"] == "lossless"
    assert info["header"]["channels"] == list(CHANNELS)
    assert info["header"]["source"]["name"] == "src.parquet"
    assert info["footer"] == {"n_jets": N, "max_abs_error": 0.0}
    code, text, _ = run_cli(capsys, "inspect", packed)
    assert code == 0 and f"{N} jets in 6 chunks" in text and "mode lossless" in text
    assert api.inspect(packed)["n_chunks"] == 6


def test_show(inputs, tmp_path, capsys):
    # the original is found beside the .e2ez by the source file name
    (tmp_path / "src.parquet").write_bytes(inputs["parquet"].read_bytes())
    api.pack(tmp_path / "src.parquet", tmp_path / "x.e2ez", max_error=0.01, chunk_size=CHUNK)
    code, text, _ = run_cli(capsys, "show", tmp_path / "x.e2ez", "--event", 9, "-o", tmp_path / "a.png")
    assert code == 0 and "original vs decoded" in text
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "src.parquet").unlink()
    code, text, _ = run_cli(capsys, "show", tmp_path / "x.e2ez", "-o", tmp_path / "b.png")
    assert code == 0 and "(decoded)" in text
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run_cli(capsys, "show", tmp_path / "x.e2ez", "--event", N, "-o", tmp_path / "c.png")
    assert_one_line_error(code, err, "out of range")
    code, _, err = run_cli(
        capsys, "show", tmp_path / "x.e2ez", "--original", tmp_path / "nope.parquet", "-o", tmp_path / "d.png"
    )
    assert_one_line_error(code, err, "nope.parquet", "no such file")
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "d.png").exists()


# --- errors: one line, exit code 2, nothing left behind -----------------------------------------------------


def _listing(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir()}


def test_pack_missing_input(tmp_path, capsys):
    code, _, err = run_cli(capsys, "pack", tmp_path / "missing.parquet", tmp_path / "x.e2ez", "--lossless")
    assert_one_line_error(code, err, "missing.parquet", "no such file")
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def nan_file(inputs) -> Path:
    images = inputs["images"].copy()
    images[20, 1, 50, 50] = np.nan  # chunk 2: chunks 0 and 1 are written before it is read
    path = inputs["dir"] / "nan.parquet"
    write_jets(path, [Batch(images, inputs["table"])], channels=CHANNELS, check_finite=False)
    return path


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_pack_input_with_nan(nan_file, tmp_path, capsys, existing):
    out = tmp_path / "x.e2ez"
    if existing:
        out.write_bytes(b"old")
    before = _listing(tmp_path)
    code, _, err = run_cli(capsys, "pack", nan_file, out, "--max-error", "0.1", "--chunk-size", CHUNK)
    assert_one_line_error(code, err, "nan.parquet", "jet 20")
    assert _listing(tmp_path) == before


def test_pack_output_directory_missing(inputs, packed, tmp_path, capsys):
    code, _, err = run_cli(capsys, "pack", inputs["parquet"], tmp_path / "no" / "x.e2ez", "--lossless")
    assert_one_line_error(code, err, "output directory does not exist")
    code, _, err = run_cli(capsys, "unpack", packed, tmp_path / "no" / "x.parquet")
    assert_one_line_error(code, err, "output directory does not exist")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "argv", [["--max-error", "-1"], ["--max-error", "0"], ["--max-error", "nan"], ["--chunk-size", "0"]]
)
def test_bad_arguments_are_usage_errors(inputs, tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(["pack", str(inputs["parquet"]), str(tmp_path / "x.e2ez"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert argv[0] in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_unpack_not_an_e2ez_file(inputs, tmp_path, capsys):
    code, _, err = run_cli(capsys, "unpack", inputs["parquet"], tmp_path / "x.parquet")
    assert_one_line_error(code, err, "src.parquet", "not an .e2ez file")
    code, _, err = run_cli(capsys, "unpack", tmp_path / "missing.e2ez", tmp_path / "x.parquet")
    assert_one_line_error(code, err, "missing.e2ez", "no such file")
    code, _, err = run_cli(capsys, "inspect", tmp_path / "missing.e2ez")
    assert_one_line_error(code, err, "no such file")
    assert os.listdir(tmp_path) == []


def test_unpack_unknown_output_format(packed, tmp_path, capsys):
    code, _, err = run_cli(capsys, "unpack", packed, tmp_path / "x.txt")
    assert_one_line_error(code, err, "x.txt", "suffix")
    assert os.listdir(tmp_path) == []


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1 :]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_corrupt_chunk(packed, tmp_path, capsys, existing):
    data = packed.read_bytes()
    with ContainerReader(packed) as r:
        chunk = r.chunks[2]
    bad = tmp_path / "bad.e2ez"
    bad.write_bytes(_flip(data, chunk.offset + chunk.size // 2))
    out = tmp_path / "out.parquet"
    if existing:
        out.write_bytes(b"old")
    before = _listing(tmp_path)
    code, _, err = run_cli(capsys, "unpack", bad, out)
    assert_one_line_error(code, err, "bad.e2ez", "chunk 2", "CRC32C mismatch")
    assert _listing(tmp_path) == before
    # the chunks around it are still readable
    assert api.read(bad, 0, chunk.start).images.tobytes() == api.read(packed, 0, chunk.start).images.tobytes()
    assert api.read(bad, chunk.stop, N).table.equals(api.read(packed, chunk.stop, N).table)
    with pytest.raises(DecodeError, match="CRC32C"):
        api.read(bad, chunk.start, chunk.start + 1)


def test_corrupt_header(packed, tmp_path, capsys):
    bad = tmp_path / "bad.e2ez"
    bad.write_bytes(_flip(packed.read_bytes(), 40))
    for argv in (["unpack", bad, tmp_path / "out.parquet"], ["inspect", bad], ["show", bad, "-o", "x.png"]):
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, "bad.e2ez", "header", "CRC32C mismatch")
    assert os.listdir(tmp_path) == ["bad.e2ez"]


def test_truncated_at_chunk_boundaries(packed, tmp_path, capsys):
    data = packed.read_bytes()
    with ContainerReader(packed) as r:
        chunks = r.chunks
    cuts = {c.offset for c in chunks} | {c.offset + c.size // 2 for c in chunks}
    cuts |= {chunks[-1].offset + chunks[-1].size, len(data) - 1, 16}
    bad, out = tmp_path / "cut.e2ez", tmp_path / "out.parquet"
    for cut in sorted(cuts):
        bad.write_bytes(data[:cut])
        with pytest.raises(DecodeError, match="truncated"):
            api.read(bad)
        code, _, err = run_cli(capsys, "unpack", bad, out)
        assert_one_line_error(code, err, "cut.e2ez", "truncated")
        assert sorted(os.listdir(tmp_path)) == ["cut.e2ez"]


def test_killed_pack_leaves_no_output(inputs, tmp_path):
    """SIGKILL in the middle of `python -m e2ecompress pack`: only the .partial- file stays behind."""
    out = tmp_path / "out.e2ez"
    out.write_bytes(b"old")
    # the real CLI, with a hook that reports each written chunk and stalls after the second
    script = textwrap.dedent(
        f"""
        import runpy, sys, time
        from e2ecompress.format import ContainerWriter
        write = ContainerWriter.write_chunk
        def write_chunk(self, *args, **kw):
            write(self, *args, **kw)
            print("chunk", self.n_chunks, flush=True)
            if self.n_chunks == 2:
                time.sleep(60)
        ContainerWriter.write_chunk = write_chunk
        sys.argv = ["e2ecompress", "pack", {str(inputs["parquet"])!r}, {str(out)!r}, "--lossless",
                    "--chunk-size", "4", "--quiet"]
        runpy.run_module("e2ecompress", run_name="__main__")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"chunk 1\n", proc.stderr.read().decode()
        assert proc.stdout.readline() == b"chunk 2\n", proc.stderr.read().decode()
        (partial,) = tmp_path.glob(f".out.e2ez.partial-*-{proc.pid}")
        assert partial.exists()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert out.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == sorted(["out.e2ez", partial.name])
    with pytest.raises(DecodeError, match="truncated"), ContainerReader(partial):
        pass
    # the next pack of the same output removes what the killed run left
    api.pack(inputs["parquet"], out, lossless=True)
    assert sorted(os.listdir(tmp_path)) == ["out.e2ez"]


def test_pack_streams_in_bounded_memory(tmp_path):
    """Packing 8 chunks holds about as much as packing one: a chunk being coded and one read ahead."""
    chunk = 16
    rng = np.random.default_rng(5)
    images, _ = jet_images(rng, 8 * chunk)
    table = side_table(rng, 8 * chunk)
    one, eight = tmp_path / "one.parquet", tmp_path / "eight.parquet"
    write_jets(one, [Batch(images[:chunk], table.slice(0, chunk))], channels=CHANNELS)
    write_jets(eight, [Batch(images, table)], channels=CHANNELS)
    del images
    peaks = {}
    for src in (one, eight):
        tracemalloc.start()
        try:
            api.pack(src, tmp_path / "x.e2ez", lossless=True, chunk_size=chunk)
            _, peaks[src.name] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    chunk_bytes = chunk * 3 * 125 * 125 * 4
    # measured: ~2.7 chunks for one chunk, ~3.7 for eight; holding every chunk would be >= 8
    assert peaks["eight.parquet"] < peaks["one.parquet"] + 2 * chunk_bytes, peaks
    assert peaks["eight.parquet"] < 6 * chunk_bytes, peaks


# --- fixtures of every format version (tools/make_fixtures.py): old files keep decoding the same ---

VERSIONS = (1, 2)


@pytest.fixture(scope="module", params=VERSIONS, ids=[f"v{v}" for v in VERSIONS])
def expected(request) -> dict:
    return json.loads((FIXTURES / f"v{request.param}_expected.json").read_text())


def _sha256(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images, "<f4").tobytes()).hexdigest()


def test_fixture_files_are_small(expected):
    version = expected["format_version"]
    names = [expected["input"]["file"], *expected["fixtures"], f"v{version}_expected.json"]
    assert sum((FIXTURES / name).stat().st_size for name in names) < 200_000
    assert all(name.startswith(f"v{version}_") for name in expected["fixtures"])


def test_fixture_input(expected):
    with open_jets(FIXTURES / expected["input"]["file"]) as f:
        images = f.read().images
        assert f.channels == CHANNELS and len(images) == expected["input"]["n_jets"]
    assert _sha256(images) == expected["input"]["images_sha256"]


@pytest.mark.parametrize("mode", ["bounded_0.01", "lossless"])
def test_fixture_decodes_to_the_same_images(expected, mode):
    name = f"v{expected['format_version']}_{mode}.e2ez"
    want = expected["fixtures"][name]
    path = FIXTURES / name
    with ContainerReader(path) as r:
        assert [c.n_jets for c in r.chunks] == want["chunks"] == [10, 10, 4]
        assert r.header["codec"]["mode"] == want["mode"]
        assert r.version == expected["format_version"]
    batch = api.read(path)
    assert _sha256(batch.images) == want["images_sha256"]
    assert int(np.count_nonzero(batch.images)) == want["nonzero_pixels"]
    assert float(batch.images.sum(dtype=np.float64)) == pytest.approx(want["sum"], rel=1e-12)
    with open_jets(FIXTURES / expected["input"]["file"]) as f:
        original = f.read()
    assert batch.table.equals(original.table)
    check_images(batch.images, original.images, want["max_error"])
    assert np.abs(batch.images - original.images).max() == want["max_abs_error"]
    assert api.read(path, 8, 13).images.tobytes() == batch.images[8:13].tobytes()  # across a chunk boundary


def test_every_fixture_decodes_to_its_images(expected):
    """Every mode a version wrote (physics levels, unbiased bounded, ...) keeps decoding to the same bits."""
    for name, want in expected["fixtures"].items():
        batch = api.read(FIXTURES / name)
        assert _sha256(batch.images) == want["images_sha256"], name
        assert int(np.count_nonzero(batch.images)) == want["nonzero_pixels"], name
        with ContainerReader(FIXTURES / name) as r:
            assert r.header["codec"]["mode"] == want["mode"]


def test_pack_header_json_round_trips(tmp_path):
    """PackHeader reads every fixture's header; it writes the JSON the format has (the v2 fixtures' headers
    and a fresh pack's, key for key and in order); v1 headers lack image and columns_schema."""
    api.pack(FIXTURES / "jets_small.parquet", tmp_path / "x.e2ez", max_error=0.01, chunk_size=CHUNK)
    for path in [*sorted(FIXTURES.glob("*.e2ez")), tmp_path / "x.e2ez"]:
        with ContainerReader(path) as r:
            header = PackHeader.from_dict(r.header)
            assert header.channels == tuple(r.header["channels"]) and header.codec.mode
            if path.name.startswith("v1_"):
                assert header.image is None and header.columns_schema is None
            else:
                assert json.dumps(header.to_dict()) == json.dumps(r.header), path.name


def test_fixture_unpacks(expected, tmp_path, capsys):
    name = f"v{expected['format_version']}_bounded_0.01.e2ez"
    assert run_cli(capsys, "unpack", FIXTURES / name, tmp_path / "x.parquet")[0] == 0
    with open_jets(tmp_path / "x.parquet") as f:
        assert _sha256(f.read().images) == expected["fixtures"][name]["images_sha256"]
    restored = pq.read_table(tmp_path / "x.parquet")
    original = pq.read_table(FIXTURES / expected["input"]["file"])
    assert restored.drop_columns(["X_jets"]).equals(original.drop_columns(["X_jets"]))
    assert restored.schema.metadata == original.schema.metadata
