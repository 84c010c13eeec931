"""e2ecompress's own operating points, built from the library API (`E2ECodec`, the numcodecs class over
`ImageCodec`): every point's bytes are a self-contained, CRC-checked frame of one chunk, so bytes/jet
include all of the codec's framing. The rest of the benchmark treats them like any baseline.

- bounded (`--max-error EPS`) at the same EPS values as the sparse baseline, SZ3 and ZFP, and with
  `--unbiased` (non-zero pixels stay non-zero, towers within EPS as a whole) at two of them;
- the physics levels (`--quality 1..5`, the default of `pack`): relative precision, exact positions in
  the jet cone, per-jet cone sums;
- lossless;
- the learned latent codec (`--latent`) at three quality levels, when its model is available. (Its
  visible-tokens-only point and the bounded mode with the latent model as predictor were measured in
  earlier runs and lost to the classical coder; they are no longer run here.)
"""

from __future__ import annotations

from collections.abc import Sequence

from e2ecompress.codec.numcodecs_codec import E2ECodec
from e2ecompress.errors import E2EError

from .points import OperatingPoint

CHANNELS = ("ECAL", "HCAL", "Tracks")
PHYSICS_LEVELS = (1, 2, 3, 4, 5)
LATENT_LEVELS = (1, 3, 5)  # the learned latent codec (`--latent`), three of its levels: it runs ~150 jets/s
UNBIASED_EPS = (0.01, 0.1)  # bounded with unbiased=True (non-zero pixels kept, towers within eps) at these


def _point(name: str, codec: E2ECodec, max_error: float | None = None, lossless: bool = False):
    params = {k: v for k, v in codec.get_config().items() if k not in ("id", "channels") and v is not None}
    return OperatingPoint(
        name,
        "e2ecompress " + codec.config.mode + ("+model" if codec.config.predictor == "model" else ""),
        codec.encode,
        lambda b, n: codec.decode(b),
        params,
        lossless=lossless,
        max_error=max_error,
        components=codec.stream_sizes,
    )


def _latent_levels() -> list[int]:
    try:
        from e2ecompress.codec import models

        return sorted(models.load(models.DEFAULT_MODEL).levels)
    except E2EError:  # no shipped latent model: the lossy points are left out
        return []


def _physics_points() -> list[OperatingPoint]:
    """The physics levels (`--quality Q`, the default of pack), when this e2ecompress has them."""
    points = []
    for q in PHYSICS_LEVELS:
        try:
            codec = E2ECodec("physics", quality=q)
        except ValueError:
            return []
        points.append(_point(f"e2ecompress q={q}", codec))
    return points


def e2ecompress_points(eps_values: Sequence[float] = (0.005, 0.01, 0.05, 0.1)) -> list[OperatingPoint]:
    points = [
        _point(f"e2ecompress eps={eps:g}", E2ECodec("bounded", max_error=eps), eps) for eps in eps_values
    ]
    points += [
        _point(f"e2ecompress eps={eps:g} unbiased", E2ECodec("bounded", max_error=eps, unbiased=True), eps)
        for eps in eps_values
        if eps in UNBIASED_EPS
    ]
    points.append(_point("e2ecompress lossless", E2ECodec("lossless"), lossless=True))
    points += _physics_points()
    levels = [q for q in _latent_levels() if q in LATENT_LEVELS]
    points += [_point(f"e2ecompress latent q={q}", E2ECodec("lossy", quality=q)) for q in levels]
    return points
