"""A numcodecs codec (`id = "e2ecompress"`) so zarr arrays of jet images can use the e2ecompress codec.

    import numcodecs, zarr
    from e2ecompress.codec.numcodecs_codec import E2ECodec
    numcodecs.register_codec(E2ECodec)
    codec = E2ECodec(mode="bounded", max_error=0.01, channels=["ECAL", "HCAL", "Tracks"])
    z = zarr.create_array(..., shape=(n, 3, 125, 125), chunks=(256, 3, 125, 125), dtype="f4",
                          compressors=[codec])      # zarr v3; v2: compressor=codec

A chunk of images [B, C, H, W] (or one image [C, H, W]) float32 is coded by `ImageCodec` into a
self-contained frame: b"E2EC" | u8 version | u32 JSON length | JSON (shape, stream names and sizes) |
the streams | u32 CRC32C of everything before it. Decoding checks the CRC and raises DecodeError.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from e2ecompress import _core
from e2ecompress.codec.image import CodecConfig, ImageCodec
from e2ecompress.errors import DecodeError

try:  # numcodecs is optional: without it the class still works standalone
    from numcodecs.abc import Codec as _Base
except ImportError:  # pragma: no cover - exercised only without numcodecs
    _Base = object

FRAME_MAGIC = b"E2EC"
FRAME_VERSION = 1


class E2ECodec(_Base):
    """numcodecs-compatible codec over `ImageCodec`.

    Args: mode ("lossy" | "bounded" | "lossless"), quality, max_error, predictor, keep_fraction (see
    CodecConfig), channels (names, in image order), model (latent model name or directory, for modes
    that use one).
    """

    codec_id = "e2ecompress"

    def __init__(
        self,
        mode: str = "bounded",
        quality: int | None = None,
        max_error: float | None = None,
        predictor: str = "none",
        keep_fraction: float = 1.0,
        channels: list[str] | tuple[str, ...] = ("ECAL", "HCAL", "Tracks"),
        model: str | None = None,
    ):
        self.config = CodecConfig(
            mode=mode, quality=quality, max_error=max_error, predictor=predictor, keep_fraction=keep_fraction
        )
        self.channels = tuple(channels)
        self.model = model
        self._codecs: dict[tuple[int, int], ImageCodec] = {}

    def get_config(self) -> dict[str, Any]:
        c = self.config
        return {
            "id": self.codec_id,
            "mode": c.mode,
            "quality": c.quality,
            "max_error": c.max_error,
            "predictor": c.predictor,
            "keep_fraction": c.keep_fraction,
            "channels": list(self.channels),
            "model": self.model,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> E2ECodec:
        config = dict(config)
        config.pop("id", None)
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"E2ECodec({args})"

    def _codec(self, size: tuple[int, int]) -> ImageCodec:
        if size not in self._codecs:
            latent = None
            if self.config.uses_model:
                from e2ecompress.api import DEFAULT_MODEL, _load_latent

                latent = _load_latent(self.model or DEFAULT_MODEL)
            self._codecs[size] = ImageCodec(self.config, self.channels, size, latent)
        return self._codecs[size]

    def encode(self, buf) -> bytes:
        arr = np.ascontiguousarray(np.asarray(buf), dtype=np.float32)
        shape = arr.shape
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1] != len(self.channels):
            raise ValueError(f"expected images [B, {len(self.channels)}, H, W] or [C, H, W], got {shape}")
        if not np.isfinite(arr).all():
            raise ValueError("images contain NaN or inf")
        streams, _ = self._codec(arr.shape[2:]).encode(arr)
        names = list(streams)
        head = json.dumps({"shape": list(shape), "streams": [[n, len(streams[n])] for n in names]}).encode()
        body = FRAME_MAGIC + struct.pack("<BI", FRAME_VERSION, len(head)) + head
        body += b"".join(streams[n] for n in names)
        return body + struct.pack("<I", _core.crc32c(body))

    def decode(self, buf, out=None):
        data = memoryview(buf).cast("B")
        if len(data) < 13 or bytes(data[:4]) != FRAME_MAGIC:
            raise DecodeError("e2ecompress frame: bad magic or too short")
        if struct.unpack("<I", data[-4:])[0] != _core.crc32c(data[:-4]):
            raise DecodeError("e2ecompress frame: CRC32C mismatch (corrupt)")
        version, hlen = struct.unpack("<BI", data[4:9])
        if version != FRAME_VERSION or 9 + hlen > len(data) - 4:
            raise DecodeError(f"e2ecompress frame: bad version {version} or header length")
        try:
            head = json.loads(bytes(data[9 : 9 + hlen]))
            shape = tuple(int(s) for s in head["shape"])
            pos, streams = 9 + hlen, {}
            for name, size in head["streams"]:
                streams[str(name)] = bytes(data[pos : pos + int(size)])
                pos += int(size)
        except (ValueError, KeyError, TypeError) as e:
            raise DecodeError(f"e2ecompress frame: bad header ({e})") from None
        if pos != len(data) - 4 or len(shape) not in (3, 4):
            raise DecodeError("e2ecompress frame: stream sizes do not match the frame")
        n = 1 if len(shape) == 3 else shape[0]
        images = self._codec(shape[-2:]).decode(streams, n).reshape(shape)
        if out is not None:
            np.copyto(np.asarray(out).reshape(shape), images)
            return out
        return images
