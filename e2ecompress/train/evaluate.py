"""Evaluation over whole splits: classifier probabilities and MAE reconstruction, and `evaluate` itself.

Used for the per-epoch validation during training (validation split only) and by the `evaluate`
subcommand, the only place that reads a test split.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch import nn

from e2ecompress.errors import InputError
from e2ecompress.models import JetMAE, MaskedAutoencoderViT, Normalizer, VisionTransformer, load_checkpoint
from e2ecompress.train.config import EvalConfig, to_dict
from e2ecompress.train.data import SparseJets, load_split, to_tensor
from e2ecompress.train.dist import pick_device
from e2ecompress.train.metrics import ReconstructionMeter, classification_metrics
from e2ecompress.train.rundir import write_json


def check_channels(jets: SparseJets, in_chans: int, channels, checkpoint: str) -> None:
    """InputError when the data's channels are not the ones the model was trained on."""
    if jets.in_chans != in_chans:
        raise InputError(
            checkpoint,
            f"the model takes {in_chans} channels ({', '.join(channels or [])}), "
            f"the data {jets.source} has {jets.in_chans}",
        )
    if channels and jets.channels and tuple(channels) != tuple(jets.channels):
        raise InputError(
            checkpoint,
            f"the model was trained on channels {', '.join(channels)}, "
            f"the data {jets.source} has {', '.join(jets.channels)}",
        )


def _batches(n: int, batch_size: int):
    for s in range(0, n, batch_size):
        yield np.arange(s, min(s + batch_size, n))


@torch.no_grad()
def predict_proba(
    model: nn.Module, jets: SparseJets, batch_size: int, device: torch.device, bar=None
) -> np.ndarray:
    """P(quark) [N] for normalized jets, in order."""
    model.eval()
    out = []
    for idx in _batches(len(jets), batch_size):
        logits = model(to_tensor(jets, idx, device))
        out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
        if bar is not None:
            bar.update(1)
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def head_proba(head: nn.Module, feats: torch.Tensor, batch_size: int) -> np.ndarray:
    head.eval()
    out = [
        torch.softmax(head(feats[s : s + batch_size]).float(), dim=1)[:, 1]
        for s in range(0, len(feats), batch_size)
    ]
    return torch.cat(out).cpu().numpy() if out else np.zeros(0)


@torch.no_grad()
def features(model: VisionTransformer, jets: SparseJets, batch_size: int, device: torch.device, bar=None):
    """Pooled encoder features [N, D] (pre-logits) of normalized jets, the encoder in eval mode."""
    model.eval()
    out = []
    for idx in _batches(len(jets), batch_size):
        out.append(model.forward_head(model.forward_features(to_tensor(jets, idx, device)), pre_logits=True))
        if bar is not None:
            bar.update(1)
    return torch.cat(out)


@torch.no_grad()
def reconstruction(
    model: MaskedAutoencoderViT,
    raw: SparseJets,
    norm: SparseJets,
    normalizer: Normalizer,
    batch_size: int,
    mask_ratio: float | None,
    seed: int,
    device: torch.device,
    physics: bool = True,
    bar=None,
) -> dict:
    """Reconstruction metrics over all jets; the masking noise comes from `seed` (same masks every call)."""
    model.eval()
    meter = ReconstructionMeter(raw.channels, raw.in_chans)
    gen = torch.Generator().manual_seed(seed)
    per_patch = model.pixel_valid.sum(dim=1).double()  # real pixels per patch [L]
    eta = raw.columns.get("eta")
    nonneg = normalizer.nonnegative_channels()
    for idx in _batches(len(raw), batch_size):
        x = to_tensor(norm, idx, device)
        noise = torch.rand(len(idx), model.num_patches, generator=gen).to(device)
        out = model(x, mask_ratio, noise)
        n_masked = float((out.mask.double() * per_patch).sum())
        n_visible = float(((1 - out.mask.double()) * per_patch).sum())
        meter.add_pixels(out.mse_masked, out.mse_visible, n_masked, n_visible)
        if physics:
            rec = normalizer.denormalize(model.reconstruct(x, out.pred, out.mask)).cpu().numpy()
            if nonneg:  # predicted negative energies are unphysical: clip them before summing
                rec[:, nonneg] = np.maximum(rec[:, nonneg], 0.0)
            meter.add_images(raw.dense(idx), rec, None if eta is None else eta[idx])
        if bar is not None:
            bar.update(1)
    result = meter.result()
    result["clipped_at_zero"] = [meter.channels[c] for c in nonneg]
    return result


def save_scores(path: str | os.PathLike, labels: np.ndarray, prob: np.ndarray) -> None:
    """Per-jet test scores (for ROC curves) as .npz: `label` [N] int64, `prob` [N] float64 = P(quark)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, label=np.asarray(labels, np.int64), prob=np.asarray(prob, np.float64))
    os.replace(tmp, path)


def run_evaluate(cfg: EvalConfig, bar_factory=None, scores_out: str | os.PathLike | None = None) -> dict:
    """Evaluate a checkpoint on one split of a dataset; writes cfg.out (JSON) when given.

    scores_out: classifiers only, also write the per-jet labels and P(quark) there (`save_scores`), from
    the same pass over the split.
    """
    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, 0)
    ckpt = load_checkpoint(cfg.checkpoint)
    model = ckpt.model.to(device)
    if ckpt.normalizer is None:
        raise InputError(ckpt.path, "the checkpoint has no normalizer (was it written by training?)")
    is_mae = isinstance(model, MaskedAutoencoderViT)
    subset = cfg.subset or ("unlabelled" if is_mae else "labelled")
    raw = load_split(cfg.root, subset, cfg.split, cfg.max_jets)
    check_channels(raw, model.in_chans, ckpt.channels, ckpt.path)
    norm = raw.normalized(ckpt.normalizer)
    n_batches = -(-len(raw) // cfg.batch_size)
    bar = bar_factory(n_batches, f"evaluate {subset}/{cfg.split}") if bar_factory else None
    if isinstance(model, JetMAE):
        from e2ecompress.train.jet_recon import jet_reconstruction

        ratio = model.mask_ratio if cfg.mask_ratio is None else cfg.mask_ratio
        metrics = jet_reconstruction(
            model, raw, norm, ckpt.normalizer, cfg.batch_size, ratio, cfg.seed, device
        )
        metrics["mask_ratio"] = ratio
    elif is_mae:
        ratio = model.mask_ratio if cfg.mask_ratio is None else cfg.mask_ratio
        metrics = reconstruction(
            model, raw, norm, ckpt.normalizer, cfg.batch_size, ratio, cfg.seed, device, bar=bar
        )
        metrics["mask_ratio"] = ratio
    else:
        prob = predict_proba(model, norm, cfg.batch_size, device, bar)
        metrics = classification_metrics(raw.labels, prob)
        if scores_out is not None:
            save_scores(scores_out, raw.labels, prob)
    if bar is not None:
        bar.close()
    result = {
        "checkpoint": os.fspath(cfg.checkpoint),
        "model_id": ckpt.model_id,
        "arch": ckpt.arch,
        "kind": "reconstruction" if is_mae else "classification",
        "data": os.fspath(cfg.root),
        "subset": subset,
        "split": cfg.split,
        "n_jets": len(raw),
        "metrics": metrics,
        "wall_s": round(time.perf_counter() - t0, 3),
        "config": to_dict(cfg),
    }
    if cfg.out:
        write_json(cfg.out, result)
    return result
