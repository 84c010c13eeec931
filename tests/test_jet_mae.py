"""The jet MAE's pretext task: per-jet masking of occupied patches, a decoder whose targets see only the
context, the occupancy + Gaussian losses; the classifier pooling that keeps multiplicity; the step budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2ecompress.models import JetMAE, Normalizer, create_model
from e2ecompress.train.data import step_batches

KW = dict(in_chans=3, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
          decoder_num_heads=2, token_threshold=0.0)  # fmt: skip


def _jets(rng, n_hits: list[int]) -> torch.Tensor:
    """Normalized-looking jets: n hits each, positive values, at random pixels of random channels."""
    x = np.zeros((len(n_hits), 3, 125, 125), np.float32)
    for j, n in enumerate(n_hits):
        x[j, rng.integers(0, 3, n), rng.integers(0, 125, n), rng.integers(0, 125, n)] = rng.uniform(0.5, 2, n)
    return torch.from_numpy(x)


@pytest.fixture(scope="module")
def mae() -> JetMAE:
    torch.manual_seed(0)
    return create_model("mae_vit_jet_patch8", **KW).eval()


def test_masking_is_per_jet_and_independent_of_batch_mates(mae, rng):
    x = _jets(rng, [12, 200])  # a sparse jet beside a busy one
    noise = torch.rand(2, mae.num_patches, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        both = mae.predict(x, noise, None, "all")
        alone = mae.predict(x[:1], noise[:1], None, "all")
    occ = mae.occupancy(mae.patchify(x))
    n_vis = both.valid_visible.sum(dim=1)
    expected = torch.clamp(torch.round(0.25 * occ.sum(dim=1)), min=1)
    assert torch.equal(n_vis, expected.to(n_vis.dtype))  # 25 % of *each* jet's occupied patches
    k = int(n_vis[0])
    assert torch.equal(both.ids_visible[0, :k], alone.ids_visible[0, :k])
    assert bool(occ[0].gather(0, both.ids_visible[0, :k]).all())  # only occupied patches are visible
    # the sparse jet's predictions do not change when a busier jet shares its batch
    t = int(alone.valid[0].sum())
    assert torch.equal(both.ids[0, :t], alone.ids[0, :t])
    torch.testing.assert_close(both.mu[0, :t], alone.mu[0, :t], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both.logit[0, :t], alone.logit[0, :t], atol=1e-5, rtol=1e-4)


def test_targets_attend_only_to_the_context(mae, rng):
    """A target's prediction is the same whichever other targets are decoded with it."""
    x = _jets(rng, [80])
    noise = torch.rand(1, mae.num_patches, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        train = mae.predict(x, noise, None, "train")  # masked occupied + a sample of empty patches
        full = mae.predict(x, noise, None, "all")  # every masked patch
    n_masked = int(train.occupied[0].sum())
    assert n_masked > 0 and torch.equal(train.ids[0, :n_masked], full.ids[0, :n_masked])
    torch.testing.assert_close(train.mu[0, :n_masked], full.mu[0, :n_masked], atol=1e-5, rtol=1e-4)
    n_train, n_all = int(train.valid.sum()), int(full.valid.sum())
    assert n_train - n_masked == min(
        mae.empty_samples, mae.num_patches - int(mae.occupancy(mae.patchify(x)).sum())
    )
    assert n_all > n_train


def test_loss_parts_finite_and_training_lowers_them(rng):
    torch.manual_seed(0)
    model = create_model("mae_vit_jet_patch8", **KW)
    x = _jets(rng, [40, 60, 90, 30])
    noise = torch.rand(4, model.num_patches, generator=torch.Generator().manual_seed(3))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = model(x, None, noise)
    assert torch.isfinite(first.loss) and first.loss.item() == pytest.approx(
        float(first.loss_occupancy + first.loss_value)
    )
    for _ in range(30):
        opt.zero_grad()
        out = model(x, None, noise)
        out.loss.backward()
        opt.step()
    last = model(x, None, noise)
    assert last.loss.item() < first.loss.item() - 0.5


def test_token_threshold_drops_faint_patches():
    model = create_model("mae_vit_jet_patch8", **{**KW, "token_threshold": 0.5})
    x = torch.zeros(1, 3, 125, 125)
    x[0, 0, 0, 0] = 0.3  # one faint pixel: not a token
    x[0, 1, 40, 40] = 0.8  # a brighter one: a token
    assert int(model.occupancy(model.patchify(x)).sum()) == 1
    assert model.encoder_kwargs()["token_threshold"] == 0.5  # the classifier inherits the rule


def test_expected_value_is_the_log_normal_mean(rng):
    images = rng.lognormal(0.0, 1.0, (50, 2, 8, 8)).astype(np.float32) * (rng.random((50, 2, 8, 8)) < 0.3)
    norm = Normalizer.fit([images])
    mu = torch.full((1, 2, 1, 1), 0.7)
    var = torch.full((1, 2, 1, 1), 0.09)
    ex = norm.expected_value(mu, var)
    draws = torch.randn(200_000, 2, 1, 1, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.7
    mc = torch.from_numpy(norm.denormalize(draws.numpy())).mean(dim=0, keepdim=True)
    torch.testing.assert_close(ex, mc, rtol=5e-3, atol=0)
    median = torch.from_numpy(norm.denormalize(mu.numpy()))
    assert bool((ex > median).all())  # the mean of a log-normal exceeds its median


def test_avg_count_pooling_keeps_multiplicity(rng):
    torch.manual_seed(0)
    clf = create_model("vit_jet_patch8", in_chans=3, embed_dim=32, depth=1, num_heads=2).eval()
    x = _jets(rng, [5, 120])
    with torch.no_grad():
        pooled = clf.forward_head(clf.forward_features(x), pre_logits=True)
    occ = clf.patch_embed.patchify(x).abs().sum(dim=2) > clf.token_threshold
    assert pooled.shape == (2, 33)
    torch.testing.assert_close(pooled[:, -1], torch.log1p(occ.sum(dim=1).float()))
    with pytest.raises(ValueError, match="needs sparse=True"):
        create_model("vit_jet_patch8", in_chans=3, sparse=False)


def test_step_batches_give_the_same_budget_for_any_subset_size():
    for n in (3, 40, 1000):
        batches = step_batches(n, 16, steps=7, seed=5, epoch=2)
        assert len(batches) == 7 and all(len(b) == min(16, n) for b in batches)
        flat = np.concatenate(batches)
        assert flat.min() >= 0 and flat.max() < n
        assert [b.tolist() for b in step_batches(n, 16, 7, 5, 2)] == [b.tolist() for b in batches]
    small = np.concatenate(step_batches(3, 16, steps=4, seed=0, epoch=0))
    assert np.bincount(small, minlength=3).min() >= 3  # every jet of a small subset is used repeatedly
