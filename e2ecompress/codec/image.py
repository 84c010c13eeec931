"""The image codec: one chunk of jet images <-> named byte streams (what an .e2ez chunk holds).

Modes (`CodecConfig.mode`):

- "lossy": pixel occupancy exact (zeros stay zeros, `sparse`), values from the MAE latent codec
  (`latent.LatentCodec`: encoder -> bottleneck -> quantized symbols -> rANS; decoder -> prediction), at a
  quality level; `keep_fraction` < 1 codes only that share of the occupied patches and lets the decoder
  inpaint the rest.
- "bounded": occupancy exact plus values quantized under a neighbour predictor, optionally on top of the
  latent prediction (`predictor="model"`): |x - x'| <= EPS for every pixel. The step of a chunk is
  2 EPS (1 - 2**-8) - 2 ulp(max|x| + EPS) (stored in its "step" stream), so the float32 output stays within
  EPS. Zeros stay zeros; a non-zero pixel smaller than about EPS may decode to 0 (within the bound).
- "lossless": occupancy (of the bit patterns: -0.0 is kept) plus the exact float32 values.

Streams of a chunk (all optional-empty): "planes" (per jet and channel, FULL or the block offset),
"c{i}.{kind}.{n,g,v}" for channel i and plane kind "px" (pixels) or "blk" (block grid), "latent", "step".
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from e2ecompress.codec import sparse
from e2ecompress.codec.intcode import decode_ints, encode_ints
from e2ecompress.errors import DecodeError, E2EError, InputError

MODES = ("lossy", "bounded", "lossless")
PREDICTORS = ("none", "model")
STEP_MARGIN = 2.0**-8  # relative room under the bound for the prediction's float rounding (model predictor)
DEFAULT_BLOCKS = {"HCAL": 5}


@dataclass(frozen=True)
class CodecConfig:
    """What a file was packed with; stored in the .e2ez header."""

    mode: str = "lossy"
    quality: int | None = None
    max_error: float | None = None
    predictor: str = "none"
    keep_fraction: float = 1.0
    blocks: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_BLOCKS))

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"predictor must be one of {', '.join(PREDICTORS)}, got {self.predictor!r}")
        if self.mode == "bounded":
            eps = self.max_error
            if eps is None or not math.isfinite(eps) or eps <= 0:
                raise ValueError(f"max_error must be a positive number, got {eps}")
        if self.mode == "lossy" and self.quality is None:
            raise ValueError("lossy mode needs a quality level")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}")

    @property
    def uses_model(self) -> bool:
        return self.mode == "lossy" or (self.mode == "bounded" and self.predictor == "model")

    def step_for(self, max_abs: float) -> float:
        """The quantization step of a chunk whose largest |value| is max_abs: 2 EPS (1 - margin) less the
        float32 spacing there, so that after rounding the output to float32 every pixel is within EPS."""
        eps = float(self.max_error)
        ulp = float(np.spacing(np.float32(max_abs + eps)))
        return 2.0 * eps * (1.0 - STEP_MARGIN) - 2.0 * ulp

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks"] = dict(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CodecConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _patch_occupancy(images: np.ndarray, patch_size: int) -> np.ndarray:
    """[B, C, H, W] -> bool [B, L]: patches holding a non-zero pixel (what the latent codec codes)."""
    import torch

    from e2ecompress import ops

    occ, _ = ops.patch_occupancy(torch.from_numpy(np.ascontiguousarray(images, np.float32)), patch_size)
    return occ.numpy()


class ImageCodec:
    """Encode / decode chunks of images [B, C, H, W] float32 under a CodecConfig (+ a LatentCodec if used)."""

    def __init__(
        self, config: CodecConfig, channels: Sequence[str], image_size: tuple[int, int], latent=None
    ):
        self.config = config
        self.channels = tuple(channels)
        self.image_size = tuple(image_size)
        if config.uses_model and latent is None:
            raise ValueError(f"{config.mode} mode with predictor {config.predictor!r} needs a latent model")
        if latent is not None and tuple(latent.channels) != self.channels:
            raise InputError(
                getattr(latent, "path", None),
                f"model channels {list(latent.channels)} do not match the data's {list(self.channels)}",
            )
        if config.mode == "lossy" and latent is not None and config.quality not in latent.levels:
            raise ValueError(f"quality must be one of {sorted(latent.levels)}, got {config.quality}")
        self.latent = latent if config.uses_model else None
        self.blocks = sparse.channel_blocks(self.channels, config.blocks)

    @property
    def level(self) -> int:
        if self.config.mode == "lossy":
            return int(self.config.quality)
        return max(self.latent.levels)  # bounded + model: the finest latent level

    # -----------------------------------------------------------------------------------------------
    def _split(self, images: np.ndarray) -> np.ndarray:
        """-> plane codes [B, C]: FULL, or the block offset of a block-constant plane."""
        B, C = images.shape[:2]
        codes = np.full((B, C), sparse.FULL, np.int64)
        for c, k in enumerate(self.blocks):
            if k:
                codes[:, c] = sparse.find_block_offsets(images[:, c], k)
        return codes

    def _kinds(self, c: int, codes: np.ndarray):
        """(kind, selector of the jets, plane geometry (h, w)) of channel c's plane kinds."""
        k = self.blocks[c]
        H, W = self.image_size
        yield "px", codes[:, c] == sparse.FULL, (H, W)
        if k:
            g = sparse.block_grid_size(H, k), sparse.block_grid_size(W, k)
            yield "blk", codes[:, c] != sparse.FULL, g

    def _planes(
        self, images: np.ndarray, c: int, kind: str, sel: np.ndarray, codes: np.ndarray
    ) -> np.ndarray:
        planes = images[:, c] if sel.all() else images[sel, c]
        return sparse.to_blocks(planes, codes[sel, c], self.blocks[c]) if kind == "blk" else planes

    def _scatter(self, out: np.ndarray, values, cells, c, kind, sel, codes) -> None:
        """Write values at the cells of one plane kind into channel c of out [B, C, H, W]."""
        flat = out.reshape(out.shape[0], out.shape[1], out.shape[2] * out.shape[3])
        jets = np.flatnonzero(sel)
        if kind == "px":
            flat[jets[cells.plane], c, cells.index] = values
            return
        plane, pix, src = sparse.expand_blocks(cells, codes[sel, c], self.blocks[c], self.image_size)
        flat[jets[plane], c, pix] = values[src]

    def _base(self, pred: np.ndarray | None, c, kind, sel, codes, cells: sparse.CellSet):
        """The model prediction at the cells (block means for block planes), or None."""
        if pred is None:
            return None
        planes = pred[sel, c]
        if kind == "blk":
            k = self.blocks[c]
            planes = sparse.to_blocks(sparse.block_mean(planes, codes[sel, c], k), codes[sel, c], k)
        return planes.reshape(len(planes), planes.shape[1] * planes.shape[2])[cells.plane, cells.index]

    def encode(self, images: np.ndarray, decoded: bool = True) -> tuple[dict[str, bytes], np.ndarray | None]:
        """images [B, C, H, W] float32 -> (streams, the images the decoder will produce, or None when
        decoded=False, which saves building them)."""
        images = np.ascontiguousarray(images, np.float32)
        key = images.view(np.int32) if self.config.mode == "lossless" else images  # lossless: -0.0 is kept
        codes = self._split(key)
        streams: dict[str, bytes] = {"planes": encode_ints(codes.ravel())}
        coding = sparse.ValueCoding(self.config.mode)
        if self.config.mode == "bounded":
            max_abs = float(np.max(np.abs(images))) if images.size else 0.0
            step = self.config.step_for(max_abs)
            if not step > 0.5 * float(self.config.max_error):
                raise E2EError(
                    f"max error {self.config.max_error} is too small for float32 values up to {max_abs:.4g}; "
                    "use a larger one or lossless mode"
                )
            coding = sparse.ValueCoding("bounded", step)
            streams["step"] = struct.pack("<d", step)
        pred = None
        if self.latent is not None:
            keep = None
            if self.config.keep_fraction < 1.0:
                occ = _patch_occupancy(images, self.latent.patch_size)
                keep = self.latent.default_keep(occ, self.config.keep_fraction)
            sym = self.latent.encode(images, self.level, keep)
            streams["latent"] = self.latent.entropy_encode(sym, self.level)
            pred = self.latent.decode(sym.cls, sym.tokens, sym.occ, sym.keep, self.level)
        out = np.zeros_like(images) if decoded else None
        for c in range(len(self.channels)):
            for kind, sel, geom in self._kinds(c, codes):
                planes = self._planes(images, c, kind, sel, codes)
                occupied = planes if key is images else self._planes(key, c, kind, sel, codes)
                pid, idx = sparse.occupied_cells(occupied)
                cells = sparse.CellSet(pid, idx, geom[1])
                prefix = f"c{c}.{kind}."
                streams[prefix + "n"], streams[prefix + "g"] = sparse.encode_occupancy(pid, idx, len(planes))
                base = self._base(pred, c, kind, sel, codes, cells)
                if self.config.mode == "lossy":
                    rec = base.astype(np.float32)
                else:
                    x = planes.reshape(len(planes), geom[0] * geom[1])[pid, idx]
                    streams[prefix + "v"], rec = sparse.encode_values(cells, x, base, coding)
                if out is not None:
                    self._scatter(out, rec, cells, c, kind, sel, codes)
        return streams, out

    def decode(self, streams: Mapping[str, bytes], n_jets: int) -> np.ndarray:
        """Streams of a chunk of n_jets -> images [n_jets, C, H, W] float32; DecodeError if corrupt."""
        C = len(self.channels)
        H, W = self.image_size
        codes = decode_ints(self._get(streams, "planes"), n_jets * C).reshape(n_jets, C)
        coding = sparse.ValueCoding(self.config.mode)
        if self.config.mode == "bounded":
            raw = self._get(streams, "step")
            step = struct.unpack("<d", raw)[0] if len(raw) == 8 else math.nan
            if not 0.0 < step <= 2.0 * float(self.config.max_error):
                raise DecodeError("step: missing or outside (0, 2 max_error]")
            coding = sparse.ValueCoding("bounded", step)
        for c, k in enumerate(self.blocks):
            bad = (codes[:, c] != sparse.FULL) & ((codes[:, c] < 0) | (codes[:, c] >= k * k))
            if bad.any():
                raise DecodeError("planes: bad plane code")
        occ_img = np.zeros((n_jets, C, H, W), np.float32) if self.latent is not None else None
        layouts = []
        for c in range(C):
            for kind, sel, geom in self._kinds(c, codes):
                prefix = f"c{c}.{kind}."
                names = [prefix + "n", prefix + "g"]
                pid, idx = sparse.decode_occupancy(
                    [self._get(streams, s) for s in names], int(sel.sum()), geom[0] * geom[1]
                )
                cells = sparse.CellSet(pid, idx, geom[1])
                if occ_img is not None:
                    self._scatter(occ_img, np.ones(len(idx), np.float32), cells, c, kind, sel, codes)
                elif kind == "blk":  # check the cells lie inside the image before decoding values
                    sparse.expand_blocks(cells, codes[sel, c], self.blocks[c], self.image_size)
                layouts.append((c, kind, sel, geom, cells))
        pred = None
        if self.latent is not None:
            pocc = _patch_occupancy(occ_img, self.latent.patch_size)
            keep = pocc
            if self.config.keep_fraction < 1.0:
                keep = self.latent.default_keep(pocc, self.config.keep_fraction)
            sym = self.latent.entropy_decode(self._get(streams, "latent"), pocc, keep, n_jets, self.level)
            pred = self.latent.decode(sym.cls, sym.tokens, pocc, keep, self.level)
        out = np.zeros((n_jets, C, H, W), np.float32)
        for c, kind, sel, _geom, cells in layouts:
            base = self._base(pred, c, kind, sel, codes, cells)
            if self.config.mode == "lossy":
                rec = base.astype(np.float32)
            else:
                rec = sparse.decode_values(self._get(streams, f"c{c}.{kind}.v"), cells, base, coding)
            self._scatter(out, rec, cells, c, kind, sel, codes)
        return out

    @staticmethod
    def _get(streams: Mapping[str, bytes], name: str) -> bytes:
        try:
            return streams[name]
        except KeyError:
            raise DecodeError(f"chunk has no {name!r} stream") from None
