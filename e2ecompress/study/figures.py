"""The study's PNG figures: pretraining loss curves, MAE reconstructions, ROC curves, AUC vs label fraction.

Matplotlib's object API (`Figure`) only: no pyplot, no global backend switch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
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


def loss_curves(records: Sequence[Mapping], path: str | os.PathLike) -> None:
    """Per-epoch training loss and validation masked-patch MSE (the same quantity) of the pretraining."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ep = [r["epoch"] for r in records]
    ax.plot(ep, [r["train_loss"] for r in records], "o-", label="train (unlabelled/train)")
    ax.plot(ep, [r["val_mse_masked_mean"] for r in records], "s--", label="validation (unlabelled/val)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked-patch MSE, channel mean (normalized units)")
    ax.set_title("MAE pretraining")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=DPI)


@torch.no_grad()
def reconstruction_panels(
    checkpoint: str | os.PathLike, root: str | os.PathLike, n_per_class: int, seed: int
) -> dict:
    """The first n quark and n gluon jets of labelled/test, normalized: `original`, `masked` (NaN on the
    removed patches) and `reconstruction` (visible patches pasted, predicted ones elsewhere), each
    [J, C, H, W]; `labels` [J]; `channels`."""
    ck = load_checkpoint(checkpoint)
    model = ck.model.eval()
    raw = load_split(root, "labelled", "test", max(64, 4 * n_per_class))
    y = raw.labels
    idx = np.concatenate([np.flatnonzero(y == 1)[:n_per_class], np.flatnonzero(y == 0)[:n_per_class]])
    x = torch.from_numpy(raw.normalized(ck.normalizer).dense(idx))
    noise = torch.rand(len(idx), model.num_patches, generator=torch.Generator().manual_seed(seed))
    out = model(x, None, noise)
    rec = model.reconstruct(x, out.pred, out.mask)
    removed = model.unpatchify(out.mask[:, :, None].expand(-1, -1, out.pred.shape[-1]).to(x.dtype))
    masked = torch.where(removed > 0.5, torch.full_like(x, float("nan")), x)
    return {
        "original": x.numpy(),
        "masked": masked.numpy(),
        "reconstruction": rec.numpy(),
        "labels": y[idx],
        "channels": list(ck.channels or [f"ch{i}" for i in range(model.in_chans)]),
    }


def plot_reconstructions(panels: Mapping, path: str | os.PathLike) -> None:
    """One row per jet; per channel three columns: original, masked input, reconstruction."""
    kinds = ("original", "masked", "reconstruction")
    chans = panels["channels"]
    n_jets, n_cols = len(panels["labels"]), 3 * len(chans)
    fig = Figure(figsize=(1.6 * n_cols, 1.7 * n_jets + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_jets, n_cols))
    cmap = colormaps["magma"].with_extremes(bad="0.7")
    for j in range(n_jets):
        for c, ch in enumerate(chans):
            vmax = max(float(np.nanmax(panels["original"][j, c])), 1e-6)
            for k, kind in enumerate(kinds):
                ax = axes[j, 3 * c + k]
                ax.imshow(panels[kind][j, c], cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_title(f"{ch}\n{kind}", fontsize=8)
        axes[j, 0].set_ylabel("quark" if panels["labels"][j] == 1 else "gluon")
    fig.suptitle("MAE on labelled/test (normalized units; grey: masked patches)", fontsize=10)
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


def auc_vs_fraction(summaries: Mapping[str, Mapping[str, Mapping]], path: str | os.PathLike) -> None:
    """summaries: name -> {fraction key: {auc_mean, auc_std}}; error bars are the std over seeds."""
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, s in summaries.items():
        fr = sorted(s, key=float)
        mean = [s[f]["auc_mean"] for f in fr]
        err = [s[f]["auc_std"] or 0.0 for f in fr]
        style = "--" if name.startswith("lr_") else "-"
        ax.errorbar(
            [float(f) for f in fr], mean, yerr=err, fmt="o" + style, capsize=3, label=NAMES.get(name, name)
        )
    ax.set_xscale("log")
    ticks = sorted({float(f) for s in summaries.values() for f in s})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("fraction of the labelled training jets")
    ax.set_ylabel("test ROC AUC (mean ± std over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=DPI)


def study_figures(plan, paths, results: Mapping) -> dict[str, str]:
    """Write every figure into paths.out; returns their file names (relative to paths.out)."""
    out = paths.out
    loss_curves(results["pretrain"]["records"], out / FILES["loss"])
    panels = reconstruction_panels(
        paths.run("pretrain") / "checkpoints" / "best", paths.data, plan.figure_jets, plan.mask_seed
    )
    plot_reconstructions(panels, out / FILES["reconstruction"])
    ref, seed = plan.reference_fraction, plan.seeds[0]
    curves = {}
    for m in plan.methods:
        s = np.load(paths.test_scores(m, ref, seed))
        curves[m] = (s["label"], s["prob"])
    b = np.load(paths.baseline_json.with_suffix(".npz"))
    curves["lr_image"] = (b["label"], b["prob_image"])
    curves["lr_truth"] = (b["label"], b["prob_truth"])
    roc_figure(curves, out / FILES["roc"], f"labelled/test, {100 * ref:g}% of the labels, seed {seed}")
    summaries = dict(results["classification"]["summary"])
    for kind in ("image", "truth"):
        summaries[f"lr_{kind}"] = results["baseline"][kind]["summary"]
    auc_vs_fraction(summaries, out / FILES["auc_vs_fraction"])
    return dict(FILES)
