"""The options of a pack, checked once: `PackOptions` (what `api.pack` takes, what the CLI and
`distributed.pack_many` pass on) and `make_config` (mode options -> `CodecConfig`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from e2ecompress.codec import physics_lossy
from e2ecompress.codec.image import CodecConfig

DEFAULT_QUALITY = 3  # the learned latent codec's level (latent=True, `--latent`)
DEFAULT_LEVEL = physics_lossy.DEFAULT_LEVEL  # the physics level of a pack with no mode chosen
DEFAULT_CHUNK = 512


def make_config(
    *,
    quality: int | None = None,
    max_error: float | None = None,
    lossless: bool = False,
    latent: bool = False,
    **kw: Any,
) -> CodecConfig:
    """The CodecConfig for CLI-style options: at most one of quality / max_error / lossless. quality is a
    physics level (1..5; DEFAULT_LEVEL when no mode is chosen), or with latent=True a level of the learned
    latent codec (DEFAULT_QUALITY when not given)."""
    if sum(x is not None and x is not False for x in (quality, max_error, lossless)) > 1:
        raise ValueError("choose one of quality, max_error and lossless")
    if latent and (max_error is not None or lossless):
        raise ValueError("latent takes a quality level, not max_error or lossless")
    if latent:
        return CodecConfig(mode="lossy", quality=DEFAULT_QUALITY if quality is None else int(quality), **kw)
    if lossless:
        return CodecConfig(mode="lossless", **kw)
    if max_error is not None:
        return CodecConfig(mode="bounded", max_error=float(max_error), **kw)
    return CodecConfig(mode="physics", quality=DEFAULT_LEVEL if quality is None else quality, **kw)


@dataclass(frozen=True)
class PackOptions:
    """How to pack a file (see `api.pack` for each option); ValueError on construction unless the
    options make one valid mode and chunk_size >= 1. One object serves every shard of a pack_many run."""

    model: str | os.PathLike | None = None
    quality: int | None = None
    max_error: float | None = None
    lossless: bool = False
    latent: bool = False
    predictor: str = "none"
    keep_fraction: float = 1.0
    unbiased: bool = False
    chunk_size: int = DEFAULT_CHUNK
    embed_model: bool = False
    channels: Any = None  # channel names (or a layout name) for files that do not record them
    verify: bool = True  # decode and check every chunk before the file is committed

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        self.config()

    def config(self) -> CodecConfig:
        """The CodecConfig these options code with (stored in the .e2ez header)."""
        return make_config(
            quality=self.quality,
            max_error=self.max_error,
            lossless=self.lossless,
            latent=self.latent,
            predictor=self.predictor,
            keep_fraction=self.keep_fraction,
            **({"unbiased": True} if self.unbiased else {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The options as a dataset manifest records them: every field, verify only when turned off."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "verify" or not self.verify}
