"""make-dataset: determinism, balance, energy bookkeeping, splits, resume, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

from e2ecompress import cli
from e2ecompress.data.dataset import DatasetConfig, make_dataset
from e2ecompress.errors import InputError
from e2ecompress.io import open_jets

SMALL = DatasetConfig(
    layout="qg3", sets=("labelled", "unlabelled"), jets_per_shard=6, shards=(1, 1, 1), seed=7
)


def read_all(path):
    f = open_jets(path)
    batches = list(f.iter_batches(batch_size=4))
    return np.concatenate([b.images for b in batches]), pa.concat_tables([b.table for b in batches]), f


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds1")
    man = make_dataset(SMALL, out, workers=1, progress=False)
    return out, man


def test_manifest_and_layout(small_dataset):
    out, man = small_dataset
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["counts"] == man["counts"]
    assert man["channels"] == ["ECAL", "HCAL", "Tracks"]
    assert len(man["shards"]) == 6
    assert man["counts"]["labelled/train"] == 6
    for entry in man["shards"]:
        images, table, f = read_all(out / entry["path"])
        assert images.shape == (6, 3, 125, 125) and images.dtype == np.float32
        assert f.channels == ("ECAL", "HCAL", "Tracks")
        assert f.metadata["split"] == entry["split"] and f.metadata["set"] == entry["set"]
        assert {"y", "pt", "m0", "eta", "n_constituents"} <= set(table.column_names)
        assert np.isfinite(images).all() and (images >= 0).all()
        # ~97% zeros, as in the public data
        assert 0.9 < (images == 0).mean() < 0.995


def test_labels_balanced_and_matched(small_dataset):
    out, man = small_dataset
    for entry in man["shards"]:
        _, table, _ = read_all(out / entry["path"])
        y = table.column("y").to_numpy()
        pid = np.abs(table.column("parton_id").to_numpy())
        if entry["set"] == "labelled":
            assert (y == 1).sum() == (y == 0).sum() == 3
            assert np.all((y == 1) == ((pid >= 1) & (pid <= 5)))
            assert np.all((y == 0) == (pid == 21))
        else:
            assert np.all(y == -1)
        pt = table.column("pt").to_numpy()
        eta = table.column("eta").to_numpy()
        assert (pt > 70).all() and (np.abs(eta) < 1.5).all()


def test_no_jet_in_two_places(small_dataset):
    out, man = small_dataset
    uids, kin = [], []
    for entry in man["shards"]:
        _, table, _ = read_all(out / entry["path"])
        uids.extend(table.column("jet_uid").to_pylist())
        kin.extend(zip(table.column("pt").to_pylist(), table.column("eta").to_pylist(), strict=True))
    assert len(set(uids)) == len(uids)
    assert len(set(kin)) == len(kin)


def test_energy_bookkeeping(small_dataset):
    out, man = small_dataset
    images, table, _ = read_all(out / man["shards"][0]["path"])
    for ch, col, tol in ((0, "ecal_deposit", 0.25), (1, "hcal_deposit", 0.45)):
        image_sum = images[:, ch].sum(axis=(1, 2)).astype(np.float64)
        truth = table.column(col).to_numpy()
        # per jet within resolution (stochastic terms of a few tens of GeV deposits), and no global bias
        assert np.all(np.abs(image_sum - truth) < tol * truth + 3.0), (image_sum, truth)
        assert abs(image_sum.sum() / truth.sum() - 1) < 0.15


def test_resume_skips_and_is_identical(small_dataset, tmp_path):
    out, man = small_dataset
    before = {e["path"]: os.path.getmtime(out / e["path"]) for e in man["shards"]}
    man2 = make_dataset(SMALL, out, workers=1, progress=False)
    assert all(e["skipped"] for e in man2["shards"])
    assert {e["path"]: os.path.getmtime(out / e["path"]) for e in man2["shards"]} == before
    other = DatasetConfig(layout="qg3", sets=("labelled",), jets_per_shard=6, shards=(1, 1, 1), seed=8)
    with pytest.raises(InputError, match="different settings"):
        make_dataset(other, out, workers=1, progress=False)


def test_deterministic_across_workers(small_dataset, tmp_path):
    out, _man = small_dataset
    cfg = DatasetConfig(layout="qg3", sets=("labelled",), jets_per_shard=6, shards=(1, 1, 0), seed=7)
    make_dataset(cfg, tmp_path, workers=2, progress=False)
    for split in ("train", "val"):
        rel = f"labelled/{split}/shard-0000.parquet"
        a_img, a_tab, _ = read_all(out / rel)
        b_img, b_tab, _ = read_all(tmp_path / rel)
        assert np.array_equal(a_img, b_img)
        assert a_tab.equals(b_tab)


def test_e2e8_layout(tmp_path):
    cfg = DatasetConfig(layout="e2e8", sets=("labelled",), jets_per_shard=2, shards=(1, 0, 0), seed=3)
    man = make_dataset(cfg, tmp_path, workers=1, progress=False)
    images, _table, f = read_all(tmp_path / man["shards"][0]["path"])
    assert images.shape == (2, 8, 125, 125)
    assert f.channels == ("TrackPT", "TrackD0", "TrackDZ", "ECAL", "HCAL", "PixL1", "PixL2", "PixL3")
    trk = images[:, 0] > 0
    # impact parameters live exactly where tracks are; pixel hits are counts
    assert np.array_equal(images[:, 1] != 0, trk) and np.array_equal(images[:, 2] != 0, trk)
    for layer in (5, 6, 7):
        assert (images[:, layer] > 0).sum() > 0
        assert np.array_equal(images[:, layer], np.round(images[:, layer]))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layout", "qg5"], "unknown layout 'qg5'"),
        (["--jets-per-shard", "7"], "jets per shard must be even"),
        (["--sets", "labeled"], "unknown set 'labeled'"),
        (["--pileup", "-1"], "pileup mu must be >= 0"),
    ],
)
def test_cli_bad_arguments(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert cli.main(["make-dataset", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_pileup_adds_occupancy(tmp_path):
    base = dict(layout="qg3", sets=("unlabelled",), jets_per_shard=4, shards=(1, 0, 0), seed=5)
    occ = {}
    for mu in (0.0, 20.0):
        out = tmp_path / f"mu{mu:g}"
        man = make_dataset(DatasetConfig(pileup_mu=mu, **base), out, workers=1, progress=False)
        images, _, f = read_all(out / man["shards"][0]["path"])
        assert f.metadata["settings"]["pileup_mu"] == mu
        occ[mu] = (images[:, 0] > 0).sum(axis=(1, 2)).mean()
    # ~20 minimum-bias interactions add soft ECAL deposits all over the window (PHYSICS: x3-4 occupancy)
    assert occ[20.0] > 1.5 * occ[0.0], occ
