"""Fidelity metrics of decoded jet images against the originals: pixel errors, energy sums, jet pT and mass
(`e2ecompress.physics`), and the quark/gluon AUC of a classifier.

Two steps, so a benchmark can stream chunks: `jet_quantities` / `pixel_errors` give per-jet arrays for
one chunk; `summarize` turns the concatenated arrays of the originals and of a codec's output into the
numbers of one table row. Physics quantities of decoded images are compared with the same quantity
computed on the original images (not with generator truth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from e2ecompress.physics import channel_sums, jet_kinematics

PerJet = dict[str, np.ndarray]


def jet_quantities(
    images: np.ndarray,
    channels: Sequence[str],
    eta: np.ndarray | None,
    score: Callable[[np.ndarray], np.ndarray] | None = None,
) -> PerJet:
    """Per-jet channel sums [n, C], image-level pT and mass [n] (R = 0.4 around the centre, jet eta from
    the table) and, when `score` is given, the classifier's P(quark) [n]."""
    kin = jet_kinematics(images, channels, eta)
    out = {"sums": channel_sums(images), "pt": kin["pt"], "mass": kin["mass"]}
    if score is not None:
        out["prob"] = np.asarray(score(images), dtype=np.float64)
    return out


def pixel_errors(orig: np.ndarray, dec: np.ndarray) -> PerJet:
    """Per jet: max |dec - orig|, and counts of zero / non-zero pixels and of those that changed kind."""
    n = len(orig)
    o, d = orig.reshape(n, -1), dec.reshape(n, -1)
    zero, dzero = o == 0, d == 0
    return {
        "max_abs": np.abs(d - o).max(axis=1).astype(np.float64),  # float32: exact near the bound
        "n_zero": zero.sum(axis=1),
        "zero_to_nonzero": (zero & ~dzero).sum(axis=1),
        "n_nonzero": (~zero).sum(axis=1),
        "nonzero_to_zero": (~zero & dzero).sum(axis=1),
    }


def concat(parts: Sequence[PerJet]) -> PerJet:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def relative_resolution(reco: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(std, mean) of reco / true - 1 over the jets with true > 0: resolution and bias."""
    keep = true > 0
    if not keep.any():
        return float("nan"), float("nan")
    r = reco[keep] / true[keep] - 1.0
    return float(r.std()), float(r.mean())


def auc_drop(
    labels: np.ndarray, ref_prob: np.ndarray, prob: np.ndarray, n_boot: int = 200, seed: int = 0
) -> tuple[float, float, float]:
    """(AUC of prob, AUC(ref) - AUC(prob), its std over paired bootstrap resamples of the jets)."""
    auc = float(roc_auc_score(labels, prob))
    drop = float(roc_auc_score(labels, ref_prob)) - auc
    if np.array_equal(ref_prob, prob):
        return auc, 0.0, 0.0
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() == labels[idx].max():
            continue
        drops.append(roc_auc_score(labels[idx], ref_prob[idx]) - roc_auc_score(labels[idx], prob[idx]))
    return auc, drop, float(np.std(drops))


def summarize(
    ref: PerJet, got: PerJet, channels: Sequence[str], labels: np.ndarray | None = None
) -> dict[str, float]:
    """One row of fidelity numbers (fractions, not percent) from per-jet arrays of originals and decoded."""
    row: dict[str, float] = {
        "max_abs_err": float(got["max_abs"].max()),
        "zero_to_nonzero": float(got["zero_to_nonzero"].sum() / max(got["n_zero"].sum(), 1)),
        "nonzero_to_zero": float(got["nonzero_to_zero"].sum() / max(got["n_nonzero"].sum(), 1)),
    }
    for c, name in enumerate(channels):
        row[f"sum_res_{name}"], row[f"sum_bias_{name}"] = relative_resolution(
            got["sums"][:, c], ref["sums"][:, c]
        )
    for q in ("pt", "mass"):
        row[f"{q}_res"], row[f"{q}_bias"] = relative_resolution(got[q], ref[q])
    if labels is not None and "prob" in got:
        row["auc_ref"] = float(roc_auc_score(labels, ref["prob"]))
        row["auc"], row["auc_drop"], row["auc_drop_err"] = auc_drop(labels, ref["prob"], got["prob"])
        row["dprob_rms"] = float(np.sqrt(np.mean((got["prob"] - ref["prob"]) ** 2)))
    return row
