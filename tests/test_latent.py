"""Latent codec: shapes, per-jet determinism, entropy round trips, corruption, keep masks, checkpoints."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import sparse_images

from e2ecompress import ops
from e2ecompress.codec.latent import (
    DEFAULT_LEVELS,
    LatentAutoencoder,
    LatentCodec,
    LatentSymbols,
    logistic_bits,
    patch_priority,
)
from e2ecompress.errors import DecodeError, InputError
from e2ecompress.models.checkpoint import PRETRAINED_DIR
from e2ecompress.models.normalizer import Normalizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(
    embed_dim=32,
    depth=1,
    num_heads=2,
    decoder_embed_dim=32,
    decoder_depth=1,
    decoder_num_heads=2,
    latent_dim=4,
)
CHANNELS = ("ECAL", "HCAL", "Tracks")
SHIPPED = "latent_qg3_default"


def tiny_codec(fit_images: np.ndarray | None = None) -> LatentCodec:
    torch.manual_seed(0)
    model = LatentAutoencoder(in_chans=3, **TINY)
    with torch.no_grad():  # spread the latents over a few symbols, as a trained model's
        model.token_proj.weight.mul_(8.0)
        model.cls_proj.weight.mul_(8.0)
    norm = Normalizer([0.2, 0.13, 1.7], [1.3, 1.1, 1.1], CHANNELS, stats={"negative": [0, 0, 0]})
    codec = LatentCodec(model, norm, DEFAULT_LEVELS, channels=CHANNELS)
    if fit_images is not None:
        z_cls, z_tokens, _ = codec.latents(fit_images)
        codec.fit_tables(z_cls, z_tokens)
    return codec


@pytest.fixture(scope="module")
def images():
    imgs = sparse_images(np.random.default_rng(7), 24, occupancy=0.004)
    imgs[3] = 0.0  # a jet without any deposit: no tokens, cls only
    imgs[5, :, 40:60, 40:60] = 0.0
    return imgs


@pytest.fixture(scope="module")
def codec(images):
    return tiny_codec(images)


def test_shapes_and_occupancy(codec, images):
    sym = codec.encode(images, 2)
    occ, counts = ops.patch_occupancy(torch.from_numpy(images), codec.patch_size)
    L, d = codec.num_patches, codec.latent_dim
    assert sym.cls.shape == (len(images), d) and sym.cls.dtype == np.int32
    assert sym.tokens.shape == (int(counts.sum()), d) and sym.tokens.dtype == np.int32
    assert np.array_equal(sym.occ, occ.numpy()) and np.array_equal(sym.keep, sym.occ)
    assert sym.occ.shape == (len(images), L) and not sym.occ[3].any()
    out = codec.decode(sym.cls, sym.tokens, sym.occ, sym.keep, 2)
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0  # non-negative channels are clamped
    with pytest.raises(ValueError, match="images"):
        codec.encode(images[:, :2], 2)
    with pytest.raises(ValueError, match="symbols"):
        codec.decode(sym.cls[:, :2], sym.tokens, sym.occ, sym.keep, 2)


def test_training_encoder_matches_inference(codec, images):
    x = codec.normalizer.normalize(torch.from_numpy(images))
    with torch.inference_mode():
        a = codec.model.forward_encoder(x)
        b = codec.model.encode_latents(x)
    for u, v in zip(a, b, strict=True):
        assert u.shape == v.shape
        torch.testing.assert_close(u.float(), v.float(), rtol=1e-4, atol=1e-5)


def test_jet_independent_of_batch(codec, images):
    both = codec.encode(images[:16], 3)
    decoded = codec.decode(both.cls, both.tokens, both.occ, both.keep, 3)
    starts = np.concatenate([[0], np.cumsum(both.keep.sum(1))])
    for i in range(8):
        one = codec.encode(images[i : i + 1], 3)
        assert np.array_equal(one.cls[0], both.cls[i])
        assert np.array_equal(one.tokens, both.tokens[starts[i] : starts[i + 1]])
        alone = codec.decode(one.cls, one.tokens, one.occ, one.keep, 3)
        assert np.array_equal(alone[0], decoded[i])
    reordered = codec.encode(images[7::-1], 3)
    assert np.array_equal(reordered.cls, both.cls[7::-1])


def test_entropy_round_trip(codec, images):
    for level in codec.levels:
        for keep in (None, codec.default_keep(codec.encode(images, level).occ, 0.3)):
            sym = codec.encode(images, level, keep)
            data = codec.compress(sym, level)
            back = codec.decompress(data, sym.occ, sym.keep, len(images), level)
            assert np.array_equal(back.cls, sym.cls) and np.array_equal(back.tokens, sym.tokens)
            assert back.cls.dtype == np.int32 and back.tokens.dtype == np.int32
    empty = LatentSymbols(sym.cls, sym.tokens[:0], sym.occ, np.zeros_like(sym.occ))
    data = codec.compress(empty, 1)
    back = codec.decompress(bytearray(data), empty.occ, empty.keep, len(images), 1)
    assert back.tokens.shape == (0, codec.latent_dim) and np.array_equal(back.cls, sym.cls)


def test_escapes_round_trip(codec, images):
    sym = codec.encode(images, 3)
    wild = LatentSymbols(sym.cls * 1000 + 77, sym.tokens - 500, sym.occ, sym.keep)
    back = codec.decompress(codec.compress(wild, 3), sym.occ, sym.keep, len(images), 3)
    assert np.array_equal(back.cls, wild.cls) and np.array_equal(back.tokens, wild.tokens)


def test_corrupt_stream_raises(codec, images):
    sym = codec.encode(images, 2)
    data = codec.compress(sym, 2)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decompress(data[:cut], sym.occ, sym.keep, len(images), 2)
    for bad in (data + b"\x00", b"\xff" + data[1:], b"\x80\x80\x80\x80\x80\x01"):
        with pytest.raises(DecodeError):
            codec.decompress(bad, sym.occ, sym.keep, len(images), 2)
    fewer = sym.keep.copy()
    fewer[np.argwhere(fewer)[0][0], np.argwhere(fewer)[0][1]] = False
    with pytest.raises(DecodeError):  # the stream does not match the keep mask
        codec.decompress(data, sym.occ, fewer, len(images), 2)


def test_keep_masks(codec, images):
    occ = codec.encode(images, 2).occ
    for fraction in (0.0, 0.25, 0.5, 1.0):
        keep = codec.default_keep(occ, fraction)
        assert keep.dtype == np.bool_ and not np.any(keep & ~occ)
        assert np.array_equal(keep.sum(1), np.ceil(occ.sum(1) * fraction).astype(int))
        assert np.array_equal(keep, codec.default_keep(occ.copy(), fraction))
    assert np.array_equal(codec.default_keep(occ, 1.0), occ)
    # a jet's choice depends on its own occupancy only, and smaller fractions choose subsets
    k25, k50 = codec.default_keep(occ, 0.25), codec.default_keep(occ, 0.5)
    assert np.array_equal(codec.default_keep(occ[5:6], 0.25)[0], k25[5]) and not np.any(k25 & ~k50)
    assert sorted(patch_priority(256).tolist()) == sorted(set(patch_priority(256).tolist()))

    full = codec.encode(images, 2)
    part = codec.encode(images, 2, k25)
    assert np.array_equal(part.cls, full.cls)
    assert np.array_equal(part.tokens, full.tokens[k25[full.occ]])
    decoded = codec.decode(part.cls, part.tokens, part.occ, part.keep, 2)
    assert decoded.shape == images.shape and np.isfinite(decoded).all()
    with pytest.raises(ValueError, match="not occupied"):
        codec.encode(images, 2, ~occ)
    with pytest.raises(ValueError, match="fraction"):
        codec.default_keep(occ, 1.5)


def test_level_steps(codec, images):
    assert len(codec.levels) >= 3 and codec.levels[3] < codec.levels[2] < codec.levels[1]
    z_cls, z_tokens, _ = codec.latents(images)
    for level, step in codec.levels.items():
        sym = codec.encode(images, level)
        assert np.array_equal(sym.cls, np.round(z_cls / step).astype(np.int32))
        assert np.array_equal(sym.tokens, np.round(z_tokens / step).astype(np.int32))
    coarse, fine = codec.encode(images, 1).tokens, codec.encode(images, 3).tokens
    assert np.abs(fine - 4 * coarse).max() <= 2
    with pytest.raises(InputError, match="level"):
        codec.encode(images, 9)


def test_checkpoint_round_trip(codec, images, tmp_path):
    model_id = codec.save(tmp_path / "ckpt", extra={"note": "test"})
    weights = tmp_path / "ckpt" / "model.safetensors"
    assert model_id == hashlib.sha256(weights.read_bytes()).hexdigest()
    record = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert record["model_id"] == model_id and record["latent_dim"] == codec.latent_dim
    assert record["table_sha256"]["2"]["tokens"] == codec.tables[2]["tokens"].sha256()
    assert record["extra"] == {"note": "test"}
    back = LatentCodec.load(tmp_path / "ckpt")
    assert back.model_id == model_id and back.path == tmp_path / "ckpt"
    assert back.channels == CHANNELS and back.levels == codec.levels and back.normalizer == codec.normalizer
    assert back.table_hashes == codec.table_hashes
    a, b = codec.encode(images, 2), back.encode(images, 2)
    assert np.array_equal(a.cls, b.cls) and np.array_equal(a.tokens, b.tokens)
    assert codec.compress(a, 2) == back.compress(b, 2)
    half_id = codec.save(tmp_path / "half", torch.float16)
    assert half_id != model_id and LatentCodec.load(tmp_path / "half").model_id == half_id
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < weights.stat().st_size
    with pytest.raises(InputError):
        LatentCodec.load(tmp_path / "missing")


def test_training_forward_and_rate():
    torch.manual_seed(1)
    model = LatentAutoencoder(in_chans=3, **TINY).train()
    x = torch.from_numpy(np.random.default_rng(2).exponential(size=(4, 3, 125, 125)).astype(np.float32))
    x = x * (torch.rand_like(x) < 0.01)
    out = model(x, 1.0, torch.tensor([0.25, 1.0, 0.5, 0.7]))
    assert out.pred.shape == (4, model.num_patches, 8 * 8 * 3) and out.mse.shape == (3,)
    assert out.bits.shape == (4,) and (out.bits > 0).all()
    (out.mse.mean() + 1e-3 * out.bits.mean()).backward()
    assert model.token_proj.weight.grad is not None and model.token_log_scale.grad is not None
    # the bins of the rate model hold all the probability
    grid = torch.arange(-60, 61, dtype=torch.float64) * 0.5
    mass = (2.0 ** -logistic_bits(grid, torch.tensor(0.3), torch.tensor(0.5), 0.5)).sum()
    assert abs(float(mass) - 1.0) < 1e-6


def test_shipped_codec_by_name(images):
    if not (PRETRAINED_DIR / SHIPPED).is_dir():
        pytest.skip(f"{SHIPPED} is not shipped in this tree")
    codec = LatentCodec.load(SHIPPED)
    weights = PRETRAINED_DIR / SHIPPED / "model.safetensors"
    assert codec.model_id == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert codec.channels == CHANNELS and codec.patch_size == 8 and len(codec.levels) >= 3
    assert sum(p.stat().st_size for p in (PRETRAINED_DIR / SHIPPED).iterdir()) <= 3_500_000
    record = json.loads((PRETRAINED_DIR / SHIPPED / "checkpoint.json").read_text())
    assert record["table_sha256"] == {str(k): v for k, v in codec.table_hashes.items()}
    sym = codec.encode(images[:4], 2)
    back = codec.decompress(codec.compress(sym, 2), sym.occ, sym.keep, 4, 2)
    assert np.array_equal(back.tokens, sym.tokens)
    out = codec.decode(back.cls, back.tokens, back.occ, back.keep, 2)
    assert out.shape == (4, 3, 125, 125) and np.isfinite(out).all()
