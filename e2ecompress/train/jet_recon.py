"""How well a `JetMAE` reconstructs jets, read as a physicist would, with the baselines beside it.

For each jet a fixed masking (seeded noise) keeps ~25 % of its occupied patches visible; the model
predicts every other patch ("the masked region"). Reported per channel:

- mse_occupied: squared error on the normalized scale over the masked *occupied* patches, of the
  model's mean prediction p * mu, beside zero prediction (`mse_zero`) and the mean occupied patch of the
  same evaluation set (`mse_mean_patch`, an oracle constant: it knows the set's average).
- occupancy precision / recall over the whole masked region: in each (patch, channel) the model marks
  its k most probable pixels, k = round(sum of the probabilities) (as many hits as it expects).
- energy response in the masked region: sum of predicted raw values / sum of true ones, over all jets
  (`response`), and the per-jet ratio's median and robust spread (`per_jet`), for the hard image (marked
  pixels at their expected value) and the soft one (probability x expected value).
- jet pT, mass, girth, track count from the reconstructed image (visible patches + prediction) against
  the original, and from the visible patches alone (the zero-prediction image): bias (median relative
  difference) and resolution (IQR / 1.349).
"""

from __future__ import annotations

import numpy as np
import torch

from e2ecompress import ops, physics
from e2ecompress.models import JetMAE, Normalizer
from e2ecompress.train.data import SparseJets, to_tensor


def _batches(n: int, batch_size: int):
    for s in range(0, n, batch_size):
        yield np.arange(s, min(s + batch_size, n))


def _channel_sums(v: torch.Tensor, C: int) -> np.ndarray:
    """[B, T, p*p*C] in patchify's (p, q, c) layout -> per-channel sums [C] (float64)."""
    return v.reshape(-1, C).sum(dim=0).double().cpu().numpy()


