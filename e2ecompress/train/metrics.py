"""Evaluation metrics over a whole split: classification (ROC AUC, accuracy) and MAE reconstruction.

Reconstruction is judged in two spaces:
- normalized pixels: per-channel MSE on the masked and on the visible patches (padding excluded), summed
  over the split and divided once, so batch sizes do not weight the result;
- physics, on raw values: the reconstruction keeps the visible patches of the input and takes the
  decoder's prediction on the masked ones (MAE's "paste"), denormalized, with negative predictions set
  to zero in channels that had no negative value in the training data (energies); per-jet relative
  differences of the per-channel sums, and of the calorimeter energy sum (ECAL + HCAL) and the image-level
  jet pT and mass (`jet_rel_diff`: energy, pt, mass; from `e2ecompress.physics.jet_kinematics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from e2ecompress import physics


def classification_metrics(labels: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """labels [N] in {0, 1}; prob [N] = P(quark). AUC is NaN when one class is missing."""
    labels = np.asarray(labels).astype(np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    both = len(np.unique(labels)) == 2
    auc = float(roc_auc_score(labels, prob)) if both else math.nan
    p = np.clip(prob, 1e-7, 1 - 1e-7)
    log_loss = float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))) if len(labels) else math.nan
    acc = float(np.mean((prob >= 0.5) == (labels == 1))) if len(labels) else math.nan
    return {"auc": auc, "accuracy": acc, "log_loss": log_loss, "n_jets": len(labels)}


def _rel_stats(rec: np.ndarray, true: np.ndarray) -> dict[str, float]:
    ok = np.abs(true) > 0
    d = (rec[ok] - true[ok]) / true[ok]
    if d.size == 0:
        return {"mean": math.nan, "std": math.nan, "mean_abs": math.nan, "n": 0}
    return {
        "mean": float(d.mean()),
        "std": float(d.std()),
        "mean_abs": float(np.abs(d).mean()),
        "n": int(d.size),
    }


class ReconstructionMeter:
    """Accumulates reconstruction errors batch by batch; `result()` gives the split's metrics."""

    def __init__(self, channels: Sequence[str] | None, in_chans: int):
        self.channels = list(channels) if channels else [f"ch{i}" for i in range(in_chans)]
        self.sq_masked = np.zeros(in_chans)
        self.sq_visible = np.zeros(in_chans)
        self.n_masked = 0.0
        self.n_visible = 0.0
        self.sums_true: list[np.ndarray] = []
        self.sums_rec: list[np.ndarray] = []
        self.kin_true: dict[str, list[np.ndarray]] = {"pt": [], "mass": [], "energy": []}
        self.kin_rec: dict[str, list[np.ndarray]] = {"pt": [], "mass": [], "energy": []}
        self.has_calo = any(c in physics.CALO_CHANNELS for c in self.channels)

    def add_pixels(
        self, mse_masked: torch.Tensor, mse_visible: torch.Tensor, n_masked: float, n_visible: float
    ):
        """Batch means per channel and the pixel counts (per channel) they were taken over."""
        self.sq_masked += mse_masked.double().cpu().numpy() * n_masked
        self.sq_visible += mse_visible.double().cpu().numpy() * n_visible
        self.n_masked += n_masked
        self.n_visible += n_visible

    def add_images(self, true: np.ndarray, rec: np.ndarray, eta: np.ndarray | None) -> None:
        """Raw images [B, C, H, W] before and after reconstruction."""
        self.sums_true.append(physics.channel_sums(true))
        self.sums_rec.append(physics.channel_sums(rec))
        if self.has_calo:
            kt = physics.jet_kinematics(true, self.channels, eta)
            kr = physics.jet_kinematics(rec, self.channels, eta)
            for k in self.kin_true:
                self.kin_true[k].append(kt[k])
                self.kin_rec[k].append(kr[k])

    def result(self) -> dict:
        out: dict = {
            "mse_masked": dict(
                zip(self.channels, (self.sq_masked / max(self.n_masked, 1)).tolist(), strict=True)
            ),
            "mse_visible": dict(
                zip(self.channels, (self.sq_visible / max(self.n_visible, 1)).tolist(), strict=True)
            ),
        }
        out["mse_masked_mean"] = float(np.mean(list(out["mse_masked"].values())))
        out["mse_visible_mean"] = float(np.mean(list(out["mse_visible"].values())))
        if self.sums_true:
            t, r = np.concatenate(self.sums_true), np.concatenate(self.sums_rec)
            out["energy_sum_rel_diff"] = {
                c: _rel_stats(r[:, i], t[:, i]) for i, c in enumerate(self.channels)
            }
            out["n_jets"] = len(t)
        if self.has_calo and self.kin_true["pt"]:
            out["jet_rel_diff"] = {
                k: _rel_stats(np.concatenate(self.kin_rec[k]), np.concatenate(self.kin_true[k]))
                for k in self.kin_true
            }
        return out
