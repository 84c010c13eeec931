"""fsutil's writers: atomic_write, write_json (json_safe), atomic_directory."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from e2ecompress import fsutil
from e2ecompress.fsutil import atomic_directory, atomic_write, json_safe, remove_stale_temps, write_json


def test_json_safe_converts_what_json_cannot_write():
    value = {
        "a": (1, 2.5, None, True, "s"),
        "nan": float("nan"),
        "inf": [math.inf, -math.inf],
        "np": [np.int64(3), np.float32(0.5), np.bool_(True), np.float64("nan")],
        "arr": np.arange(4).reshape(2, 2),
        "path": Path("/x/y"),
        1: "int key",
        Path("k"): "path key",
        "other": object,
    }
    safe = json_safe(value)
    assert safe["a"] == [1, 2.5, None, True, "s"]
    assert safe["nan"] is None and safe["inf"] == [None, None]
    assert safe["np"] == [3, 0.5, True, None] and type(safe["np"][0]) is int
    assert safe["arr"] == [[0, 1], [2, 3]]
    assert safe["path"] == "/x/y" and safe["k"] == "path key" and safe[1] == "int key"
    assert safe["other"] == str(object)
    json.dumps(safe, allow_nan=False)


def test_write_json_output(tmp_path):
    obj = {"b": 1, "a": [1.5, float("nan")]}
    write_json(tmp_path / "x.json", obj)
    assert (tmp_path / "x.json").read_text() == json.dumps(
        {"b": 1, "a": [1.5, None]}, indent=2, sort_keys=True
    ) + "\n"
    write_json(tmp_path / "y.json", obj, indent=None, sort_keys=False, fsync=True)
    assert (tmp_path / "y.json").read_text() == '{"b": 1, "a": [1.5, null]}\n'
    assert sorted(os.listdir(tmp_path)) == ["x.json", "y.json"]


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, b"one")
    atomic_write(str(path), "twö")
    assert path.read_bytes() == "twö".encode()
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_failure_keeps_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_temporaries_are_recognised_as_stale(tmp_path):
    """A temporary named as atomic_write names them, of this host and a dead pid, is removed."""
    dead = tmp_path / f".f.bin.partial-{fsutil._HOST}-999999999.3"
    dead.write_bytes(b"")
    assert remove_stale_temps(tmp_path / "f.bin") == [dead.name]


def test_atomic_directory(tmp_path):
    path = tmp_path / "sub" / "ck"
    with atomic_directory(path) as tmp:
        (tmp / "a").write_text("1")
    assert os.listdir(path) == ["a"]
    with atomic_directory(path) as tmp:
        (tmp / "b").write_text("2")
    assert os.listdir(path) == ["b"]
    with pytest.raises(RuntimeError), atomic_directory(path) as tmp:
        (tmp / "c").write_text("3")
        raise RuntimeError
    assert os.listdir(path) == ["b"]
    assert os.listdir(path.parent) == ["ck"]
