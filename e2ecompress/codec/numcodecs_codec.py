"""A numcodecs codec (`id = "e2ecompress"`) so zarr arrays of jet images can use the e2ecompress codec.

zarr v3 (zarr-python >= 3.1): the codec turns an array chunk into bytes, so it is the array's serializer,
as `e2ecompress.codec.zarr_codec.E2EZarrCodec` (same options, same frames); the chunks must span all
channels and whole images:

    import zarr
    from e2ecompress.codec.zarr_codec import E2EZarrCodec
    z = zarr.create_array("jets.zarr", shape=(n, 3, 125, 125), chunks=(256, 3, 125, 125), dtype="f4",
                          serializer=E2EZarrCodec(mode="bounded", max_error=0.01), compressors=None)
    z[:] = images
    zarr.open_array("jets.zarr")[:10]        # reading needs only `import e2ecompress.codec.zarr_codec`

zarr v2 format (zarr-python 3 with zarr_format=2, or zarr-python 2), with this class as the compressor:

    import zarr
    from e2ecompress.codec.numcodecs_codec import E2ECodec   # importing it registers it with numcodecs
    codec = E2ECodec(mode="bounded", max_error=0.01, channels=["ECAL", "HCAL", "Tracks"])
    z = zarr.create_array("jets.zarr", shape=(n, 3, 125, 125), chunks=(256, 3, 125, 125), dtype="f8",
                          compressors=codec, zarr_format=2)   # zarr-python 2: compressor=codec

Input: a float32 or float64 array of images [B, C, H, W], one image [C, H, W], or any other shape whose
values make whole images [-1, C, H, W] (C = len(channels), (H, W) = image_size); its dtype, shape and
memory order come back from decode. Any other buffer (bytes, bytearray, array.array, arrays of other
dtypes) is taken as raw bytes holding `dtype` values ("<f4" or "<f8") and decodes to images
[-1, C, H, W] of that dtype. Object arrays raise TypeError. float64 is kept: lossless mode codes it
exactly; bounded mode codes its float32 rounding and checks that every decoded pixel is still within
max_error of the float64 input (ValueError if not, which the step's float32 headroom prevents in
practice); lossy and physics modes code the float32 rounding. Decoding returns float64 for such chunks.

A chunk is coded by `ImageCodec` into a self-contained frame: b"E2EC" | u8 version | u32 JSON length |
JSON header | the streams | u32 CRC32C of everything before it. The header holds "shape" (of the decoded
array), "dtype" (its numpy dtype string) and "streams" (names and sizes); version 2 frames also hold
"images" ([B, C, H, W] coded) and "order" ("C" or "F"). Version 1 (float32, C order, [B, C, H, W] or
[C, H, W]) is written whenever it can say enough, so such frames stay readable by older releases.
Decoding checks the CRC and raises DecodeError on a corrupt frame.
"""

from __future__ import annotations

import array
import inspect
import json
import math
import struct
from dataclasses import fields
from typing import Any

import numpy as np

from e2ecompress import _core
from e2ecompress.codec import models
from e2ecompress.codec.image import CodecConfig, ImageCodec
from e2ecompress.errors import DecodeError

try:  # numcodecs is optional: without it the class still works standalone
    from numcodecs.abc import Codec as _Base
    from numcodecs.registry import register_codec as _register
except ImportError:  # pragma: no cover - exercised only without numcodecs
    _Base = object
    _register = None

