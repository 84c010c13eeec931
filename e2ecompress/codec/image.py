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
- "lossless": occupancy (of the bit patterns: -0.0 is kept) plus the exact float32 values. A float64
  chunk is coded as its float32 rounding plus an "f64" stream holding, for every pixel whose float64 bit
  pattern differs from the widened float32 one, its position and the XOR of the two patterns (empty when
  the chunk is float32-exact, the usual case); its presence makes `decompress` return float64.
- "physics": the physics levels (`quality` 1..5, `physics_lossy`): positions exact inside a jet cone about
  the window centre, values there within a relative bound and rescaled so that per-jet cone sums per
  channel are exact within their quantization; outside it counts and coarse values, positions drawn again
  by the decoder. Its own streams ("phys", "planes", "c{i}.{kind}.*"; see `physics_lossy`).

Streams of a chunk (all optional-empty): "planes" (per jet and channel, FULL or the block offset),
"c{i}.{kind}.{o,v}" for channel i and plane kind "px" (pixels) or "blk" (block grid) — "o" the occupied
cells, context-coded (`ctxocc`; older chunks have count and gap streams "n", "g" instead), "v" the
values —, "latent", "step",
"f64", "blocks" (per channel the size k of the k x k blocks its planes may be constant on, found in the
chunk's data by `sparse.detect_blocks`, 0 for none; never from a channel's name).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from e2ecompress.codec import ctxocc, physics_lossy, sparse
from e2ecompress.codec.intcode import compress_ints, decompress_ints
from e2ecompress.errors import DecodeError, E2EError, InputError

