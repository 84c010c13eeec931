"""Physics baseline: logistic regression on jet substructure, on the classifiers' train/val/test splits.

Two feature sets:
- truth: generator-level columns of the dataset (constituent multiplicity, girth, pTD, mass `m0`), which
  no image-based model can see, so an upper reference rather than a fair one;
- image: the same quantities measured on the detector images (`e2ecompress.physics.substructure`: girth,
  pTD, mass, calorimeter/ECAL pixel and track multiplicities in the jet cone), the fair comparison.

Features are standardized (fitted on the training jets); the inverse regularization strength C is chosen
by validation AUC; the chosen model is scored once on the test split. Label fractions use the classifiers'
own subsets (`label_subset(labels, fraction, seed)`), so every method sees the same labelled jets.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from e2ecompress import physics
from e2ecompress.train.data import label_subset, load_split, shard_paths
from e2ecompress.train.metrics import classification_metrics

TRUTH_FEATURES = ("n_constituents", "girth", "ptd", "m0")
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
MAX_ITER = 2000
FEATURE_SETS = ("truth", "image")


def read_columns(root: str | os.PathLike, subset: str, split: str, columns: Sequence[str]) -> np.ndarray:
    """[N, len(columns)] float64 from the split's shards in training order (no image is read)."""
    tables = [pq.read_table(p, columns=list(columns)) for p in shard_paths(root, subset, split)]
    t = pa.concat_tables(tables)
    return np.column_stack([t.column(c).to_numpy().astype(np.float64) for c in columns])


def image_features(
    root: str | os.PathLike, split: str, batch_size: int = 256
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, X [N, F], y [N]) of image-level substructure on labelled/`split`."""
    jets = load_split(root, "labelled", split)
    eta = jets.columns.get("eta")
    parts: list[dict[str, np.ndarray]] = []
    for s in range(0, len(jets), batch_size):
        idx = np.arange(s, min(s + batch_size, len(jets)))
        parts.append(physics.substructure(jets.dense(idx), jets.channels, None if eta is None else eta[idx]))
    names = sorted(parts[0])
    X = np.column_stack([np.concatenate([p[n] for p in parts]) for n in names])
    return names, X, jets.labels


def fit_select(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    grid: Sequence[float] = C_GRID,
) -> tuple[Pipeline, dict]:
    """Standardize + logistic regression for each C in `grid`; keep the best validation AUC (first on ties).

    Returns the fitted pipeline and {"C", "val_auc", "converged"}.
    """
    if len(np.unique(y_train)) < 2:
        raise ValueError("the training jets hold one class only")
    if not grid:
        raise ValueError("an empty grid of C values")
    fits: list[tuple[Pipeline, dict]] = []
    for c in grid:
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITER))
        with warnings.catch_warnings():
            # reported as "converged" instead: tiny or separable samples stop at MAX_ITER
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipe.fit(X_train, y_train)
        prob = pipe.predict_proba(X_val)[:, 1]
        auc = float(roc_auc_score(y_val, prob)) if len(np.unique(y_val)) == 2 else float("nan")
        fits.append(
            (pipe, {"C": float(c), "val_auc": auc, "converged": bool(pipe[-1].n_iter_.max() < MAX_ITER)})
        )
    # max() keeps the first of equal keys: the strongest regularization on ties; NaN never wins
    return max(fits, key=lambda t: np.nan_to_num(t[1]["val_auc"], nan=-1.0))


def _features(root, kind: str) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    X, y = {}, {}
    names: list[str] = []
    for split in ("train", "val", "test"):
        if kind == "truth":
            names = list(TRUTH_FEATURES)
            X[split] = read_columns(root, "labelled", split, TRUTH_FEATURES)
            y[split] = read_columns(root, "labelled", split, ("y",))[:, 0].astype(np.int64)
        else:
            names, X[split], y[split] = image_features(root, split)
    return names, X, y


def run_baseline(
    root: str | os.PathLike,
    fractions: Sequence[float],
    seeds: Sequence[int],
    reference_fraction: float,
    scores_out: str | os.PathLike | None = None,
) -> dict:
    """Both feature sets at every (fraction, seed); test scores go to `scores_out` (.npz: label,
    prob_{kind}_f{fraction}_s{seed} for every run, and prob_truth, prob_image for (reference_fraction,
    seeds[0]), the ROC figure's)."""
    out: dict = {}
    scores: dict[str, np.ndarray] = {}
    for kind in FEATURE_SETS:
        names, X, y = _features(root, kind)
        runs = []
        for f in fractions:
            for seed in seeds:
                keep = label_subset(y["train"], f, seed)
                pipe, info = fit_select(X["train"][keep], y["train"][keep], X["val"], y["val"])
                prob = pipe.predict_proba(X["test"])[:, 1]
                m = classification_metrics(y["test"], prob)
                runs.append(
                    {"fraction": f, "seed": seed, "n_train": len(keep), **info}
                    | {k: m[k] for k in ("auc", "accuracy", "log_loss", "n_jets")}
                )
                scores[f"prob_{kind}_f{f:g}_s{seed}"] = prob
                if f == reference_fraction and seed == seeds[0]:
                    scores["label"] = y["test"]
                    scores[f"prob_{kind}"] = prob
                    coef = pipe[-1].coef_[0]
                    out.setdefault(kind, {})["coefficients"] = dict(zip(names, coef.tolist(), strict=True))
        out.setdefault(kind, {}).update(features=names, runs=runs)
    if scores_out is not None:
        os.makedirs(os.path.dirname(os.fspath(scores_out)) or ".", exist_ok=True)
        tmp = f"{os.fspath(scores_out)}.tmp.npz"
        np.savez(tmp, **scores)
        os.replace(tmp, scores_out)
    return out
