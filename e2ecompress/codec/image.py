"""The image codec: one chunk of jet images <-> named byte streams (what an .e2ez chunk holds).

Modes (`CodecConfig.mode`):

- "lossy": pixel occupancy exact (zeros stay zeros, `sparse`), values from the MAE latent codec
  (`latent.LatentCodec`: encoder -> bottleneck -> quantized symbols -> rANS; decoder -> prediction), at a
  quality level; `keep_fraction` < 1 codes only that share of the occupied patches and lets the decoder
  inpaint the rest.
- "bounded": occupancy exact plus values quantized with step 2 * max_error * (1 - 2**-7) under a
  neighbour predictor, optionally on top of the latent prediction (`predictor="model"`): |x - x'| <= EPS.
- "lossless": occupancy plus the exact float32 values (bit patterns under the same predictors).

Streams of a chunk (all optional-empty): "planes" (per jet and channel, FULL or the block offset),
"c{i}.{kind}.{n,g,v}" for channel i and plane kind "px" (pixels) or "blk" (block grid), "latent".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from e2ecompress.codec import sparse
from e2ecompress.codec.intcode import decode_ints, encode_ints
from e2ecompress.errors import DecodeError, InputError

MODES = ("lossy", "bounded", "lossless")
PREDICTORS = ("none", "model")
STEP_MARGIN = 2.0**-7  # the step is 2 * EPS * (1 - margin): room for float32 rounding of the output
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

    @property
    def step(self) -> float:
        return 2.0 * float(self.max_error) * (1.0 - STEP_MARGIN)

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
        step = config.step if config.mode == "bounded" else 0.0
        self._coding = sparse.ValueCoding(config.mode, step)

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
        flat = out.reshape(out.shape[0], out.shape[1], -1)
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
        codes = self._split(images)
        streams: dict[str, bytes] = {"planes": encode_ints(codes.ravel())}
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
                pid, idx = sparse.occupied_cells(planes)
                cells = sparse.CellSet(pid, idx, geom[1])
                prefix = f"c{c}.{kind}."
                streams[prefix + "n"], streams[prefix + "g"] = sparse.encode_occupancy(pid, idx, len(planes))
                base = self._base(pred, c, kind, sel, codes, cells)
                if self.config.mode == "lossy":
                    rec = base.astype(np.float32)
                else:
                    x = planes.reshape(len(planes), geom[0] * geom[1])[pid, idx]
                    streams[prefix + "v"], rec = sparse.encode_values(cells, x, base, self._coding)
                if out is not None:
                    self._scatter(out, rec, cells, c, kind, sel, codes)
        return streams, out

    def decode(self, streams: Mapping[str, bytes], n_jets: int) -> np.ndarray:
        """Streams of a chunk of n_jets -> images [n_jets, C, H, W] float32; DecodeError if corrupt."""
        C = len(self.channels)
        H, W = self.image_size
        codes = decode_ints(self._get(streams, "planes"), n_jets * C).reshape(n_jets, C)
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
                rec = sparse.decode_values(self._get(streams, f"c{c}.{kind}.v"), cells, base, self._coding)
            self._scatter(out, rec, cells, c, kind, sel, codes)
        return out

    @staticmethod
    def _get(streams: Mapping[str, bytes], name: str) -> bytes:
        try:
            return streams[name]
        except KeyError:
            raise DecodeError(f"chunk has no {name!r} stream") from None
