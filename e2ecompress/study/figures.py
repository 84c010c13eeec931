"""The study's PNG figures: pretraining curves with their baselines, MAE reconstructions, ROC curves,
AUC vs label fraction with the paired differences.

Matplotlib's object API (`Figure`) only: no pyplot, no global backend switch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from e2ecompress.models import load_checkpoint
from e2ecompress.study.report import NAMES
from e2ecompress.train.data import load_split

FILES = {
    "loss": "study_loss.png",
    "reconstruction": "study_reconstruction.png",
    "roc": "study_roc.png",
    "auc_vs_fraction": "study_auc_vs_fraction.png",
}
DPI = 110
COLORS = {"finetune": "C0", "scratch": "C1", "linprobe": "C2", "lr_image": "C3", "lr_truth": "C4"}


def loss_curves(pretrain: Mapping[str, Mapping], mean_patch: float | None, path: str | os.PathLike) -> None:
    """Left: pretext loss per epoch (train, validation) per pretraining seed. Right: validation MSE of
    the mean prediction on masked occupied patches beside zero prediction's and (dotted) the mean
    occupied patch's (an oracle constant, from the unlabelled/test evaluation)."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    for k, (name, pre) in enumerate(sorted(pretrain.items())):
        recs = pre["records"]
        ep = [r["epoch"] for r in recs]
        color = f"C{k}"
        ax.plot(ep, [r["train_loss"] for r in recs], "o-", color=color, label=f"{name} train")
        ax.plot(ep, [r["val_loss"] for r in recs], "s--", color=color, label=f"{name} validation")
        if all(r.get("val_mse_occupied") is not None for r in recs):
            bx.plot(ep, [r["val_mse_occupied"] for r in recs], "o-", color=color, label=f"{name} MAE")
            bx.plot(ep, [r["val_mse_zero"] for r in recs], "x:", color=color, label=f"{name} zero prediction")
    if mean_patch is not None:
        bx.axhline(mean_patch, color="k", ls=":", lw=1, label="mean occupied patch (oracle)")
    ax.set_ylabel("pretext loss (occupancy BCE + value NLL)")
    ax.set_title("MAE pretraining")
    bx.set_ylabel("MSE on masked occupied patches, channel mean")
    bx.set_title("validation reconstruction vs baselines")
    for a in (ax, bx):
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.savefig(path, dpi=DPI)


def reconstruction_panels(
    checkpoint: str | os.PathLike, root: str | os.PathLike, n_per_class: int, seed: int
) -> dict:
    """The first n quark and n gluon jets of labelled/test through `jet_reconstruction`: raw-scale
    `true`, `visible` (the patches the encoder saw) and `rec` (visible + predicted) images [J, C, H, W],
    `label` [J], `channels`."""
    from e2ecompress.train.jet_recon import jet_reconstruction

    ck = load_checkpoint(checkpoint)
    raw = load_split(root, "labelled", "test", max(64, 4 * n_per_class))
    y = raw.labels
    idx = np.concatenate([np.flatnonzero(y == 1)[:n_per_class], np.flatnonzero(y == 0)[:n_per_class]])
    sub = raw.subset(idx)
    res = jet_reconstruction(
        ck.model, sub, sub.normalized(ck.normalizer), ck.normalizer, len(idx), None, seed, "cpu",
        keep_examples=len(idx),
    )  # fmt: skip
    ex = res["_examples"]
    return {**ex, "label": y[idx], "channels": res["channels"]}


