"""The e2ecompress codec for zarr v3 arrays (zarr-python >= 3.1): `E2EZarrCodec`, codec name "e2ecompress".

It turns a chunk of jet images into bytes, so it is the array's serializer (an ArrayBytesCodec), not one
of its compressors; its bytes are the frames of `numcodecs_codec.E2ECodec` (same options):

    import zarr
    from e2ecompress.codec.zarr_codec import E2EZarrCodec
    z = zarr.create_array("jets.zarr", shape=(n, 3, 125, 125), chunks=(256, 3, 125, 125), dtype="f4",
                          serializer=E2EZarrCodec(mode="bounded", max_error=0.01), compressors=None)

Arrays are float32 or float64, [N, C, H, W] (or [C, H, W]) with chunks that span all C channels and whole
images. Importing this module registers the codec with zarr, which reading an array needs. zarr is an
optional dependency: nothing else in e2ecompress imports this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.registry import register_codec

from e2ecompress.codec.numcodecs_codec import E2ECodec
from e2ecompress.errors import DecodeError

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

CODEC_NAME = "e2ecompress"
_OPTIONS = ("mode", "quality", "max_error", "predictor", "keep_fraction", "channels", "model")


def _native(dtype: Any) -> np.dtype:
    """The numpy dtype of a zarr data type (zarr >= 3.1 wraps it; 3.0 passes numpy's)."""
    return dtype.to_native_dtype() if hasattr(dtype, "to_native_dtype") else np.dtype(dtype)


@dataclass(frozen=True)
class E2EZarrCodec(ArrayBytesCodec):
    """zarr v3 array-to-bytes codec over `E2ECodec`. Args as E2ECodec's: mode ("physics", the default, |
    "bounded" | "lossless" | "lossy"), quality, max_error, predictor, keep_fraction, channels, model; the
    chunk gives the dtype (float32 or float64, kept) and the image size."""

    is_fixed_size = False

    mode: str
    quality: int | None
    max_error: float | None
    predictor: str
    keep_fraction: float
    channels: tuple[str, ...]
    model: str | None

    def __init__(
        self,
        *,
        mode: str = "physics",
        quality: int | None = None,
        max_error: float | None = None,
        predictor: str = "none",
        keep_fraction: float = 1.0,
        channels: list[str] | tuple[str, ...] = ("ECAL", "HCAL", "Tracks"),
        model: str | None = None,
    ) -> None:
        codec = E2ECodec(
            mode=mode,
            quality=quality,
            max_error=max_error,
            predictor=predictor,
            keep_fraction=keep_fraction,
            channels=channels,
            model=model,
        )
        config = codec.get_config()
        for name in _OPTIONS:
            value = config[name]
            object.__setattr__(self, name, tuple(value) if name == "channels" else value)
        object.__setattr__(self, "_codec", codec)  # not a field: equality and hash use the options

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> E2EZarrCodec:
        if not isinstance(data, Mapping) or data.get("name") != CODEC_NAME:
            raise ValueError(f"expected a codec named {CODEC_NAME!r}, got {data!r}")
        config = data.get("configuration") or {}
        if not isinstance(config, Mapping):
            raise TypeError(f"{CODEC_NAME} codec configuration must be a mapping, got {config!r}")
        unknown = sorted(set(config) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"unknown {CODEC_NAME} codec options: {', '.join(map(str, unknown))}")
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        config = {name: getattr(self, name) for name in _OPTIONS}
        config["channels"] = list(self.channels)
        return {"name": CODEC_NAME, "configuration": config}

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        native = _native(dtype)
        if native.kind != "f" or native.itemsize not in (4, 8):
            raise ValueError(f"the {CODEC_NAME} codec codes float32 or float64 arrays, not {native}")
        n = len(self.channels)
        if len(shape) not in (3, 4) or shape[-3] != n:
            raise ValueError(
                f"the {CODEC_NAME} codec needs arrays [N, {n}, H, W] or [{n}, H, W], got shape {tuple(shape)}"
            )
        chunks = getattr(chunk_grid, "chunk_shape", None)
        if chunks is not None and (chunks[-3] != n or tuple(chunks[-2:]) != tuple(shape[-2:])):
            raise ValueError(
                f"the {CODEC_NAME} codec needs chunks of whole images with all {n} channels "
                f"(chunks [..., {n}, {shape[-2]}, {shape[-1]}]), got {tuple(chunks)}"
            )

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        """Frames have data-dependent sizes: zarr's convention for that is NotImplementedError."""
        raise NotImplementedError(f"the {CODEC_NAME} codec has variable-sized output")

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        images = chunk_array.as_numpy_array()
        return chunk_spec.prototype.buffer.from_bytes(self._codec.encode(images))

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        images = self._codec.decode(chunk_bytes.as_numpy_array())
        native = _native(chunk_spec.dtype)
        if images.dtype.kind != native.kind or images.dtype.itemsize != native.itemsize:
            raise DecodeError(f"{CODEC_NAME} chunk holds {images.dtype}, the array is {native}")
        if images.size != int(np.prod(chunk_spec.shape)):
            raise DecodeError(
                f"{CODEC_NAME} chunk holds shape {images.shape}, the array's chunks are {chunk_spec.shape}"
            )
        images = images.astype(native, copy=False).reshape(chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(images)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)


register_codec(CODEC_NAME, E2EZarrCodec)