MODES = ("lossy", "bounded", "lossless", "physics")
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
    # block sizes by channel name; None (the default): found in each chunk's data. Either way the sizes
    # used are stored per chunk (the "blocks" stream); chunks written before that stream existed decode
    # with these names, or DEFAULT_BLOCKS when None.
    blocks: Mapping[str, int] | None = None
    # bounded mode: every non-zero pixel decodes non-zero and a block (tower) is within max_error as a whole
    unbiased: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"predictor must be one of {', '.join(PREDICTORS)}, got {self.predictor!r}")
        if self.mode == "bounded":
            eps = self.max_error
            if eps is None or not math.isfinite(eps) or eps <= 0:
                raise ValueError(f"max_error must be a positive number, got {eps}")
        if self.unbiased and self.mode != "bounded":
            raise ValueError("unbiased applies to the bounded mode (max_error) only")
        if self.mode == "lossy" and self.quality is None:
            raise ValueError("lossy mode needs a quality level")
        if self.mode == "physics":
            if self.quality is None:
                object.__setattr__(self, "quality", physics_lossy.DEFAULT_LEVEL)
            if self.quality not in physics_lossy.LEVELS or isinstance(self.quality, bool):
                raise ValueError(f"physics quality must be a level from 1 to 5, got {self.quality!r}")
            if self.predictor != "none" or self.keep_fraction != 1.0:
                raise ValueError("the physics levels take no predictor or keep_fraction (latent options)")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}")

    @property
    def uses_model(self) -> bool:
        return self.mode == "lossy" or (self.mode == "bounded" and self.predictor == "model")

    def step_for(self, max_abs: float) -> float:
        """The quantization step of a chunk whose largest |value| is max_abs: 2 EPS (1 - margin) less the
        float32 spacing there, so that after rounding the output to float32 every pixel is within EPS."""
        eps = float(self.max_error)
        top = max_abs + eps
        if not top < float(np.finfo(np.float32).max):
            return math.nan  # decoded values could round to inf: no step works
        ulp = float(np.spacing(np.float32(top)))
        return 2.0 * eps * (1.0 - STEP_MARGIN) - 2.0 * ulp

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks"] = None if self.blocks is None else dict(self.blocks)
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
    """Compress / decompress chunks of images [B, C, H, W] float32 under a CodecConfig (+ a LatentCodec if
    used)."""

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
        self.physics = None
        if config.mode == "physics":
            level = int(config.quality)
            self.physics = physics_lossy.PhysicsCodec(level, len(self.channels), self.image_size)

    @property
    def level(self) -> int:
        if self.config.mode == "lossy":
            return int(self.config.quality)
        return max(self.latent.levels)  # bounded + model: the finest latent level

    # -----------------------------------------------------------------------------------------------
    def _split(self, images: np.ndarray, ks: Sequence[int]) -> np.ndarray:
        """-> plane codes [B, C]: FULL, or the block offset of a block-constant plane."""
        B, C = images.shape[:2]
        codes = np.full((B, C), sparse.FULL, np.int64)
        for c, k in enumerate(ks):
            if k:
                codes[:, c] = sparse.find_block_offsets(images[:, c], k)
        return codes

    def _kinds(self, c: int, codes: np.ndarray, ks: Sequence[int]):
        """(kind, selector of the jets, plane geometry (h, w)) of channel c's plane kinds."""
        k = ks[c]
        H, W = self.image_size
        yield "px", codes[:, c] == sparse.FULL, (H, W)
        if k:
            g = sparse.block_grid_size(H, k), sparse.block_grid_size(W, k)
            yield "blk", codes[:, c] != sparse.FULL, g

    def _planes(
        self, images: np.ndarray, c: int, kind: str, sel: np.ndarray, codes: np.ndarray, ks: Sequence[int]
    ) -> np.ndarray:
        planes = images[:, c] if sel.all() else images[sel, c]
        return sparse.to_blocks(planes, codes[sel, c], ks[c]) if kind == "blk" else planes

    def _scatter(self, out: np.ndarray, values, cells, c, kind, sel, codes, ks) -> None:
        """Write values at the cells of one plane kind into channel c of out [B, C, H, W]."""
        C, H, W = out.shape[1:]
        flat = out.reshape(-1)  # one linear index: much faster than a 3-D fancy index
        jets = np.flatnonzero(sel)
        if kind == "px":
            flat[(jets[cells.plane] * C + c) * (H * W) + cells.index] = values
            return
        plane, pix, src = sparse.expand_blocks(cells, codes[sel, c], ks[c], self.image_size)
        flat[(jets[plane] * C + c) * (H * W) + pix] = values[src]

    def _base(self, pred: np.ndarray | None, c, kind, sel, codes, ks, cells: sparse.CellSet):
        """The model prediction at the cells (block means for block planes), or None."""
        if pred is None:
            return None
        planes = pred[sel, c]
        if kind == "blk":
            k = ks[c]
            planes = sparse.to_blocks(sparse.block_mean(planes, codes[sel, c], k), codes[sel, c], k)
        return planes.reshape(len(planes), planes.shape[1] * planes.shape[2])[cells.plane, cells.index]

    def compress(
        self, images: np.ndarray, decoded: bool = True
    ) -> tuple[dict[str, bytes], np.ndarray | None]:
        """images [B, C, H, W] float32 -> (streams, the images the decoder will produce, or None when
        decoded=False, which saves building them). In lossless mode float64 images are coded exactly
        (and decode to float64); the other modes code float32."""
        if self.physics is not None:
            return self.physics.compress(images, decoded)
        if self.config.mode == "lossless" and np.asarray(images).dtype == np.float64:
            wide = np.ascontiguousarray(images)
            with np.errstate(over="ignore"):
                narrow = wide.astype(np.float32)
            streams, out = self.compress(narrow, decoded)
            streams["f64"] = compress_f64_residual(wide, narrow)
            return streams, None if out is None else wide.copy()
        images = np.ascontiguousarray(images, np.float32)
        key = images.view(np.int32) if self.config.mode == "lossless" else images  # lossless: -0.0 is kept
        if self.config.blocks is None:
            ks = sparse.detect_blocks(key)
        else:
            ks = sparse.channel_blocks(self.channels, self.config.blocks)
        codes = self._split(key, ks)
        streams: dict[str, bytes] = {
            "blocks": compress_ints(np.asarray(ks)),
            "planes": compress_ints(codes.ravel()),
        }
        coding = sparse.ValueCoding(self.config.mode)
        if self.config.mode == "bounded":
            max_abs = max(float(images.max()), -float(images.min())) if images.size else 0.0
            step = self.config.step_for(max_abs)
            if not step > 0.5 * float(self.config.max_error):
                raise E2EError(
                    f"max error {self.config.max_error:g} does not fit float32 values up to {max_abs:.4g} "
                    "(too small for their precision, or the bound reaches the float32 range); "
                    "use another max error or lossless mode"
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
            streams["latent"] = self.latent.compress(sym, self.level)
            pred = self.latent.decode(sym.cls, sym.tokens, sym.occ, sym.keep, self.level)
        out = np.zeros_like(images) if decoded else None
        previous = None  # occupancy [B, H, W] of the previous channel when it has pixel planes only
        for c in range(len(self.channels)):
            for kind, sel, geom in self._kinds(c, codes, ks):
                planes = self._planes(images, c, kind, sel, codes, ks)
                occupied = planes if key is images else self._planes(key, c, kind, sel, codes, ks)
                pid, idx = sparse.occupied_cells(occupied)
                cells = sparse.CellSet(pid, idx, geom[1], geom[0])
                prefix = f"c{c}.{kind}."
                streams[prefix + "o"] = ctxocc.compress_planes(occupied)
                if previous is not None and not ks[c]:  # channels that share positions (track channels)
                    shared = ctxocc.compress_planes(occupied, ctxocc.near_context(previous))
                    if len(shared) < len(streams[prefix + "o"]):
                        streams[prefix + "o"] = shared
                base = self._base(pred, c, kind, sel, codes, ks, cells)
                if self.config.mode == "lossy":
                    rec = base.astype(np.float32)
                else:
                    x = planes.reshape(len(planes), geom[0] * geom[1])[pid, idx]
                    kc = self._value_coding(coding, kind, ks[c])
                    streams[prefix + "v"], rec = sparse.compress_values(cells, x, base, kc)
                    if self.config.unbiased:
                        streams[prefix + "z"], rec = keep_nonzero_compress(x, rec, kc.step)
                if out is not None:
                    self._scatter(out, rec, cells, c, kind, sel, codes, ks)
            previous = None if ks[c] else occupied != 0
        return streams, out

    def decompress(
        self, streams: Mapping[str, bytes], n_jets: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Streams of a chunk of n_jets -> images [n_jets, C, H, W] float32 (float64 for a lossless float64
        chunk); DecodeError if corrupt. `out`: a float32 array of that shape to decode into (reused
        buffers save page faults)."""
        C = len(self.channels)
        H, W = self.image_size
        if self.physics is not None:
            if out is not None and (out.shape != (n_jets, C, H, W) or out.dtype != np.float32):
                raise ValueError(f"out must be float32 {(n_jets, C, H, W)}, got {out.dtype} {out.shape}")
            return self.physics.decompress(streams, n_jets, out)
        ks = self._block_sizes(streams)
        codes = decompress_ints(self._get(streams, "planes"), n_jets * C).reshape(n_jets, C)
        coding = sparse.ValueCoding(self.config.mode)
        if self.config.mode == "bounded":
            raw = self._get(streams, "step")
            step = struct.unpack("<d", raw)[0] if len(raw) == 8 else math.nan
            if not 0.0 < step <= 2.0 * float(self.config.max_error):
                raise DecodeError("step: missing or outside (0, 2 max_error]")
            coding = sparse.ValueCoding("bounded", step)
        for c, k in enumerate(ks):
            bad = (codes[:, c] != sparse.FULL) & ((codes[:, c] < 0) | (codes[:, c] >= k * k))
            if bad.any():
                raise DecodeError("planes: bad plane code")
        occ_img = np.zeros((n_jets, C, H, W), np.float32) if self.latent is not None else None
        layouts = []
        previous = None
        for c in range(C):
            for kind, sel, geom in self._kinds(c, codes, ks):
                prefix = f"c{c}.{kind}."
                pid, idx = self._occupancy(streams, prefix, int(sel.sum()), geom, previous)
                cells = sparse.CellSet(pid, idx, geom[1], geom[0])
                if occ_img is not None:
                    self._scatter(occ_img, np.ones(len(idx), np.float32), cells, c, kind, sel, codes, ks)
                elif kind == "blk":  # check the cells lie inside the image before decoding values
                    sparse.expand_blocks(cells, codes[sel, c], ks[c], self.image_size)
                layouts.append((c, kind, sel, geom, cells))
            previous = None
            if not ks[c]:
                previous = np.zeros((n_jets, H * W), bool)
                previous[pid, idx] = True
                previous = previous.reshape(n_jets, H, W)
        pred = None
        if self.latent is not None:
            pocc = _patch_occupancy(occ_img, self.latent.patch_size)
            keep = pocc
            if self.config.keep_fraction < 1.0:
                keep = self.latent.default_keep(pocc, self.config.keep_fraction)
            sym = self.latent.decompress(self._get(streams, "latent"), pocc, keep, n_jets, self.level)
            pred = self.latent.decode(sym.cls, sym.tokens, pocc, keep, self.level)
        if out is None:
            out = np.zeros((n_jets, C, H, W), np.float32)
        else:
            if out.shape != (n_jets, C, H, W) or out.dtype != np.float32:
                raise ValueError(f"out must be float32 {(n_jets, C, H, W)}, got {out.dtype} {out.shape}")
            out.fill(0)
        for c, kind, sel, _geom, cells in layouts:
            base = self._base(pred, c, kind, sel, codes, ks, cells)
            if self.config.mode == "lossy":
                rec = base.astype(np.float32)
            else:
                kc = self._value_coding(coding, kind, ks[c])
                rec = sparse.decompress_values(self._get(streams, f"c{c}.{kind}.v"), cells, base, kc)
                if self.config.unbiased:
                    rec = keep_nonzero_decompress(self._get(streams, f"c{c}.{kind}.z"), rec, kc.step)
            self._scatter(out, rec, cells, c, kind, sel, codes, ks)
        if "f64" in streams:
            return decompress_f64_residual(streams["f64"], out)
        return out

    def _occupancy(
        self, streams: Mapping[str, bytes], prefix: str, n: int, geom: tuple[int, int], previous=None
    ):
        """(plane, index) of the occupied cells of n planes: the context-coded "o" stream (coded with the
        previous channel's occupancy as context when that was smaller: channels sharing positions), or in
        chunks written before it the count and gap streams "n", "g"."""
        if prefix + "o" in streams or prefix + "n" not in streams:
            data = self._get(streams, prefix + "o")
            context = None
            if ctxocc.uses_context(data):
                if previous is None:
                    raise DecodeError(f"{prefix}o: coded with a context this chunk does not have")
                context = ctxocc.near_context(previous)
            occ = ctxocc.decompress_planes(data, n, *geom, context)
            return sparse.occupied_cells(occ)
        names = [prefix + "n", prefix + "g"]
        return sparse.decompress_occupancy([self._get(streams, s) for s in names], n, geom[0] * geom[1])

    def _value_coding(self, coding: sparse.ValueCoding, kind: str, k: int) -> sparse.ValueCoding:
        """unbiased: a block's value is one crystal's share of the block, so its step is divided by the
        block's k * k crystals to bound the block's whole energy by max_error."""
        if self.config.unbiased and kind == "blk":
            return sparse.ValueCoding("bounded", coding.step / (k * k))
        return coding

    def _block_sizes(self, streams: Mapping[str, bytes]) -> list[int]:
        """Block size per channel of a chunk: the "blocks" stream (found in the data when packed), or for
        files written before it existed the configured sizes by channel name."""
        if "blocks" not in streams:
            legacy = DEFAULT_BLOCKS if self.config.blocks is None else self.config.blocks
            return sparse.channel_blocks(self.channels, legacy)
        ks = decompress_ints(streams["blocks"], len(self.channels))
        if (ks < 0).any() or (ks > sparse.MAX_BLOCK).any():
            raise DecodeError("blocks: block size out of range")
        return [int(k) for k in ks]

    @staticmethod
    def _get(streams: Mapping[str, bytes], name: str) -> bytes:
        try:
            return streams[name]
        except KeyError:
            raise DecodeError(f"chunk has no {name!r} stream") from None


def compress_f64_residual(wide: np.ndarray, narrow: np.ndarray) -> bytes:
    """The "f64" stream: where float64 `wide` differs (bitwise) from float32 `narrow` widened, the flat
    positions (gaps) and the XOR of the bit patterns (low and high 32 bits); b"" when there is none."""
    bits = wide.reshape(-1).view(np.uint64)
    xor = bits ^ narrow.reshape(-1).astype(np.float64).view(np.uint64)
    pos = np.flatnonzero(xor)
    if not pos.size:
        return b""
    x = xor[pos]
    gaps = np.diff(pos, prepend=-1) - 1
    parts = [compress_ints(a.astype(np.int64)) for a in (gaps, x & 0xFFFFFFFF, x >> np.uint64(32))]
    return struct.pack("<QII", pos.size, len(parts[0]), len(parts[1])) + b"".join(parts)


def decompress_f64_residual(data: bytes, narrow: np.ndarray) -> np.ndarray:
    """Inverse of `compress_f64_residual`: float64 images from the decoded float32 ones."""
    wide = narrow.astype(np.float64)
    if not data:
        return wide
    if len(data) < 16:
        raise DecodeError("f64: truncated stream")
    n, la, lb = struct.unpack_from("<QII", data)
    if not 0 < n <= wide.size or 16 + la + lb > len(data):
        raise DecodeError("f64: bad counts")
    view = memoryview(data)
    gaps = decompress_ints(view[16 : 16 + la], n)
    lo = decompress_ints(view[16 + la : 16 + la + lb], n)
    hi = decompress_ints(view[16 + la + lb :], n)
    pos = np.cumsum(gaps + 1) - 1
    if (gaps < 0).any() or pos[-1] >= wide.size or lo.max() > 0xFFFFFFFF or hi.max() > 0xFFFFFFFF:
        raise DecodeError("f64: position or value out of range")
    flat = wide.reshape(-1).view(np.uint64)
    flat[pos] ^= lo.astype(np.uint64) | (hi.astype(np.uint64) << np.uint64(32))
    return wide


def keep_nonzero_compress(x: np.ndarray, rec: np.ndarray, step: float) -> tuple[bytes, np.ndarray]:
    """Occupied cells whose value quantized to zero (|x| <= step / 2) decode to sign(x) * step / 4
    instead, within step / 4 of x and never zero: the "z" stream holds their signs (1 = negative) as
    packed bits, in cell order. -> (stream, rec with those cells replaced)."""
    zero = np.flatnonzero(rec == 0)
    if not zero.size:
        return b"", rec
    negative = x[zero] < 0
    rec = rec.copy()
    rec[zero] = np.where(negative, -step / 4, step / 4).astype(np.float32)
    return np.packbits(negative).tobytes(), rec


def keep_nonzero_decompress(data: bytes, rec: np.ndarray, step: float) -> np.ndarray:
    """Inverse of `keep_nonzero_compress` on the decoded values."""
    zero = np.flatnonzero(rec == 0)
    if len(data) != (zero.size + 7) // 8:
        raise DecodeError(f"z: {len(data)} bytes for {zero.size} signs")
    if not zero.size:
        return rec
    negative = np.unpackbits(np.frombuffer(data, np.uint8), count=zero.size).astype(bool)
    rec = rec.copy()
    rec[zero] = np.where(negative, -step / 4, step / 4).astype(np.float32)
    return rec
