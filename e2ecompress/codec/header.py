"""`PackHeader`: the JSON header of an .e2ez file (docs/FORMAT.md) as `api.pack` writes it and
`api.Reader` reads it back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from e2ecompress.codec.image import CodecConfig


@dataclass(frozen=True)
class PackHeader:
    """What an .e2ez file records besides its chunks: the images (layout, channels, shape), the codec,
    how the input held its image column (`image`: dtype, and for parquet the serialized Arrow field and its
    position) and its other columns (`columns_schema`: a base64 Arrow schema), the latent model (None
    for modes without one), the source file, and the writer.

    `to_dict` gives the header JSON (keys in this order); `from_dict` reads it, including headers of
    files written before `image` and `columns_schema` existed (None here, and left out by `to_dict`).
    KeyError, TypeError or ValueError when a required key is missing or malformed.
    """

    channels: tuple[str, ...]
    shape: tuple[int, ...]
    codec: CodecConfig
    layout: str | None = None
    channels_known: bool = True
    image: dict[str, Any] | None = None
    columns_schema: str | None = None
    model: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    created_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "layout": self.layout,
            "channels": list(self.channels),
            "channels_known": self.channels_known,
            "shape": list(self.shape),
            "codec": self.codec.to_dict(),
        }
        if self.image is not None:
            d["image"] = self.image
        if self.columns_schema is not None:
            d["columns_schema"] = self.columns_schema
        d["model"] = self.model
        d["source"] = self.source
        d["created_by"] = self.created_by
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PackHeader:
        codec = CodecConfig.from_dict(d["codec"])
        channels = tuple(d["channels"])
        shape = tuple(int(s) for s in d["shape"])
        return cls(
            channels=channels,
            shape=shape,
            codec=codec,
            layout=d.get("layout"),
            channels_known=d.get("channels_known", True),
            image=d.get("image"),
            columns_schema=d.get("columns_schema"),
            # a mode with a model needs its entry: KeyError here, as for the other required keys
            model=d["model"] if codec.uses_model else d.get("model"),
            source=d.get("source", {}),
            created_by=d.get("created_by"),
        )