def plot_reconstructions(panels: Mapping, path: str | os.PathLike) -> None:
    """One row per jet; per channel three columns: original, visible patches, reconstruction (raw
    units, logarithmic colour scale shared by the three)."""
    kinds = (("true", "original"), ("visible", "visible to the encoder"), ("rec", "reconstruction"))
    chans = panels["channels"]
    n_jets, n_cols = len(panels["label"]), 3 * len(chans)
    fig = Figure(figsize=(1.6 * n_cols, 1.7 * n_jets + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_jets, n_cols))
    cmap = colormaps["magma"].with_extremes(bad="black", under="black")
    for j in range(n_jets):
        for c, ch in enumerate(chans):
            img = np.abs(panels["true"][j, c])
            vmax = max(float(img.max()), 1e-6)
            norm = LogNorm(vmin=vmax * 1e-3, vmax=vmax)
            for k, (kind, title) in enumerate(kinds):
                a = axes[j, 3 * c + k]
                a.imshow(np.abs(panels[kind][j, c]), cmap=cmap, norm=norm, interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
                if j == 0:
                    a.set_title(f"{ch}\n{title}", fontsize=7)
        axes[j, 0].set_ylabel("quark" if panels["label"][j] == 1 else "gluon")
    fig.suptitle("MAE on labelled/test: 75 % of each jet's occupied patches masked (log colour scale)",
                 fontsize=10)  # fmt: skip
    fig.savefig(path, dpi=DPI)


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, title: str):
    """curves: name -> (labels, P(quark)); quark efficiency against gluon mistag rate."""
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    for name, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{NAMES.get(name, name)} (AUC {roc_auc_score(y, p):.4f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("gluon jets accepted (false-positive rate)")
    ax.set_ylabel("quark jets accepted (true-positive rate)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=DPI)


def auc_vs_fraction(
    summaries: Mapping[str, Mapping[str, Mapping]],
    differences: Mapping[str, Mapping[str, Mapping]],
    path: str | os.PathLike,
) -> None:
    """Left: test AUC (mean ± std over seeds) per method. Right: fine-tuned minus each other method, with
    the paired bootstrap 95 % interval."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    for name, s in summaries.items():
        fr = sorted(s, key=float)
        mean = [s[f]["auc_mean"] for f in fr]
        err = [s[f]["auc_std"] or 0.0 for f in fr]
        style = "--" if name.startswith("lr_") else "-"
        ax.errorbar([float(f) for f in fr], mean, yerr=err, fmt="o" + style, capsize=3,
                    color=COLORS.get(name), label=NAMES.get(name, name))  # fmt: skip
    others = [o for o in COLORS if any(o in d for d in differences.values())]
    for k, other in enumerate(others):
        fr = sorted((f for f in differences if other in differences[f]), key=float)
        d = [differences[f][other] for f in fr]
        x = np.array([float(f) for f in fr]) * (1.0 + 0.06 * (k - (len(others) - 1) / 2))
        mid = np.array([e["diff"] for e in d])
        err = np.array([[e["diff"] - e["ci_low"] for e in d], [e["ci_high"] - e["diff"] for e in d]])
        bx.errorbar(x, mid, yerr=err, fmt="o", capsize=3, color=COLORS.get(other),
                    label=f"− {NAMES.get(other, other)}")  # fmt: skip
    bx.axhline(0.0, color="k", lw=1)
    ticks = sorted({float(f) for s in summaries.values() for f in s})
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xticks(ticks, [f"{t:g}" for t in ticks])
        a.minorticks_off()
        a.set_xlabel("fraction of the labelled training jets")
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    ax.set_ylabel("test ROC AUC (mean ± std over seeds)")
    bx.set_ylabel("fine-tuned AUC minus ... (95 % paired bootstrap CI)")
    fig.savefig(path, dpi=DPI)


def study_figures(plan, paths, results: Mapping, finals: Mapping) -> dict[str, str]:
    """Write every figure into paths.out; returns their file names (relative to paths.out)."""
    out = paths.out
    ps = plan.pretrain_seeds[0]
    test = results["reconstruction"][f"s{ps}"]["unlabelled/test"]
    mean_patch = test.get("mse_mean_patch")
    loss_curves(
        results["pretrain"], None if not mean_patch else float(np.mean(list(mean_patch.values()))),
        out / FILES["loss"],
    )  # fmt: skip
    panels = reconstruction_panels(
        paths.run("pretrain", seed=ps) / "checkpoints" / "best", paths.data, plan.figure_jets, plan.mask_seed
    )
    plot_reconstructions(panels, out / FILES["reconstruction"])
    ref, seed = plan.reference_fraction, plan.seeds[0]
    curves = {}
    for m in plan.methods:
        s = np.load(finals[(m, ref, seed)] / "test_scores.npz")
        curves[m] = (s["label"], s["prob"])
    b = np.load(paths.baseline_json.with_suffix(".npz"))
    for kind in ("image", "truth"):
        curves[f"lr_{kind}"] = (b["label"], b[f"prob_{kind}_f{ref:g}_s{seed}"])
    roc_figure(curves, out / FILES["roc"], f"labelled/test, {100 * ref:g}% of the labels, seed {seed}")
    summaries = dict(results["classification"]["summary"])
    for kind in ("image", "truth"):
        summaries[f"lr_{kind}"] = results["baseline"][kind]["summary"]
    auc_vs_fraction(summaries, results["differences"], out / FILES["auc_vs_fraction"])
    return dict(FILES)
