"""The base install: pack / unpack / inspect of the classical modes need none of the extras, and a command
that needs a missing extra says in one line (exit code 2) which `pip install` to run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from e2ecompress import _extras
from e2ecompress.errors import E2EError
from e2ecompress.io import Batch, open_jets, write_jets

# what the extras bring; the base install has none of them
HEAVY = (
    "torch",
    "numba",
    "sklearn",
    "matplotlib",
    "safetensors",
    "yaml",
    "pythia8mc",
    "fastjet",
    "awkward",
    "tqdm",
    "dask",
    "distributed",
    "numcodecs",
    "zarr",
)

# Runs a module as `python -m MODULE ARGS` with the blocked modules unimportable, and records every
# attempt to import (or look up) one of them.
_RUNNER = """
import importlib.abc, json, runpy, sys

record, block, module, *args = sys.argv[1:]
block = set(json.loads(block))
tried = []


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in block:
            tried.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


assert not block & set(sys.modules), sorted(block & set(sys.modules))
sys.meta_path.insert(0, _Block())
sys.argv = [module, *args]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
finally:
    with open(record, "w") as f:
        json.dump(sorted(set(tried)), f)
"""


def _run_without(tmp_path, block, module, *args):
    """(completed process, the blocked modules it tried to import)."""
    record = tmp_path / "tried.json"
    r = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(record), json.dumps(list(block)), module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    tried = json.loads(record.read_text()) if record.exists() else None
    return r, tried


@pytest.fixture
def small_file(tmp_path, rng):
    images = np.zeros((6, 3, 125, 125), np.float32)
    hit = rng.random(images.shape) < 0.03
    images[hit] = rng.exponential(1.0, int(hit.sum())).astype(np.float32)
    path = tmp_path / "jets.parquet"
    write_jets(path, [Batch(images, pa.table({"y": np.arange(6) % 2}))], channels="qg3")
    return path, images


def test_classical_pack_unpack_inspect_need_no_extra(tmp_path, small_file):
    src, images = small_file
    steps = [
        (["pack", src, "b.e2ez", "--max-error", "0.01"], "b.e2ez: packed 6 jets (bounded)"),
        (["pack", src, "l.e2ez", "--lossless"], "l.e2ez: packed 6 jets (lossless)"),
        (["unpack", "b.e2ez", "b.parquet"], "b.parquet: unpacked 6 jets"),
        (["unpack", "l.e2ez", "l.h5"], "l.h5: unpacked 6 jets"),
        (["inspect", "b.e2ez"], "6 jets"),
        (["inspect", "l.e2ez", "--json"], '"n_jets": 6'),
        (["--help"], "pack"),
    ]
    for argv, expected in steps:
        r, tried = _run_without(tmp_path, HEAVY, "e2ecompress", *argv)
        assert r.returncode == 0, (argv, r.stderr)
        assert expected in r.stdout, (argv, r.stdout)
        assert tried == [], (argv, tried)
    with open_jets(tmp_path / "b.parquet") as f:
        assert np.abs(f.read().images - images).max() <= 0.01
    with open_jets(tmp_path / "l.h5") as f:
        np.testing.assert_array_equal(f.read().images, images)


def test_physics_needs_no_extra(tmp_path):
    r, tried = _run_without(tmp_path, HEAVY, "e2ecompress.physics")
    assert r.returncode == 0, r.stderr
    assert tried == []


def _one_line_error(r, extra):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"pip install 'e2ecompress[{extra}]'" in lines[0]
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("block", [HEAVY, ("torch",)], ids=["base", "no-torch"])
@pytest.mark.parametrize(
    "mode",
    [["--latent", "--quality", "3"], ["--max-error", "0.1", "--predictor", "model"]],
    ids=["lossy", "predictor"],
)
def test_learned_modes_without_torch(tmp_path, small_file, block, mode):
    src, _ = small_file
    r, _ = _run_without(tmp_path, block, "e2ecompress", "pack", src, "q.e2ez", *mode)
    line = _one_line_error(r, "ml")
    assert "torch" in line
    assert not (tmp_path / "q.e2ez").exists()


def test_train_without_torch(tmp_path):
    r, _ = _run_without(tmp_path, ("torch",), "e2ecompress.train", "pretrain", "--data", "d", "--out", "o")
    assert "torch" in _one_line_error(r, "ml")


@pytest.mark.parametrize("block", [HEAVY, ("pythia8mc", "numba")], ids=["base", "no-pythia-numba"])
def test_make_dataset_without_generators(tmp_path, block):
    r, _ = _run_without(tmp_path, block, "e2ecompress", "make-dataset", "out", "--workers", "1")
    line = _one_line_error(r, "generate")
    assert "pythia8mc" in line and "numba" in line
    assert not (tmp_path / "out").exists()


def test_show_and_demo_without_extras(tmp_path):
    r, _ = _run_without(tmp_path, HEAVY, "e2ecompress", "show", "any.e2ez")
    _one_line_error(r, "plot")
    r, _ = _run_without(tmp_path, HEAVY, "e2ecompress", "demo", "--out", "demo")
    _one_line_error(r, "generate")
    assert not (tmp_path / "demo").exists()


def test_many_workers_without_dask(tmp_path, small_file):
    src, _ = small_file
    shards = tmp_path / "shards"
    shards.mkdir()
    for name in ("a", "b"):
        (shards / f"{name}.parquet").write_bytes(src.read_bytes())
    r, _ = _run_without(
        tmp_path, HEAVY, "e2ecompress", "pack", shards, "packed/", "--lossless", "--workers", "2"
    )
    _one_line_error(r, "dist")
    # one worker runs in-process, without dask
    r, tried = _run_without(tmp_path, HEAVY, "e2ecompress", "pack", shards, "packed/", "--lossless")
    assert r.returncode == 0, r.stderr
    assert tried == []


def test_require_and_the_error():
    _extras.require("nothing", "dist", modules=("json",))
    with pytest.raises(_extras.MissingExtraError) as info:
        _extras.require("a feature", ("generate", "ml"), ("json", "no_such_module_e2e", "torch"))
    err = info.value
    assert isinstance(err, E2EError) and isinstance(err, ImportError)
    assert err.missing == ("no_such_module_e2e",)
    assert (
        str(err)
        == "a feature needs no_such_module_e2e, not installed: pip install 'e2ecompress[generate,ml]'"
    )
    # pip names where they differ from the import names
    err = _extras.MissingExtraError("x", ["sklearn", "distributed"], ["ml", "dist"])
    assert (
        str(err)
        == "x needs scikit-learn, dask[distributed], not installed: pip install 'e2ecompress[ml,dist]'"
    )


def test_progress_bar_is_off_without_tqdm(monkeypatch):
    monkeypatch.setattr(_extras, "available", lambda module: module != "tqdm")
    with _extras.progress_bar(10, "pack", True, unit="jet") as bar:
        bar.update(5)
    assert isinstance(bar, _extras._NoBar)
