"""Modes that run the latent model: lossy levels, visible-only, bounded with the model as predictor.

A tiny random latent model (saved to tmp) stands in for the shipped one: these tests check the plumbing
(exact zeros, bounds, model ids, embedding, determinism across thread counts), not compression quality.
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import sparse_images
from test_latent import tiny_codec

from e2ecompress import api
from e2ecompress.cli import main
from e2ecompress.errors import InputError
from e2ecompress.io import Batch, write_jets

CHANNELS = ("ECAL", "HCAL", "Tracks")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lossy")
    images = sparse_images(np.random.default_rng(11), 40, occupancy=0.004)
    images[:, 1] = np.repeat(np.repeat(images[:, 1, ::5, ::5], 5, axis=1), 5, axis=2)  # block HCAL
    table = pa.table({"y": np.arange(40, dtype=np.float32) % 2, "jet_uid": np.arange(40, dtype=np.int64)})
    src = root / "jets.parquet"
    write_jets(src, [Batch(images, table)], channels=CHANNELS)
    codec = tiny_codec(images)
    model = root / "model"
    codec.save(model)
    other = root / "other"
    tiny_codec(images[:20] * 2).save(other)
    return root, src, images, model, other


def _decode(path, **kw):
    with api.open_e2ez(path, **kw) as r:
        return r.read().images


@pytest.mark.parametrize("quality", [1, 2, 3])
def test_lossy_levels_keep_zeros(setup, quality):
    root, src, images, model, _ = setup
    out = root / f"q{quality}.e2ez"
    summary = api.pack(src, out, model=model, latent=True, quality=quality, chunk_size=16)
    dec = _decode(out)
    assert dec.shape == images.shape
    assert not dec[images == 0].any()  # zeros stay exact zeros
    assert summary.max_abs_error == pytest.approx(float(np.abs(dec - images).max()), rel=1e-6)
    assert api.inspect(out)["header"]["model"]["level"] == quality


def test_visible_only_point(setup):
    root, src, images, model, _ = setup
    full, part = root / "full.e2ez", root / "part.e2ez"
    api.pack(src, full, model=model, latent=True, quality=2)
    api.pack(src, part, model=model, latent=True, quality=2, keep_fraction=0.25)
    assert part.stat().st_size < full.stat().st_size
    dec = _decode(part)
    assert not dec[images == 0].any()


def test_bounded_with_model_predictor(setup):
    root, src, images, model, _ = setup
    out = root / "bm.e2ez"
    api.pack(src, out, model=model, max_error=0.01, predictor="model", chunk_size=16)
    dec = _decode(out)
    assert np.abs(dec - images).max() <= np.float32(0.01)
    assert not dec[images == 0].any()


def test_decode_is_the_same_with_any_thread_count(setup):
    root, src, images, model, _ = setup
    lossy, bounded = root / "t_lossy.e2ez", root / "t_bounded.e2ez"
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        api.pack(src, lossy, model=model, latent=True, quality=2)
        api.pack(src, bounded, model=model, max_error=0.01, predictor="model")
        two = _decode(lossy), _decode(bounded)
        torch.set_num_threads(1)
        one = _decode(lossy), _decode(bounded)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one[0], two[0])
    assert np.array_equal(one[1], two[1])
    assert np.abs(one[1] - images).max() <= np.float32(0.01)


def test_wrong_model_is_an_error(setup, capsys):
    root, src, _, model, other = setup
    out = root / "w.e2ez"
    api.pack(src, out, model=model, latent=True, quality=2)
    with pytest.raises(InputError, match="was packed with model"):
        _decode(out, model=other)
    assert main(["unpack", str(out), str(root / "w.parquet"), "--model", str(other)]) == 2
    err = capsys.readouterr().err
    assert "was packed with model" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (root / "w.parquet").exists()


def test_embedded_model_decodes_without_the_checkpoint(setup, tmp_path):
    _, src, _, model, _ = setup
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    out = tmp_path / "e.e2ez"
    api.pack(src, out, model=copy, latent=True, quality=2, embed_model=True)
    want = _decode(out)
    shutil.rmtree(copy)
    assert np.array_equal(_decode(out), want)
    with pytest.raises(InputError):  # the same file without the embedded copy needs the model
        plain = tmp_path / "p.e2ez"
        api.pack(src, plain, model=model, latent=True, quality=2)
        shutil.move(model, tmp_path / "moved")
        try:
            _decode(plain)
        finally:
            shutil.move(tmp_path / "moved", model)