@torch.no_grad()
def val_loss(model: JetMAE, jets: SparseJets, batch_size: int, mask_ratio, seed: int, device) -> dict:
    """Mean pretext loss (and its parts) over normalized jets, with fixed masking noise; with the squared
    error of the mean prediction p * mu on masked occupied patches beside zero prediction's (channel
    means on the normalized scale), so every epoch's MSE has its baseline."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    C = model.in_chans
    tot = np.zeros(3)
    sq_model, sq_zero, n_pix = np.zeros(C), np.zeros(C), np.zeros(C)
    n = 0
    for idx in _batches(len(jets), batch_size):
        x = to_tensor(jets, idx, device)
        noise = torch.rand(len(idx), model.num_patches, generator=gen).to(device)
        patches = model.patchify(x)
        pred, n_occ = model.predict_patches(patches, noise, mask_ratio, "train")
        occ, val = model.losses(patches, pred, n_occ)
        tot += len(idx) * np.array([float(occ + val), float(occ), float(val)])
        n += len(idx)
        y = patches.gather(1, pred.ids[:, :, None].expand(-1, -1, patches.shape[2]))
        w = model.pixel_valid_pc[pred.ids] * pred.occupied[:, :, None].to(y.dtype)
        err = (torch.sigmoid(pred.logit) * pred.mu - y).square()
        sq_model += _channel_sums(err * w, C)
        sq_zero += _channel_sums(y.square() * w, C)
        n_pix += _channel_sums(w, C)
    loss, occ_, val_ = (tot / max(n, 1)).tolist()
    n_pix = np.maximum(n_pix, 1)
    return {
        "loss": loss,
        "loss_occupancy": occ_,
        "loss_value": val_,
        "mse_occupied": float((sq_model / n_pix).mean()),
        "mse_zero": float((sq_zero / n_pix).mean()),
    }


def robust(rel: np.ndarray) -> dict:
    """Median and IQR/1.349 of finite values (bias and resolution), with their count."""
    rel = rel[np.isfinite(rel)]
    if not len(rel):
        return {"bias": None, "resolution": None, "n": 0}
    q25, q50, q75 = np.percentile(rel, [25, 50, 75])
    return {"bias": float(q50), "resolution": float((q75 - q25) / 1.349), "n": len(rel)}


def _rel(rec: np.ndarray, true: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(true > 0, rec / true - 1.0, np.nan)


def hard_occupancy(prob: torch.Tensor, C: int) -> torch.Tensor:
    """prob [B, T, P] ((p, q, c) layout) -> bool: per (token, channel) the round(sum p) likeliest pixels."""
    B, T, P = prob.shape
    q = prob.reshape(B, T, P // C, C).transpose(2, 3)  # [B, T, C, pp]
    k = torch.round(q.sum(dim=3, keepdim=True))
    rank = torch.argsort(torch.argsort(q, dim=3, descending=True), dim=3)
    return (rank < k).transpose(2, 3).reshape(B, T, P)


class _Acc:
    def __init__(self, C: int, pp: int):
        self.C = C
        self.sq = {k: np.zeros(C) for k in ("model", "zero")}
        self.n_pix = np.zeros(C)
        self.sy = np.zeros((pp, C))
        self.syy = np.zeros((pp, C))
        self.n_tok = 0
        self.tp = np.zeros(C)
        self.fp = np.zeros(C)
        self.fn = np.zeros(C)
        self.e_true: list[np.ndarray] = []
        self.e_hard: list[np.ndarray] = []
        self.e_soft: list[np.ndarray] = []
        self.obs: dict[str, list[np.ndarray]] = {}

    def add_obs(self, name: str, value: np.ndarray) -> None:
        self.obs.setdefault(name, []).append(value)


@torch.no_grad()
def jet_reconstruction(
    model: JetMAE,
    raw: SparseJets,
    norm: SparseJets,
    normalizer: Normalizer,
    batch_size: int,
    mask_ratio: float | None,
    seed: int,
    device,
    keep_examples: int = 0,
) -> dict:
    """The metrics of the module docstring over all jets of `raw` (normalized copy `norm`)."""
    model.eval()
    C = model.in_chans
    p = model.patch_size
    size = model.patch_embed.img_size
    pp = p * p
    acc = _Acc(C, pp)
    gen = torch.Generator().manual_seed(seed)
    channels = list(raw.channels or [f"ch{i}" for i in range(C)])
    has_calo = any(c in physics.CALO_CHANNELS for c in channels)
    eta = raw.columns.get("eta")
    nonneg = set(normalizer.nonnegative_channels())
    examples: dict[str, np.ndarray] = {}
    for idx in _batches(len(raw), batch_size):
        x = to_tensor(norm, idx, device)
        noise = torch.rand(len(idx), model.num_patches, generator=gen).to(device)
        patches = model.patchify(x)
        pred, _ = model.predict_patches(patches, noise, mask_ratio, "all")
        B, T = pred.ids.shape
        valid_pix = model.pixel_valid_pc[pred.ids] * pred.valid[:, :, None]  # [B, T, P]
        y = patches.gather(1, pred.ids[:, :, None].expand(-1, -1, patches.shape[2]))
        prob = torch.sigmoid(pred.logit) * valid_pix
        var = torch.exp(pred.logvar)
        # raw-scale expected value where occupied: reshape tokens as images of one patch each
        mu_img = pred.mu.reshape(B * T, p, p, C).permute(0, 3, 1, 2)
        var_img = var.reshape(B * T, p, p, C).permute(0, 3, 1, 2)
        ex = normalizer.expected_value(mu_img, var_img).permute(0, 2, 3, 1).reshape(B, T, -1)
        for c in nonneg:
            ex.view(B, T, pp, C)[..., c].clamp_(min=0.0)
        hard = hard_occupancy(prob, C) & (valid_pix > 0)
        raw_patches = model.patchify(torch.from_numpy(raw.dense(idx)).to(device))
        y_raw = raw_patches.gather(1, pred.ids[:, :, None].expand(-1, -1, raw_patches.shape[2]))
        # normalized-scale MSE over masked occupied patches
        occ_tok = pred.occupied[:, :, None].to(y.dtype) * valid_pix
        m_pred = prob * pred.mu

        def per_c(v, shape=(B, T, pp, C)):
            return v.reshape(shape).sum(dim=(0, 1, 2)).double().cpu().numpy()

        acc.sq["model"] += per_c((m_pred - y).square() * occ_tok)
        acc.sq["zero"] += per_c(y.square() * occ_tok)
        acc.n_pix += per_c(occ_tok)
        sel = pred.occupied.reshape(-1)
        yo = (y * valid_pix).reshape(B * T, pp, C)[sel].double().cpu().numpy()
        acc.sy += yo.sum(axis=0)
        acc.syy += (yo**2).sum(axis=0)
        acc.n_tok += int(sel.sum())
        truth = (y_raw != 0) & (valid_pix > 0)
        acc.tp += per_c((hard & truth).to(y.dtype))
        acc.fp += per_c((hard & ~truth).to(y.dtype))
        acc.fn += per_c((~hard & truth).to(y.dtype))
        rec_hard = hard.to(ex.dtype) * ex
        rec_soft = prob * ex

        def per_jet_c(v, shape=(B, T, pp, C)):
            return v.reshape(shape).sum(dim=(1, 2)).double().cpu().numpy()

        acc.e_true.append(per_jet_c(y_raw * valid_pix))
        acc.e_hard.append(per_jet_c(rec_hard))
        acc.e_soft.append(per_jet_c(rec_soft))
        # images: visible patches (true) + predicted ones
        full = torch.zeros_like(raw_patches)
        vis = pred.ids_visible
        vis_patches = raw_patches.gather(1, vis[:, :, None].expand(-1, -1, raw_patches.shape[2]))
        full.scatter_(1, vis[:, :, None].expand_as(vis_patches), vis_patches * pred.valid_visible[:, :, None])
        visible_only = full.clone()
        full.scatter_add_(1, pred.ids[:, :, None].expand_as(rec_hard), rec_hard * pred.valid[:, :, None])
        rec_img = ops.unpatchify(full.contiguous(), p, (size, size)).cpu().numpy()
        vis_img = ops.unpatchify(visible_only.contiguous(), p, (size, size)).cpu().numpy()
        true_img = raw.dense(idx)
        e = None if eta is None else eta[idx]
        if has_calo:
            for tag, img in (("true", true_img), ("rec", rec_img), ("visible", vis_img)):
                kin = physics.jet_kinematics(img, channels, e)
                sub = physics.substructure(img, channels, e)
                acc.add_obs(f"pt/{tag}", kin["pt"])
                acc.add_obs(f"mass/{tag}", kin["mass"])
                acc.add_obs(f"girth/{tag}", sub["girth"])
                if "n_tracks" in sub:
                    acc.add_obs(f"n_tracks/{tag}", sub["n_tracks"])
        if keep_examples and not examples:
            k = min(keep_examples, len(idx))
            examples = {"true": true_img[:k], "rec": rec_img[:k], "visible": vis_img[:k]}
            if "y" in raw.columns:
                examples["label"] = raw.columns["y"][idx[:k]]
    return _result(acc, channels, examples)


def _result(acc: _Acc, channels: list[str], examples: dict) -> dict:
    n = np.maximum(acc.n_pix, 1)
    mean_patch = (acc.syy - acc.sy**2 / max(acc.n_tok, 1)).sum(axis=0) / n
    out: dict = {"n_jets": int(sum(len(v) for v in acc.e_true)), "channels": channels}
    out["mse_occupied"] = {c: float(acc.sq["model"][i] / n[i]) for i, c in enumerate(channels)}
    out["mse_zero"] = {c: float(acc.sq["zero"][i] / n[i]) for i, c in enumerate(channels)}
    out["mse_mean_patch"] = {c: float(mean_patch[i]) for i, c in enumerate(channels)}
    out["mse_ratio_to_zero"] = {
        c: out["mse_occupied"][c] / out["mse_zero"][c] if out["mse_zero"][c] > 0 else None for c in channels
    }
    out["occupancy"] = {
        c: {
            "precision": float(acc.tp[i] / max(acc.tp[i] + acc.fp[i], 1)),
            "recall": float(acc.tp[i] / max(acc.tp[i] + acc.fn[i], 1)),
        }
        for i, c in enumerate(channels)
    }
    t, h, s = (np.concatenate(v) for v in (acc.e_true, acc.e_hard, acc.e_soft))
    energy = {}
    for i, c in enumerate(channels):
        tot = t[:, i].sum()
        energy[c] = {
            "response_hard": float(h[:, i].sum() / tot) if tot > 0 else None,
            "response_soft": float(s[:, i].sum() / tot) if tot > 0 else None,
            "per_jet_hard": robust(_rel(h[:, i], t[:, i])),
            "per_jet_soft": robust(_rel(s[:, i], t[:, i])),
        }
    out["masked_energy"] = energy
    obs = {k: np.concatenate(v) for k, v in acc.obs.items()}
    jet = {}
    for name in ("pt", "mass", "girth", "n_tracks"):
        if f"{name}/true" not in obs:
            continue
        true = obs[f"{name}/true"]
        jet[name] = {
            "reconstructed": robust(_rel(obs[f"{name}/rec"], true)),
            "visible_only": robust(_rel(obs[f"{name}/visible"], true)),
        }
    out["jet"] = jet
    if examples:
        out["_examples"] = examples
    return out
