"""e2ecompress's own operating points, built from the library API (`E2ECodec`, the numcodecs class over
`ImageCodec`): every point's bytes are a self-contained, CRC-checked frame of one chunk, so bytes/jet
include all of the codec's framing. The rest of the benchmark treats them like any baseline.

- bounded (`--max-error EPS`) at the same EPS values as the sparse baseline, SZ3 and ZFP, and with
  `--unbiased` (non-zero pixels stay non-zero, towers within EPS as a whole) at two of them;
- bounded with the latent model as predictor (`--predictor model`) at one EPS;
- lossless;
- lossy latent codec at each quality level, and the visible-tokens-only point (keep 25% of the
  occupied patches' latents, the decoder inpaints the rest), when the latent model is available.
"""

from __future__ import annotations

from collections.abc import Sequence

from e2ecompress.codec.numcodecs_codec import E2ECodec
from e2ecompress.errors import E2EError

from .points import OperatingPoint

CHANNELS = ("ECAL", "HCAL", "Tracks")
MODEL_EPS = 0.01
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
        from e2ecompress.api import DEFAULT_MODEL, _load_latent

        return sorted(_load_latent(DEFAULT_MODEL).levels)
    except E2EError:  # no shipped latent model: the lossy points are left out
        return []


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
    levels = _latent_levels()
    if levels:
        points.append(
            _point(
                f"e2ecompress eps={MODEL_EPS:g} +model",
                E2ECodec("bounded", max_error=MODEL_EPS, predictor="model"),
                MODEL_EPS,
            )
        )
        points += [_point(f"e2ecompress q={q}", E2ECodec("lossy", quality=q)) for q in levels]
        mid = levels[len(levels) // 2]
        points.append(
            _point(f"e2ecompress q={mid} visible 25%", E2ECodec("lossy", quality=mid, keep_fraction=0.25))
        )
    return points