FRAME_MAGIC = b"E2EC"
FRAME_VERSION = 2  # the newest version written; 1 and 2 are read
DTYPES = ("<f4", "<f8")  # the `dtype` option: how a raw buffer is read
_CODED = {np.dtype(d) for d in ("<f4", ">f4", "<f8", ">f8")}  # dtypes a frame may record


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _as_ndarray(buf) -> np.ndarray:
    """An ndarray view of buf (ndarray, anything exporting the buffer protocol, or an array-like)."""
    if isinstance(buf, str) or (isinstance(buf, array.array) and buf.typecode in "uw"):
        raise TypeError(f"expected an array or a buffer of numbers, got {type(buf).__name__}")
    if isinstance(buf, np.ndarray):
        arr = buf
    else:
        try:
            arr = np.asarray(memoryview(buf))
        except TypeError:
            arr = np.asarray(buf)
        except (ValueError, NotImplementedError) as e:  # buffer formats numpy cannot read
            raise TypeError(f"unsupported buffer {type(buf).__name__}: {e}") from None
        if arr.dtype.hasobject:
            raise TypeError(f"expected an array or a buffer, got {type(buf).__name__}")
    if arr.dtype.hasobject:
        raise TypeError("object arrays are not supported")
    return arr


def _flat_bytes(arr: np.ndarray) -> np.ndarray:
    """The memory of a contiguous array as flat uint8 (C or Fortran order, as it lies)."""
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        raise ValueError("a buffer with contiguous memory is required")
    flat = arr.reshape(-1, order="A")
    if flat.dtype.kind in "Mm":
        flat = flat.view(np.int64)
    return flat.view(np.uint8)


