"""Plots of single events: decoded jet images per channel, beside the original when there is one."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from e2ecompress.fsutil import atomic_write


def plot_event(
    decoded: np.ndarray,
    original: np.ndarray | None,
    channels: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """decoded / original: [C, H, W] in GeV -> a PNG, one row per channel (original, decoded, difference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, SymLogNorm

    panels = ["decoded"] if original is None else ["original", "decoded", "decoded - original"]
    C = decoded.shape[0]
    fig, axes = plt.subplots(C, len(panels), figsize=(3.2 * len(panels), 3.0 * C), squeeze=False)
    for c in range(C):
        ref = decoded[c] if original is None else original[c]
        pos = ref[ref > 0]
        vmax = float(pos.max()) if pos.size else 1.0
        vmin = max(float(pos.min()) if pos.size else 1e-3, vmax * 1e-4)
        for j, name in enumerate(panels):
            ax = axes[c, j]
            if name == "decoded - original":
                diff = decoded[c] - original[c]
                lim = max(float(np.abs(diff).max()), 1e-6)
                im = ax.imshow(diff, cmap="coolwarm", norm=SymLogNorm(lim * 1e-3, vmin=-lim, vmax=lim))
            else:
                img = ref if name == "original" else decoded[c]
                im = ax.imshow(np.ma.masked_less_equal(img, 0), cmap="viridis", norm=LogNorm(vmin, vmax))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(name)
            if j == 0:
                ax.set_ylabel(f"{channels[c]}  (sum {decoded[c].sum():.1f} GeV)")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    atomic_write(path, png.getvalue())
