"""Image-level physics on generated jets; the slow q/g separation check needs >= 1,000 jets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from e2ecompress import physics
from e2ecompress.data.dataset import DatasetConfig, make_dataset
from e2ecompress.io import open_jets


def _load(out, man):
    imgs, tabs, chans = [], [], None
    for e in man["shards"]:
        f = open_jets(out / e["path"])
        chans = f.channels
        for b in f.iter_batches(batch_size=256):
            imgs.append(b.images)
            tabs.append(b.table)
    return np.concatenate(imgs), pa.concat_tables(tabs), chans


def test_point_deposit_kinematics():
    img = np.zeros((1, 3, 125, 125), dtype=np.float32)
    img[0, 0, 62, 62] = 50.0  # one 50 GeV deposit at the window centre, eta = 0
    k = physics.jet_kinematics(img, ["ECAL", "HCAL", "Tracks"], eta=np.array([0.0]))
    assert k["pt"][0] == pytest.approx(50.0)
    assert k["mass"][0] == pytest.approx(0.0, abs=1e-3)
    # two deposits separated in phi: m^2 = 2 E1 E2 (1 - cos dphi) at eta 0
    img[0, 1, 62, 72] = 30.0
    k = physics.jet_kinematics(img, ["ECAL", "HCAL", "Tracks"], radius=None)
    dphi = 10 * 2 * np.pi / 360
    assert k["mass"][0] == pytest.approx(np.sqrt(2 * 50 * 30 * (1 - np.cos(dphi))), rel=1e-6)


def test_image_kinematics_follow_the_jet(tmp_path):
    cfg = DatasetConfig(sets=("labelled",), jets_per_shard=10, shards=(1, 0, 0), seed=11)
    man = make_dataset(cfg, tmp_path, workers=1, progress=False)
    images, table, chans = _load(tmp_path, man)
    k = physics.jet_kinematics(images, chans, eta=table.column("eta").to_numpy())
    ratio = k["pt"] / table.column("pt").to_numpy()
    # the window holds the jet plus underlying event, minus muons/neutrinos, with calorimeter response
    assert 0.8 < np.median(ratio) < 1.4


@pytest.mark.slow
def test_quark_gluon_separation(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    cfg = DatasetConfig(sets=("labelled",), jets_per_shard=500, shards=(1, 0, 1), seed=2026)
    man = make_dataset(cfg, tmp_path, workers=2, progress=False)
    images, table, chans = _load(tmp_path, man)
    y = table.column("y").to_numpy()
    assert len(y) >= 1000 and (y == 1).sum() == (y == 0).sum()
    for col in ("n_constituents", "girth"):
        v = table.column(col).to_numpy()
        assert v[y == 0].mean() > v[y == 1].mean(), col
    feats = physics.substructure(images, chans, eta=table.column("eta").to_numpy())
    assert feats["n_tracks"][y == 0].mean() > feats["n_tracks"][y == 1].mean()
    assert feats["girth"][y == 0].mean() > feats["girth"][y == 1].mean()
    x = np.stack([feats[k] for k in ("n_tracks", "n_ecal", "girth", "ptd", "mass")], axis=1)
    x = (x - x.mean(0)) / x.std(0)
    train = np.arange(len(y)) < cfg.jets_per_shard  # fit on the train shard, score on the test shard
    clf = LogisticRegression().fit(x[train], y[train])
    auc = roc_auc_score(y[~train], clf.predict_proba(x[~train])[:, 1])
    print(f"image-feature logistic regression AUC = {auc:.3f} on {(~train).sum()} jets")
    assert auc >= 0.7
