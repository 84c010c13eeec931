"""The command line: one clear line and exit code 2 for bad input, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from e2ecompress import cli
from e2ecompress.io import Batch, write_jets


def _run(*argv):
    return subprocess.run(
        [sys.executable, "-m", "e2ecompress", *argv], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def good_file(tmp_path):
    images = np.zeros((4, 3, 125, 125), dtype=np.float32)
    images[:, 0, 60, 60] = 5.0
    path = tmp_path / "good.parquet"
    write_jets(path, [Batch(images, pa.table({"y": [1.0, 0.0, 1.0, 0.0]}))], channels="qg3")
    return path


def test_info(good_file, capsys):
    assert cli.main(["info", str(good_file)]) == 0
    out = capsys.readouterr().out
    assert "n_jets: 4" in out and "ECAL" in out


def _bad_files(tmp_path, good_file):
    missing = tmp_path / "missing.parquet"
    truncated = tmp_path / "truncated.parquet"
    data = good_file.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    no_images = tmp_path / "noimg.parquet"
    pq.write_table(pa.table({"y": [1.0]}), no_images)
    text = tmp_path / "notes.parquet"
    text.write_text("not a parquet file\n")
    return {
        "missing": (missing, "missing.parquet"),
        "truncated": (truncated, "truncated.parquet"),
        "no X_jets": (no_images, "X_jets"),
        "not parquet": (text, "notes.parquet"),
    }


@pytest.mark.parametrize("case", ["missing", "truncated", "no X_jets", "not parquet"])
def test_info_bad_input_one_line_exit_2(tmp_path, good_file, case):
    path, needle = _bad_files(tmp_path, good_file)[case]
    before = path.read_bytes() if path.exists() else None
    r = _run("info", str(path))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert (path.read_bytes() if path.exists() else None) == before  # inputs never modified


def test_check_reports_nan(tmp_path, capsys):
    images = np.zeros((3, 3, 125, 125), dtype=np.float32)
    images[2, 1, 3, 4] = np.nan
    path = tmp_path / "nan.parquet"
    table = pa.table({"X_jets": pa.array(images.tolist(), pa.list_(pa.list_(pa.list_(pa.float32()))))})
    pq.write_table(table, path)
    assert cli.main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nan.parquet" in err and "2" in err


def test_check_good_file(good_file, capsys):
    assert cli.main(["check", str(good_file)]) == 0
    assert "4 jets" in capsys.readouterr().out


def test_pthat_range_option():
    import argparse

    from e2ecompress.cli import build_parser
    from e2ecompress.commands.data import _pthat_range

    assert _pthat_range("400,800") == (400.0, 800.0)
    for bad in ("800,400", "x", "0,10", "1,2,3"):
        with pytest.raises(argparse.ArgumentTypeError):
            _pthat_range(bad)
    args = build_parser().parse_args(["make-dataset", "out", "--pthat", "300,600"])
    assert args.pthat == (300.0, 600.0)
    assert build_parser().parse_args(["make-dataset", "out"]).pthat == (80.0, 170.0)
