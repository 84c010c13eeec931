"""Models: shapes, masking, sparse tokens, registry, normalizer, checkpoints (safetensors + JSON)."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
import torch

from e2ecompress import ops
from e2ecompress.errors import InputError
from e2ecompress.layouts import LAYOUTS, get_layout
from e2ecompress.models import (
    DEFAULT_CLASSIFIER,
    DEFAULT_MAE,
    MaskedAutoencoderViT,
    Normalizer,
    VisionTransformer,
    count_params,
    create_model,
    list_models,
    load_checkpoint,
    load_model,
    load_weights,
    register_model,
    save_checkpoint,
    sincos_pos_embed_2d,
)
from e2ecompress.models.mae import keep_ids, ratio_for_keep
from e2ecompress.models.registry import mae_vit_tiny_patch8

QG = get_layout("qg3").in_chans
SMALL = dict(embed_dim=32, depth=1, num_heads=2)
SMALL_DEC = dict(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_mae(in_chans: int = QG, patch: int = 8, **kw) -> MaskedAutoencoderViT:
    return create_model(f"mae_vit_tiny_patch{patch}", in_chans=in_chans, **{**SMALL, **SMALL_DEC, **kw})


def small_vit(in_chans: int = QG, patch: int = 8, **kw) -> VisionTransformer:
    return create_model(f"vit_tiny_patch{patch}", in_chans=in_chans, **{**SMALL, **kw})


def jets(make_images, n: int, channels: int = QG, occupancy: float = 0.02) -> torch.Tensor:
    return torch.from_numpy(make_images(n, channels, occupancy=occupancy))


# --- registry and size ----------------------------------------------------------------------------------


def test_registry_names_and_factories():
    names = list_models()
    for p in (5, 8, 16):
        assert f"mae_vit_tiny_patch{p}" in names and f"vit_tiny_patch{p}" in names
    assert list_models("mae_*") == [n for n in names if n.startswith("mae_")]
    assert DEFAULT_MAE in names and DEFAULT_CLASSIFIER in names
    m = create_model(DEFAULT_MAE, in_chans=QG, depth=2)
    assert m.arch == DEFAULT_MAE and m.init_kwargs["depth"] == 2 and m.in_chans == QG
    rebuilt = create_model(m.arch, **m.init_kwargs)
    assert rebuilt.init_kwargs == m.init_kwargs


def test_registry_errors():
    with pytest.raises(InputError, match="unknown model"):
        create_model("vit_huge_patch14", in_chans=QG)
    with pytest.raises(InputError, match="in_chans"):
        create_model(DEFAULT_MAE)
    with pytest.raises(InputError, match="unexpected keyword"):
        create_model(DEFAULT_MAE, in_chans=QG, not_an_arg=1)
    with pytest.raises(ValueError, match="already registered"):
        register_model(mae_vit_tiny_patch8)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_default_models_are_small(layout):
    """The default MAE (encoder + decoder) and every registered variant stay <= 5M parameters."""
    in_chans = get_layout(layout).in_chans
    assert count_params(create_model(DEFAULT_MAE, in_chans=in_chans)) <= 5_000_000
    for name in list_models():
        assert count_params(create_model(name, in_chans=in_chans)) <= 5_000_000, name


def test_pos_embed_fixed_sincos():
    pe = sincos_pos_embed_2d(32, 4)
    assert pe.shape == (1, 17, 32)
    assert torch.all(pe[0, 0] == 0)
    assert torch.allclose(pe[0, 1:].norm(dim=1), torch.full((16,), 4.0), atol=1e-5)  # D/2 sin^2 + cos^2 pairs
    assert len(torch.unique(pe[0, 1:], dim=0)) == 16
    m = small_mae()
    assert "pos_embed" not in dict(m.named_parameters()) and "pos_embed" not in m.state_dict()
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_pos_embed_2d(30, 4)


# --- MAE -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("patch", "grid"), [(5, 25), (8, 16), (16, 8)])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_mae_shapes(make_images, patch, grid, layout):
    C = get_layout(layout).in_chans
    m = small_mae(C, patch)
    x = jets(make_images, 2, C)
    L = grid * grid
    keep = int(L * (1 - 0.75))
    latent, mask, ids_restore = m.forward_encoder(x, 0.75)
    assert latent.shape == (2, 1 + keep, 32)
    assert mask.shape == (2, L) and torch.all(mask.sum(1) == L - keep)
    assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(L).expand(2, L))
    pred = m.forward_decoder(latent, ids_restore)
    assert pred.shape == (2, L, patch * patch * C)
    out = m(x)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.mse_masked.shape == (C,) and out.mse_visible.shape == (C,)
    assert torch.isclose(out.loss, out.mse_masked.mean())
    assert m.unpatchify(out.pred).shape == x.shape
    assert m.reconstruct(x, out.pred, out.mask).shape == x.shape


def test_mae_rejects_wrong_images(make_images):
    m = small_mae()
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 125, 125\]"):
        m(jets(make_images, 1, 8))


def test_mae_keeps_lowest_noise_patches(make_images):
    m = small_mae()
    x = jets(make_images, 2)
    noise = torch.rand(2, m.num_patches)
    _, mask, ids_restore = m.forward_encoder(x, 0.75, noise)
    keep = keep_ids(ids_restore, int(m.num_patches * 0.25))
    expected = torch.argsort(noise, dim=1, stable=True)[:, : keep.shape[1]]
    assert torch.equal(keep, expected)
    assert torch.all(mask.gather(1, keep) == 0)
    assert all(int(256 * (1 - ratio_for_keep(256, k))) == k for k in range(257))


def test_forward_loss_per_channel_masked_visible_and_padding(make_images):
    m = small_mae(patch=8)  # 125 -> 128: the last row/column of patches holds padding pixels
    x = jets(make_images, 2)
    target = m.patchify(x)
    mask = (torch.rand(2, m.num_patches) < 0.5).float()
    B, L, _ = target.shape
    pred = target.clone().reshape(B, L, -1, QG)
    pred[:, :, :, 1] += mask[:, :, None] * 2.0  # channel 1 wrong by 2 on masked patches only
    pad = m.pixel_valid == 0
    assert pad.any()
    pred[:, pad] += 100.0  # padding pixels are never part of any mean
    loss, mse_masked, mse_visible = m.forward_loss(x, pred.reshape(B, L, -1), mask)
    assert torch.allclose(mse_masked, torch.tensor([0.0, 4.0, 0.0]))
    assert torch.allclose(mse_visible, torch.zeros(QG))
    assert torch.isclose(loss, torch.tensor(4.0 / 3))


def test_mae_deterministic_with_seed(make_images):
    x = jets(make_images, 2)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        m = small_mae(drop_path_rate=0.1)
        torch.manual_seed(8)
        outs.append(m(x).loss)
    assert torch.equal(outs[0], outs[1])


def test_mae_gradients_reach_every_parameter(make_images):
    m = small_mae()
    m(jets(make_images, 2)).loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def _blob_images(n: int, C: int = QG) -> torch.Tensor:
    """Jets with energy in a few 8x8 patches only: jet b occupies patches (b + 1) * 3 along the diagonal."""
    x = torch.zeros(n, C, 125, 125)
    for b in range(n):
        for k in range((b + 1) * 3):
            x[b, :, 8 * k + 2, 8 * k + 3] = 1.0 + k
    return x


def test_sparse_mae_encodes_only_occupied_patches():
    m = small_mae(sparse=True)
    x = _blob_images(3)
    occ, counts = ops.patch_occupancy(x, 8)
    latent, _, ids_restore = m.forward_encoder(x, 0.5)
    K = latent.shape[1] - 1
    assert K == int(counts.max()) // 2  # int(max occupied * (1 - ratio))
    kept = keep_ids(ids_restore, K)
    assert torch.all(occ[2:].gather(1, kept[2:]))  # the fullest jet: every visible patch is occupied
    for b in range(3):  # every jet shows min(K, its occupied count) occupied patches
        assert int(occ[b].gather(0, kept[b]).sum()) == min(K, int(counts[b]))
    assert m(x, 0.5).pred.shape == (3, m.num_patches, 64 * QG)
    empty = torch.zeros(2, QG, 125, 125)
    assert m.forward_encoder(empty, 0.75)[0].shape[1] == 2  # at least one visible token


def test_sparse_mae_matches_dense_weights_interface():
    dense, sparse = small_mae(), small_mae(sparse=True)
    sparse.load_state_dict(dense.state_dict())  # one set of weights serves both modes


# --- classifier ----------------------------------------------------------------------------------------


def test_classifier_shapes_and_pooling(make_images):
    x = jets(make_images, 3)
    for pool in ("avg", "token"):
        v = small_vit(global_pool=pool, num_classes=2)
        feats = v.forward_features(x)
        assert feats.shape == (3, 1 + v.num_patches, 32)
        assert v.forward_head(feats, pre_logits=True).shape == (3, 32)
        assert v(x).shape == (3, 2)
    with pytest.raises(ValueError, match="global_pool"):
        small_vit(global_pool="max")
    probe = small_vit(probe=True)
    assert isinstance(probe.head[0], torch.nn.BatchNorm1d) and not probe.head[0].affine


def test_sparse_classifier_ignores_padding():
    """A jet's logits do not depend on the other jets in its batch (padding tokens are masked out)."""
    v = small_vit(sparse=True).eval()
    x = _blob_images(3)
    with torch.no_grad():
        together = v(x)
        alone = torch.cat([v(x[b : b + 1]) for b in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_sparse_classifier_equals_dense_when_every_patch_is_occupied():
    dense = small_vit().eval()
    sparse = small_vit(sparse=True).eval()
    sparse.load_state_dict(dense.state_dict())
    x = torch.rand(2, QG, 125, 125) + 0.1
    with torch.no_grad():
        assert torch.allclose(dense(x), sparse(x), atol=1e-5)


def test_classifier_loads_mae_encoder(make_images):
    mae = small_mae().eval()
    vit = create_model(DEFAULT_CLASSIFIER, **mae.encoder_kwargs()).eval()
    vit.load_encoder_state(mae.state_dict())
    x = jets(make_images, 2)
    identity = torch.arange(mae.num_patches, dtype=torch.float32).expand(2, -1).contiguous()
    with torch.no_grad():
        latent, _, _ = mae.forward_encoder(x, 0.0, identity)  # nothing masked, patches in order
        assert torch.allclose(latent, vit.forward_features(x), atol=1e-6)
    other = small_vit(embed_dim=64)
    with pytest.raises(InputError, match="shape"):
        other.load_encoder_state(mae.state_dict())
    with pytest.raises(InputError, match="no encoder weights"):
        vit.load_encoder_state({})


def test_layer_ids_for_decay():
    v = small_vit(depth=3)
    assert v.layer_id("cls_token") == 0 and v.layer_id("patch_embed.proj.weight") == 0
    assert v.layer_id("blocks.2.mlp.fc1.weight") == 3
    assert v.layer_id("head.weight") == 4 and v.layer_id("norm.bias") == 4


# --- normalizer ----------------------------------------------------------------------------------------


def test_normalizer_round_trip_and_zeros(make_images):
    x = make_images(4, QG, occupancy=0.05)
    x[:, 2] *= -1  # a signed channel
    norm = Normalizer.fit([x[:2], x[2:]], channels=("a", "b", "c"))
    y = norm.normalize(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.array_equal(y == 0, x == 0)  # zeros stay exactly zero, nothing else becomes zero
    assert np.array_equal(np.sign(y), np.sign(x))
    assert np.allclose(norm.denormalize(y), x, rtol=1e-5, atol=0)
    nz = y[x != 0]
    assert 0.1 < np.sqrt(np.mean(nz**2)) < 10  # O(1) after normalization
    t = torch.from_numpy(x)
    yt = norm.normalize(t)
    assert isinstance(yt, torch.Tensor) and torch.equal(yt == 0, t == 0)
    assert torch.allclose(norm.denormalize(yt), t, rtol=1e-5, atol=0)
    assert np.allclose(yt.numpy(), y, rtol=1e-6, atol=1e-7)
    assert norm.nonnegative_channels() == [0, 1]


def test_normalizer_statistics_and_json():
    rng = np.random.default_rng(0)
    x = np.zeros((200, 2, 10, 10), np.float32)
    x[:, 0, :5] = rng.exponential(3.0, (200, 5, 10))
    norm = Normalizer.fit([x])
    assert np.isclose(norm.scale[0], 3.0 * np.log(2), rtol=0.05)  # median of an exponential
    assert norm.scale[1] == 1.0 and norm.tau[1] == 1.0  # an empty channel
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back == norm and back.stats == norm.stats
    values = x[x != 0]
    channel = np.zeros(values.shape, np.int64)
    assert np.allclose(norm.normalize_values(values, channel), norm.normalize(x)[x != 0])


def test_normalizer_errors():
    norm = Normalizer([1.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[..., 2, H, W\]"):
        norm.normalize(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="scale"):
        Normalizer([0.0], [1.0])
    with pytest.raises(InputError, match="no images"):
        Normalizer.fit([])
    with pytest.raises(InputError, match="normalizer"):
        Normalizer.from_dict({"kind": "zscore"})


# --- checkpoints ---------------------------------------------------------------------------------------


def _is_safetensors(path) -> bool:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    json.loads(raw[8 : 8 + n])
    return True


def _trained(make_images):
    torch.manual_seed(0)
    m = small_mae()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(jets(make_images, 2)).loss.backward()
    opt.step()
    norm = Normalizer([1.0, 2.0, 3.0], [1.0, 1.5, 2.0], ("ECAL", "HCAL", "Tracks"))
    return m, opt, norm


def test_checkpoint_round_trip_bitwise_no_pickle(tmp_path, make_images):
    m, opt, norm = _trained(make_images)
    model_id = save_checkpoint(tmp_path / "ck", m, normalizer=norm, channels=norm.channels, optimizer=opt,
                               state={"epoch": 3, "step": 30, "best": 0.5}, extra={"note": "x"})  # fmt: skip
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["checkpoint.json", "model.safetensors", "optimizer.safetensors"]
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert _is_safetensors(tmp_path / "ck" / name)
    record = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    for p in (tmp_path / "ck").iterdir():
        assert not p.read_bytes().startswith(b"\x80")  # no pickle protocol header anywhere
    assert model_id == hashlib.sha256((tmp_path / "ck" / "model.safetensors").read_bytes()).hexdigest()
    assert record["model_id"] == model_id and record["arch"] == m.arch

    ck = load_checkpoint(tmp_path / "ck", with_optimizer=True)
    assert ck.model_id == model_id and ck.state == {"epoch": 3, "step": 30, "best": 0.5}
    assert ck.normalizer == norm and ck.channels == list(norm.channels) and ck.extra == {"note": "x"}
    for k, v in m.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k]), k
    opt2 = torch.optim.AdamW(ck.model.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer_state)
    before, after = opt.state_dict(), opt2.state_dict()
    assert before["state"].keys() == after["state"].keys()
    for pid, st in before["state"].items():
        assert all(torch.equal(v, after["state"][pid][k]) for k, v in st.items())
    assert before["param_groups"] == after["param_groups"]
    # the same weights give the same id (the weights file is byte-for-byte deterministic)
    assert save_checkpoint(tmp_path / "again", ck.model, normalizer=norm, channels=norm.channels) == model_id
    loaded = load_model(tmp_path / "ck" / "model.safetensors")
    assert loaded.model_id == model_id and loaded.normalizer == norm and not loaded.training


def test_checkpoint_overwrite_keeps_one_copy(tmp_path, make_images):
    m, _, _ = _trained(make_images)
    first = save_checkpoint(tmp_path / "ck", m)
    with torch.no_grad():
        m.cls_token.add_(1.0)
    second = save_checkpoint(tmp_path / "ck", m)
    assert first != second and load_checkpoint(tmp_path / "ck").model_id == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    (tmp_path / "ck").rename(tmp_path / "ck.old")  # as if killed between save_checkpoint's two renames
    assert load_checkpoint(tmp_path / "ck").model_id == second


def test_checkpoint_wrong_model_is_an_error(tmp_path, make_images):
    m, _, norm = _trained(make_images)
    save_checkpoint(tmp_path / "ck", m, normalizer=norm, channels=norm.channels)
    with pytest.raises(InputError, match=r"holds a mae_vit_tiny_patch8 .*not a vit_tiny_patch8"):
        load_weights(small_vit(), tmp_path / "ck")
    with pytest.raises(InputError, match=r"in_chans=3 \(ECAL, HCAL, Tracks\).*8 channels"):
        load_weights(small_mae(in_chans=8), tmp_path / "ck")
    with pytest.raises(InputError, match="8 channels"):
        load_checkpoint(tmp_path / "ck", in_chans=8)
    with pytest.raises(InputError, match="not a mae_vit_tiny_patch16"):
        load_checkpoint(tmp_path / "ck", arch="mae_vit_tiny_patch16")
    with pytest.raises(InputError, match="weights do not fit"):
        load_weights(small_mae(depth=2), tmp_path / "ck")
    with pytest.raises(InputError, match="no such checkpoint"):
        load_model("no_such_model_name")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(InputError, match="not a safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")
