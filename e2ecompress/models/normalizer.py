"""Per-channel, invertible input normalization for jet images, fitted on the training split only.

    y = sign(x) * log1p(|x| / s_c) / t_c          x = sign(y) * s_c * expm1(|y| * t_c)

s_c is the median |x| of the channel's non-zero pixels, t_c the RMS of log1p(|x| / s_c) over the same
pixels, so non-zero values land at O(1) whatever their scale (energies span 0-100+ GeV, track counts are
small integers). Zeros map to exact zeros both ways (sparsity survives), the sign is kept (signed
channels such as track impact parameters), and the log compresses the heavy energy tail.

`fit` streams batches once: it histograms log10|x| of the non-zero pixels per channel (0.01-dex bins
over 1e-10 .. 1e5) and reads both statistics off that histogram, so memory is fixed and the result does
not depend on the batch size. The parameters are JSON-safe (`to_dict` / `from_dict`) and are stored in
every checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from e2ecompress.errors import InputError

LOG_MIN, LOG_MAX, BINS_PER_DECADE = -10.0, 5.0, 100
MAX_LOG = 80.0  # |y| * t_c above this would overflow float32 in expm1; denormalize clamps there


class Normalizer:
    """Per-channel log scaling; `normalize` / `denormalize` take numpy or torch [..., C, H, W]."""

    def __init__(
        self,
        scale: Sequence[float],
        tau: Sequence[float],
        channels: Sequence[str] | None = None,
        stats: dict[str, Any] | None = None,
    ):
        self.scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        self.tau = np.asarray(tau, dtype=np.float64).reshape(-1)
        if self.scale.shape != self.tau.shape or self.scale.size == 0:
            raise ValueError(
                f"scale and tau must be non-empty and of one length, got {self.scale}, {self.tau}"
            )
        if not (np.all(np.isfinite(self.scale)) and np.all(self.scale > 0)):
            raise ValueError(f"scale must be finite and > 0, got {self.scale}")
        if not (np.all(np.isfinite(self.tau)) and np.all(self.tau > 0)):
            raise ValueError(f"tau must be finite and > 0, got {self.tau}")
        self.channels = None if channels is None else tuple(channels)
        if self.channels is not None and len(self.channels) != self.scale.size:
            raise ValueError(f"{len(self.channels)} channel names for {self.scale.size} channels")
        self.stats = dict(stats or {})

    @property
    def in_chans(self) -> int:
        return int(self.scale.size)

    def __repr__(self) -> str:
        return f"Normalizer(scale={self.scale.tolist()}, tau={self.tau.tolist()}, channels={self.channels})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Normalizer)
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.tau, other.tau)
            and self.channels == other.channels
        )

    __hash__ = None  # mutable arrays inside

    # --- fitting -----------------------------------------------------------------------------------
    @classmethod
    def fit(cls, batches: Iterable[np.ndarray], channels: Sequence[str] | None = None) -> Normalizer:
        """Fit on a stream of image arrays [B, C, H, W] (the training split only)."""
        n_bins = int((LOG_MAX - LOG_MIN) * BINS_PER_DECADE)
        hist: np.ndarray | None = None
        negative = None
        n_pixels = 0
        for images in batches:
            images = np.asarray(images)
            if images.ndim != 4:
                raise ValueError(f"images must be [B, C, H, W], got shape {images.shape}")
            C = images.shape[1]
            if hist is None:
                hist = np.zeros((C, n_bins), np.int64)
                negative = np.zeros(C, np.int64)
            elif C != hist.shape[0]:
                raise ValueError(f"batches have {C} channels after {hist.shape[0]}")
            n_pixels += images[:, 0].size
            for c in range(C):
                negative[c] += int(np.count_nonzero(images[:, c] < 0))
                v = np.abs(images[:, c])
                v = v[v > 0]
                if v.size:
                    idx = np.floor((np.log10(v.astype(np.float64)) - LOG_MIN) * BINS_PER_DECADE)
                    hist[c] += np.bincount(np.clip(idx, 0, n_bins - 1).astype(np.int64), minlength=n_bins)
        if hist is None:
            raise InputError(None, "cannot fit the normalizer: no images")
        norm = cls.from_histogram(hist, n_pixels, channels)
        norm.stats["negative"] = negative.tolist()
        return norm

    @classmethod
    def from_histogram(
        cls, hist: np.ndarray, n_pixels: int, channels: Sequence[str] | None = None
    ) -> Normalizer:
        centres = 10 ** (LOG_MIN + (np.arange(hist.shape[1]) + 0.5) / BINS_PER_DECADE)
        scale, tau, nonzero = [], [], []
        for h in hist:
            n = int(h.sum())
            nonzero.append(n)
            if n == 0:  # an empty channel: identity-like parameters
                scale.append(1.0)
                tau.append(1.0)
                continue
            median = centres[int(np.searchsorted(np.cumsum(h), (n + 1) / 2))]
            rms = float(np.sqrt((h * np.log1p(centres / median) ** 2).sum() / n))
            scale.append(float(median))
            tau.append(rms if rms > 0 else 1.0)
        stats = {
            "n_pixels_per_channel": int(n_pixels),
            "nonzero": nonzero,
            "occupancy": [n / max(n_pixels, 1) for n in nonzero],
        }
        return cls(scale, tau, channels, stats)

    # --- transforms --------------------------------------------------------------------------------
    def _params(self, x, ndim: int):
        if x.ndim < 3 or x.shape[-3] != self.in_chans:
            raise ValueError(f"expected [..., {self.in_chans}, H, W], got shape {tuple(x.shape)}")
        shape = (self.in_chans, 1, 1)
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            s = torch.as_tensor(self.scale, dtype=dtype, device=x.device).reshape(shape)
            t = torch.as_tensor(self.tau, dtype=dtype, device=x.device).reshape(shape)
            return s, t
        dtype = x.dtype if x.dtype.kind == "f" else np.float32
        return self.scale.astype(dtype).reshape(shape), self.tau.astype(dtype).reshape(shape)

    def normalize(self, x):
        """Raw values -> normalized (same type, dtype and shape); 0 -> 0."""
        s, t = self._params(x, x.ndim)
        if isinstance(x, torch.Tensor):
            x = x if x.is_floating_point() else x.float()
            return torch.sign(x) * torch.log1p(x.abs() / s) / t
        x = np.asarray(x)
        x = x if x.dtype.kind == "f" else x.astype(np.float32)
        return np.sign(x) * np.log1p(np.abs(x) / s) / t

    def denormalize(self, y):
        """Normalized -> raw values; the exact inverse of normalize up to rounding; 0 -> 0."""
        s, t = self._params(y, y.ndim)
        if isinstance(y, torch.Tensor):
            y = y if y.is_floating_point() else y.float()
            return torch.sign(y) * s * torch.expm1((y.abs() * t).clamp_max(MAX_LOG))
        y = np.asarray(y)
        y = y if y.dtype.kind == "f" else y.astype(np.float32)
        return np.sign(y) * s * np.expm1(np.minimum(np.abs(y) * t, MAX_LOG))

    def expected_value(self, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """E[x] when the normalized value y ~ Normal(mu, var), per channel [..., C, H, W] (torch).

        For y >= 0 the raw value s * expm1(t * y) is log-normal: E = s * (exp(t * mu + t^2 var / 2) - 1),
        the mean a squared error in log space would miss (it gives the median). Negative means (signed
        channels) use the mirror image.
        """
        s, t = self._params(mu, mu.ndim)
        arg = (mu.abs() * t + 0.5 * var * t * t).clamp_max(MAX_LOG)
        return torch.sign(mu) * s * torch.expm1(arg)

    def nonnegative_channels(self) -> list[int]:
        """Channels with no negative value in the fitting data (energies): a physical clip for predictions."""
        negative = self.stats.get("negative")
        return [] if negative is None else [c for c, n in enumerate(negative) if n == 0]

    def normalize_values(self, values: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """Normalize a flat array of pixel values whose channel indices are given (sparse storage)."""
        s = self.scale.astype(values.dtype)[channel]
        t = self.tau.astype(values.dtype)[channel]
        return np.sign(values) * np.log1p(np.abs(values) / s) / t

    # --- JSON --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "signed_log1p",
            "scale": self.scale.tolist(),
            "tau": self.tau.tolist(),
            "channels": None if self.channels is None else list(self.channels),
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        if not isinstance(d, dict) or d.get("kind") != "signed_log1p":
            raise InputError(None, f"not a normalizer description: {d!r:.80}")
        try:
            return cls(d["scale"], d["tau"], d.get("channels"), d.get("stats"))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(None, f"bad normalizer description: {e}") from None