class E2ECodec(_Base):
    """numcodecs-compatible codec over `ImageCodec`.

    Args: mode ("physics", the default as in `api.pack`, | "lossy" | "bounded" | "lossless"), quality (the
    physics level, default 3, or the latent level), max_error, predictor, keep_fraction, unbiased (see
    CodecConfig), channels (names, in image order), model (latent model name or directory, for modes
    that use one), dtype ("<f4" or "<f8": the values in a raw buffer, which has no dtype of its own),
    image_size ((H, W) of the images in a raw buffer or a flat array). Arrays of float32 / float64 keep
    their own dtype, shape and memory order; see the module docstring. float64 in bounded mode is coded
    as float32, and encode checks that every decoded pixel is within max_error of the float64 input.
    """

    codec_id = "e2ecompress"

    def __init__(
        self,
        mode: str = "physics",
        quality: int | None = None,
        max_error: float | None = None,
        predictor: str = "none",
        keep_fraction: float = 1.0,
        channels: list[str] | tuple[str, ...] = ("ECAL", "HCAL", "Tracks"),
        model: str | None = None,
        dtype: str = "<f4",
        image_size: list[int] | tuple[int, int] = (125, 125),
        unbiased: bool = False,
    ):
        self.config = CodecConfig(
            mode=mode,
            quality=quality,
            max_error=max_error,
            predictor=predictor,
            keep_fraction=keep_fraction,
            unbiased=bool(unbiased),
        )
        if isinstance(channels, str) or not channels:
            raise ValueError(f"channels must be a non-empty list of names, got {channels!r}")
        self.channels = tuple(str(c) for c in channels)
        self.model = model
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt is None or dt.str not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.dtype = dt
        size = tuple(image_size) if isinstance(image_size, (list, tuple)) else ()
        if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
            raise ValueError(f"image_size must be two positive integers (H, W), got {image_size!r}")
        self.image_size = (int(size[0]), int(size[1]))
        self._codecs: dict[tuple[int, int], ImageCodec] = {}

    def get_config(self) -> dict[str, Any]:
        """{"id": codec_id, then each argument of __init__ in order}, what from_config takes back: the
        CodecConfig fields from self.config, the others from the attribute of that name (tuples as lists,
        the dtype as its string); unbiased only when set, so configs written before it existed stay the
        same."""
        shared = {f.name for f in fields(CodecConfig)}
        config: dict[str, Any] = {"id": self.codec_id}
        for name in list(inspect.signature(E2ECodec.__init__).parameters)[1:]:  # after self
            value = getattr(self.config if name in shared else self, name)
            if name == "unbiased" and not value:
                continue
            config[name] = value.str if isinstance(value, np.dtype) else _listed(value)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> E2ECodec:
        config = dict(config)
        config.pop("id", None)
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"E2ECodec({args})"

    def _codec(self, size: tuple[int, int]) -> ImageCodec:
        size = (int(size[0]), int(size[1]))
        if size not in self._codecs:
            latent = None
            if self.config.uses_model:
                latent = models.load(self.model or models.DEFAULT_MODEL)
            self._codecs[size] = ImageCodec(self.config, self.channels, size, latent)
        return self._codecs[size]

    # -----------------------------------------------------------------------------------------------
    def _as_images(self, flat: np.ndarray) -> np.ndarray:
        """A flat array -> images [-1, C, H, W] under channels and image_size, or ValueError."""
        C, (H, W) = len(self.channels), self.image_size
        if flat.size % (C * H * W):
            raise ValueError(
                f"cannot read {flat.size} values as images [-1, {C}, {H}, {W}]: "
                "set channels and image_size to match the data"
            )
        return flat.reshape(-1, C, H, W)

    def _prepare(self, buf) -> tuple[np.ndarray, dict[str, Any]]:
        """buf -> (images [B, C, H, W] C-contiguous native float32/float64, what the header records)."""
        arr = _as_ndarray(buf)
        if arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8):
            order = "F" if arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
            head: dict[str, Any] = {"shape": list(arr.shape), "dtype": arr.dtype.str, "order": order}
            if arr.ndim == 4:
                images = arr
            elif arr.ndim == 3:
                images = arr[None]
            else:
                images = self._as_images(np.reshape(arr, -1))
            if images.shape[1] != len(self.channels):
                raise ValueError(
                    f"expected images [B, {len(self.channels)}, H, W] or [C, H, W], got {arr.shape}"
                )
            images = np.ascontiguousarray(images, arr.dtype.newbyteorder("="))
        elif arr.dtype.kind in "fc":
            raise TypeError(f"unsupported dtype {arr.dtype}: images must be float32 or float64")
        else:  # raw bytes (bytes, bytearray, array.array, arrays of other dtypes) holding `dtype` values
            raw = _flat_bytes(arr)
            if raw.size % self.dtype.itemsize:
                raise ValueError(f"a buffer of {raw.size} bytes does not hold whole {self.dtype} values")
            flat = np.array(raw.view(self.dtype), self.dtype.newbyteorder("="))
            head = {"shape": [flat.size], "dtype": self.dtype.str, "order": "C"}
            images = self._as_images(flat)
        head["images"] = list(images.shape)
        return images, head

    def encode(self, buf) -> bytes:
        images, head = self._prepare(buf)
        if not np.isfinite(images).all():
            raise ValueError("images contain NaN or inf")
        codec = self._codec(images.shape[2:])
        if images.dtype == np.float32:
            streams, _ = codec.compress(images, decoded=False)
        elif self.config.mode == "lossless":
            streams, decoded = codec.compress(images)
            same = decoded is not None and decoded.dtype == images.dtype
            if not (same and np.array_equal(decoded.view(np.int64), images.view(np.int64))):
                raise ValueError("this ImageCodec cannot code float64 values exactly; lossless mode failed")
        else:  # bounded / lossy / physics float64: code the float32 rounding
            if float(np.max(np.abs(images), initial=0.0)) > float(np.finfo(np.float32).max):
                raise ValueError("float64 values beyond the float32 range need lossless mode")
            streams, decoded = codec.compress(images.astype(np.float32))
            if self.config.mode == "bounded":
                err = float(np.max(np.abs(decoded - images), initial=0.0))
                if not err <= self.config.max_error:
                    raise ValueError(
                        f"float64 values cannot be kept within max_error {self.config.max_error} through "
                        f"float32 (error {err:.3g}); use a larger max_error or lossless mode"
                    )
        names = list(streams)
        shape = head["shape"]
        version = FRAME_VERSION
        if head["dtype"] == "<f4" and head["order"] == "C" and len(shape) in (3, 4):
            version = 1  # everything a version 1 reader needs to know
            head = {"shape": shape, "dtype": head["dtype"]}
        head["streams"] = [[n, len(streams[n])] for n in names]
        text = json.dumps(head).encode()
        body = FRAME_MAGIC + struct.pack("<BI", version, len(text)) + text
        body += b"".join(streams[n] for n in names)
        return body + struct.pack("<I", _core.crc32c(body))

    # -----------------------------------------------------------------------------------------------
    @staticmethod
    def _frame_bytes(buf) -> memoryview:
        arr = _as_ndarray(buf)
        return memoryview(_flat_bytes(arr))

    def _read_header(self, data: memoryview) -> tuple[dict[str, Any], dict[str, bytes]]:
        if len(data) < 13 or bytes(data[:4]) != FRAME_MAGIC:
            raise DecodeError("e2ecompress frame: bad magic or too short")
        if struct.unpack("<I", data[-4:])[0] != _core.crc32c(data[:-4]):
            raise DecodeError("e2ecompress frame: CRC32C mismatch (corrupt)")
        version, hlen = struct.unpack("<BI", data[4:9])
        if version not in (1, FRAME_VERSION) or 9 + hlen > len(data) - 4:
            raise DecodeError(f"e2ecompress frame: bad version {version} or header length")
        try:
            head = json.loads(bytes(data[9 : 9 + hlen]))
            shape = [int(s) for s in head["shape"]]
            dtype = np.dtype(str(head.get("dtype", "<f4")))
            if version == 1:
                images = shape if len(shape) == 4 else [1, *shape]
                order = "C"
            else:
                images = [int(s) for s in head["images"]]
                order = str(head["order"])
            pos, streams = 9 + hlen, {}
            for name, size in head["streams"]:
                streams[str(name)] = bytes(data[pos : pos + int(size)])
                pos += int(size)
        except (ValueError, KeyError, TypeError) as e:
            raise DecodeError(f"e2ecompress frame: bad header ({e})") from None
        if pos != len(data) - 4:
            raise DecodeError("e2ecompress frame: stream sizes do not match the frame")
        ok = dtype in _CODED and order in ("C", "F") and len(images) == 4 and min(images + shape) >= 0
        if not ok or (version == 1 and len(shape) not in (3, 4)) or math.prod(images) != math.prod(shape):
            raise DecodeError("e2ecompress frame: bad shape, dtype or order in the header")
        if images[1] != len(self.channels):
            raise DecodeError(
                f"e2ecompress frame holds {images[1]} channels, the codec has {len(self.channels)}"
            )
        return {"shape": shape, "dtype": dtype, "order": order, "images": images}, streams

    def stream_sizes(self, buf) -> dict[str, int]:
        """Bytes of each coded stream of a frame (CRC-checked, not decoded): for size budgets."""
        _, streams = self._read_header(self._frame_bytes(buf))
        return {name: len(data) for name, data in streams.items()}

    def decode(self, buf, out=None):
        head, streams = self._read_header(self._frame_bytes(buf))
        B, _, H, W = head["images"]
        images = self._codec((H, W)).decompress(streams, B)
        images = images.astype(head["dtype"], copy=False).reshape(head["shape"])
        if head["order"] == "F":
            images = np.asfortranarray(images)
        if out is None:
            return images
        dst = _as_ndarray(out)
        if not dst.flags.writeable:
            raise ValueError("out is read-only")
        if dst.dtype == images.dtype and dst.shape == images.shape:
            np.copyto(dst, images)
            return out
        target = _flat_bytes(dst)
        if target.size != images.nbytes:
            raise ValueError(f"out holds {target.size} bytes, the frame decodes to {images.nbytes}")
        target[...] = _flat_bytes(images)
        return out


if _register is not None:
    _register(E2ECodec)
