"""Learned latent codec: the pretrained MAE around a quantized per-token bottleneck, and its runtime API.

Model (`LatentAutoencoder`): the MAE encoder runs on every occupied patch (sparse, nothing masked) plus
the cls token; Linear(embed_dim -> latent_dim) maps each occupied token (and, with its own Linear, the cls
token) to a latent z. The decoder maps quantized latents back with Linear(latent_dim -> embed_dim) and
the MAE's decoder_embed; empty patches get the MAE's mask_token, occupied patches whose latent is not
coded (keep False) a learned drop_token, and the MAE decoder predicts every patch in normalized space.

Quantization: symbol = round(z / step). The quality levels scale the grid of one trained model
(`DEFAULT_LEVELS`, the highest level best); steps are powers of two, so z / step is exact. Symbols are entropy
coded with one `EscapeTable` per level for the cls dims and one for the token dims, fitted on training
latents and stored with the weights.

Determinism: a jet's symbols and decoded image do not depend on the other jets of a call. The encoder
runs jets grouped by their occupied-patch count (no padding, no attention mask), and every matmul sees at
least `MIN_ROWS` rows (zero rows or jets are appended): below ~16 rows torch's CPU GEMM takes other
code paths whose rounding differs.

Checkpoint: a directory with model.safetensors (weights + tables "tables.<level>.<cls|tokens>.<freqs|
offsets>", metadata "e2ecompress" = the JSON description) and checkpoint.json (the description, model id =
SHA-256 of model.safetensors, table hashes, training summary).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from torch import nn

from e2ecompress import ops
from e2ecompress.codec import rans
from e2ecompress.codec.rans import EscapeTable, RansTable
from e2ecompress.errors import DecodeError, InputError
from e2ecompress.fsutil import atomic_directory
from e2ecompress.layouts import IMAGE_SIZE
from e2ecompress.models.checkpoint import FORMAT, JSON_FILE, META_KEY, MODEL_FILE, resolve_path, sha256_file
from e2ecompress.models.mae import MaskedAutoencoderViT
from e2ecompress.models.normalizer import Normalizer
from e2ecompress.models.vit import occupied_ids

ARCH = "latent_vit"
VERSION = 1
DEFAULT_LEVELS = {1: 8.0, 2: 4.0, 3: 2.0, 4: 1.0, 5: 0.5}
MIN_ROWS = 64  # every matmul row count at inference is >= this (see the module docstring)
CHUNK = 256  # jets per forward pass at inference
MAX_BITS = 30.0  # the rate of one latent value is clamped here in training
MAX_ESCAPE_RATE = 1e-3
ESCAPE_SIZES = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
PARTS = ("cls", "tokens")
_MAE_KEYS = (
    "img_size",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "decoder_embed_dim",
    "decoder_depth",
    "decoder_num_heads",
    "mlp_ratio",
    "qkv_bias",
)


def _rowwise(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn on x [..., D] as one [M, D] matrix of at least MIN_ROWS rows (zero rows appended, then dropped)."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    m = flat.shape[0]
    if m < MIN_ROWS:
        flat = torch.cat([flat, flat.new_zeros(MIN_ROWS - m, flat.shape[1])])
    out = fn(flat)[:m]
    return out.reshape(*lead, out.shape[-1])


def logistic_bits(y: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, step: float) -> torch.Tensor:
    """-log2 of the mass of [y - step/2, y + step/2] under Logistic(loc, exp(log_scale)), <= MAX_BITS."""
    inv = torch.exp(-log_scale)
    upper = (y - loc + step / 2) * inv
    lower = (y - loc - step / 2) * inv
    sign = torch.where(upper + lower > 0, -1.0, 1.0).to(y.dtype)  # the tail side: a stable difference
    p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
    return -torch.log2(p.clamp_min(2.0**-MAX_BITS))


def nonzero_mse(pred: torch.Tensor, target: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Per-channel MSE over the non-zero target pixels: pred, target [B, L, p*p*C] -> [C]."""
    B, L, _ = pred.shape
    target = target.reshape(B, L, -1, in_chans)
    nz = (target != 0).to(pred.dtype)
    err = (pred.reshape(B, L, -1, in_chans) - target).square() * nz
    return err.sum(dim=(0, 1, 2)) / nz.sum(dim=(0, 1, 2)).clamp_min(1.0)


class LatentOutput(NamedTuple):
    """pred [B, L, p*p*C]; mse [C] (non-zero pixels); bits [B] per jet (cls + coded tokens); z_* latents."""

    pred: torch.Tensor
    mse: torch.Tensor
    bits: torch.Tensor
    z_cls: torch.Tensor
    z_tokens: torch.Tensor


class LatentAutoencoder(nn.Module):
    """The MAE (`self.mae`) with a latent_dim bottleneck on every occupied token and the cls token."""

    def __init__(
        self,
        *,
        in_chans: int,
        img_size: int = IMAGE_SIZE,
        patch_size: int = 8,
        embed_dim: int = 128,
        depth: int = 6,
        num_heads: int = 4,
        decoder_embed_dim: int = 128,
        decoder_depth: int = 2,
        decoder_num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        latent_dim: int = 8,
    ):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.init_kwargs = dict(
            in_chans=in_chans,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            latent_dim=latent_dim,
        )
        self.arch = ARCH
        self.latent_dim = latent_dim
        mae_kwargs = {k: v for k, v in self.init_kwargs.items() if k != "latent_dim"}
        self.mae = MaskedAutoencoderViT(**mae_kwargs, sparse=True)
        self.token_proj = nn.Linear(embed_dim, latent_dim)
        self.cls_proj = nn.Linear(embed_dim, latent_dim)
        self.token_unproj = nn.Linear(latent_dim, embed_dim)
        self.cls_unproj = nn.Linear(latent_dim, embed_dim)
        self.drop_token = nn.Parameter(self.mae.mask_token.detach().clone())
        # rate model: a logistic per latent dim (learned location and log-scale), cls and tokens apart
        self.token_loc = nn.Parameter(torch.zeros(latent_dim))
        self.token_log_scale = nn.Parameter(torch.zeros(latent_dim))
        self.cls_loc = nn.Parameter(torch.zeros(latent_dim))
        self.cls_log_scale = nn.Parameter(torch.zeros(latent_dim))

    @classmethod
    def from_mae(cls, mae: MaskedAutoencoderViT, latent_dim: int = 8) -> LatentAutoencoder:
        """A model whose encoder and decoder start from a (pretrained) MAE; drop_token = its mask_token.

        Every weight whose name and shape match is copied; the encoder must match entirely. An MAE
        with another decoder head (e.g. `JetMAE`, whose head predicts occupancy, mean and variance)
        gives its encoder and the decoder blocks of the same shape; the rest starts fresh."""
        kw = {k: mae.init_kwargs[k] for k in _MAE_KEYS}
        model = cls(in_chans=mae.in_chans, latent_dim=latent_dim, **kw)
        own = model.mae.state_dict()
        src = mae.state_dict()
        enc = set(model.mae.encoder_state())
        bad = sorted(k for k in enc if k not in src or src[k].shape != own[k].shape)
        if bad:
            raise ValueError(f"the MAE's encoder does not match the latent codec's ({', '.join(bad[:3])})")
        model.mae.load_state_dict({k: v for k, v in src.items() if k in own and v.shape == own[k].shape},
                                  strict=False)  # fmt: skip
        with torch.no_grad():
            model.drop_token.copy_(model.mae.mask_token)
        return model

    @property
    def in_chans(self) -> int:
        return self.mae.in_chans

    @property
    def patch_size(self) -> int:
        return self.mae.patch_size

    @property
    def num_patches(self) -> int:
        return self.mae.num_patches

    # --- encoder -----------------------------------------------------------------------------------
    def forward_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training path. x [B, C, H, W] normalized -> z_cls [B, d], z_tokens [N, d], occ [B, L].

        z_tokens holds the occupied patches in (jet, patch index) order; jets are padded to the batch's
        largest count and the padding is masked out of attention.
        """
        occ, counts = ops.patch_occupancy(x.contiguous(), self.patch_size)
        ids, valid = occupied_ids(occ, counts)
        patches = self.mae.patchify(x)
        tokens = self.mae.embed_tokens(ops.gather_tokens(patches, ids), ids)
        keys = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)
        h = self.mae.run_blocks(tokens, keys[:, None, None, :])
        z_cls = _rowwise(self.cls_proj, h[:, 0])
        return z_cls, _rowwise(self.token_proj, h[:, 1:][valid]), occ

    def encode_latents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inference path, per jet independent of the batch: same outputs as `forward_encoder`."""
        occ, counts = ops.patch_occupancy(x.contiguous(), self.patch_size)
        patches = self.mae.patchify(x)
        B, d = x.shape[0], self.latent_dim
        z_cls = x.new_empty(B, d)
        z_tokens = x.new_empty(int(counts.sum()), d)
        starts = torch.cumsum(counts, 0) - counts
        for K in torch.unique(counts).tolist():
            jets = torch.nonzero(counts == K).reshape(-1)
            n = len(jets)
            if K:
                ids, _ = occupied_ids(occ[jets], counts[jets])
                tokens = self.mae.embed_tokens(ops.gather_tokens(patches[jets].contiguous(), ids), ids)
            else:
                tokens = self.mae._with_cls(x.new_zeros(n, 0, self.mae.embed_dim))
            pad = -(-MIN_ROWS // (K + 1)) - n  # extra all-zero jets so the blocks see >= MIN_ROWS rows
            if pad > 0:
                tokens = torch.cat([tokens, tokens.new_zeros(pad, *tokens.shape[1:])])
            h = self.mae.run_blocks(tokens)[:n]
            z_cls[jets] = _rowwise(self.cls_proj, h[:, 0])
            if K:
                rows = (starts[jets][:, None] + torch.arange(K)).reshape(-1)
                z_tokens[rows] = _rowwise(self.token_proj, h[:, 1:]).reshape(-1, d)
        return z_cls, z_tokens, occ

    # --- decoder -----------------------------------------------------------------------------------
    def forward_decoder(
        self, zq_cls: torch.Tensor, zq_tokens: torch.Tensor, occ: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """Quantized latents zq_cls [B, d], zq_tokens [N, d] (the keep positions in row-major order),
        occ / keep [B, L] bool -> pred [B, L, p*p*C] (normalized)."""
        mae = self.mae
        cls = _rowwise(lambda z: mae.decoder_embed(self.cls_unproj(z)), zq_cls)
        tokens = _rowwise(lambda z: mae.decoder_embed(self.token_unproj(z)), zq_tokens)
        B, L = occ.shape
        base = torch.where(occ[:, :, None], self.drop_token, mae.mask_token).expand(B, L, -1)
        full = base.index_put(torch.nonzero(keep, as_tuple=True), tokens)
        x = torch.cat([cls[:, None], full], dim=1) + mae.decoder_pos_embed
        for blk in mae.decoder_blocks:
            x = blk(x)
        return mae.decoder_pred(mae.decoder_norm(x))[:, 1:]

    # --- training ----------------------------------------------------------------------------------
    def rate_bits(self, z_cls: torch.Tensor, z_tokens: torch.Tensor, step: float):
        """Bits of each latent value under the rate model: ([B, d], [N, d])."""
        return (
            logistic_bits(z_cls, self.cls_loc, self.cls_log_scale, step),
            logistic_bits(z_tokens, self.token_loc, self.token_log_scale, step),
        )

    def forward(self, x: torch.Tensor, step: float = 1.0, keep_fraction: torch.Tensor | None = None):
        """x [B, C, H, W] normalized -> LatentOutput. keep_fraction [B] in (0, 1]: code a random subset
        of ceil(f * count) occupied tokens per jet (None: all). Training adds uniform noise of one step
        for the rate and feeds the decoder round(z / step) * step with a straight-through gradient."""
        z_cls, z_tokens, occ = self.forward_encoder(x)
        keep = occ if keep_fraction is None else random_keep(occ, keep_fraction)
        z_kept = z_tokens[keep[occ]]
        if self.training:
            noisy = [z + (torch.rand_like(z) - 0.5) * step for z in (z_cls, z_kept)]
        else:
            noisy = [quantize(z, step) for z in (z_cls, z_kept)]
        bits_cls, bits_tok = self.rate_bits(*noisy, step)
        jet_of_token = torch.nonzero(keep)[:, 0]
        bits = bits_cls.sum(1) + torch.zeros_like(bits_cls[:, 0]).index_add(0, jet_of_token, bits_tok.sum(1))
        zq = [z + (quantize(z, step) - z).detach() for z in (z_cls, z_kept)]
        pred = self.forward_decoder(zq[0], zq[1], occ, keep)
        mse = nonzero_mse(pred, self.mae.patchify(x), self.in_chans)
        return LatentOutput(pred, mse, bits, z_cls, z_tokens)


def quantize(z: torch.Tensor, step: float) -> torch.Tensor:
    return torch.round(z / step) * step


def random_keep(occ: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """A random subset of ceil(fraction[b] * count_b) occupied patches of each jet: bool [B, L]."""
    noise = torch.rand(occ.shape, device=occ.device).masked_fill(~occ, 2.0)
    rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    n_keep = torch.ceil(occ.sum(1) * fraction.clamp(0, 1))
    return occ & (rank < n_keep[:, None])


def patch_priority(num_patches: int) -> np.ndarray:
    """A fixed spread-out order of patch indices (Fibonacci hashing): uint64 [L], lower codes first."""
    idx = np.arange(1, num_patches + 1, dtype=np.uint64)
    return (idx * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)


# ---------------------------------------------------------------------------------------------------------
# Runtime


@dataclass(frozen=True)
class LatentSymbols:
    """cls int32 [B, D]; tokens int32 [N, D] for keep's positions in (jet, patch index) order;
    occ / keep bool [B, L] (patch occupancy, coded tokens)."""

    cls: np.ndarray
    tokens: np.ndarray
    occ: np.ndarray
    keep: np.ndarray


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise DecodeError("latent stream: truncated or over-long length")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift:
                raise DecodeError("latent stream: non-minimal length")
            return value, pos
        shift += 7


def _escape_rate(uniq_counts: list[tuple[np.ndarray, np.ndarray]], width: int) -> float:
    """The fraction of values outside each dim's best window of `width` consecutive values."""
    total = outside = 0
    for uniq, counts in uniq_counts:
        cum = np.concatenate(([0], np.cumsum(counts)))
        inside = cum[np.searchsorted(uniq, uniq + width)] - cum[:-1]
        total += int(cum[-1])
        outside += int(cum[-1] - inside.max()) if len(uniq) else 0
    return outside / max(total, 1)


def choose_table(
    symbols: np.ndarray, max_escape_rate: float = MAX_ESCAPE_RATE, tries: int = 3
) -> EscapeTable:
    """An EscapeTable for training symbols [N, D]: among the `tries` smallest sizes of ESCAPE_SIZES that
    escape at most max_escape_rate of the values, the one with the smallest estimated code length."""
    symbols = np.asarray(symbols, np.int64)
    uniq_counts = [np.unique(symbols[:, d], return_counts=True) for d in range(symbols.shape[1])]
    sizes = [k for k in ESCAPE_SIZES if _escape_rate(uniq_counts, k) <= max_escape_rate][:tries]
    if not sizes:
        raise ValueError(f"no table size up to {ESCAPE_SIZES[-1]} keeps escapes under {max_escape_rate}")
    best, best_bits = None, np.inf
    for k in sizes:
        table = EscapeTable.fit(symbols, k + 1)
        rel = symbols - table.offsets
        inside = (rel >= 0) & (rel < k)
        varint_bits = 8 * (1 + np.log2(2 * np.abs(symbols) + 1).astype(np.int64) // 7)
        bits = rans.cost_bits(np.where(inside, rel, k), table.table) + float(varint_bits[~inside].sum())
        if bits < best_bits:
            best, best_bits = table, bits
    return best


class LatentCodec:
    """Encode jets to integer latents and back with a trained `LatentAutoencoder` (CPU, inference mode).

    Attributes: model_id, channels, patch_size, levels (level -> step), latent_dim, normalizer, path,
    tables (level -> {"cls": EscapeTable, "tokens": EscapeTable}), table_hashes (same, hex SHA-256).
    """

    def __init__(
        self,
        model: LatentAutoencoder,
        normalizer: Normalizer,
        levels: dict[int, float] | None = None,
        tables: dict[int, dict[str, EscapeTable]] | None = None,
        channels=None,
        model_id: str = "",
        path: str | os.PathLike | None = None,
    ):
        if normalizer.in_chans != model.in_chans:
            raise ValueError(f"normalizer has {normalizer.in_chans} channels, the model {model.in_chans}")
        self.model = model.float().eval()
        self.normalizer = normalizer
        self.levels = {int(k): float(v) for k, v in (levels or DEFAULT_LEVELS).items()}
        self.tables = tables or {}
        self.channels = tuple(channels or normalizer.channels or ())
        self.model_id = model_id
        self.path = None if path is None else Path(path)
        negative = normalizer.stats.get("negative")
        self.nonnegative = np.array(
            [False] * model.in_chans if negative is None else [n == 0 for n in negative], bool
        )
        self._priority = patch_priority(model.num_patches)

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def patch_size(self) -> int:
        return self.model.patch_size

    @property
    def num_patches(self) -> int:
        return self.model.num_patches

    @property
    def table_hashes(self) -> dict[int, dict[str, str]]:
        return {lv: {part: t.sha256() for part, t in parts.items()} for lv, parts in self.tables.items()}

    def step(self, level: int) -> float:
        if level not in self.levels:
            raise InputError(None, f"unknown quality level {level!r} (known: {sorted(self.levels)})")
        return self.levels[level]

    # --- loading -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> LatentCodec:
        """From a checkpoint directory or a shipped name ("latent_qg3_default")."""
        p = resolve_path(name_or_path)
        weights = p / MODEL_FILE if p.is_dir() else p
        try:
            with safe_open(weights, framework="np") as f:
                desc = json.loads((f.metadata() or {})[META_KEY])
            arrays = load_file(weights)
        except (SafetensorError, OSError, KeyError, ValueError) as e:
            raise InputError(os.fspath(weights), f"not a latent codec checkpoint ({e})") from None
        if desc.get("format") != FORMAT or desc.get("arch") != ARCH:
            raise InputError(os.fspath(weights), f"holds a {desc.get('arch')!r}, not a latent codec")
        if desc.get("version", 0) > VERSION:
            raise InputError(os.fspath(weights), f"latent codec version {desc['version']} is too new")
        model = LatentAutoencoder(**desc["kwargs"])
        state = {k: torch.from_numpy(v).float() for k, v in arrays.items() if not k.startswith("tables.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = " ".join(str(e).split())[:300]
            raise InputError(os.fspath(weights), f"weights do not fit: {first}") from None
        levels = {int(k): float(v) for k, v in desc["levels"].items()}
        tables = {}
        for lv in levels:
            tables[lv] = {}
            for part in PARTS:
                key = f"tables.{lv}.{part}"
                if f"{key}.freqs" in arrays:
                    freqs = arrays[f"{key}.freqs"].astype(np.uint32)
                    rans_table = RansTable(freqs, int(desc["prob_bits"]))
                    tables[lv][part] = EscapeTable(rans_table, arrays[f"{key}.offsets"].astype(np.int64))
        normalizer = Normalizer.from_dict(desc["normalizer"])
        return cls(model, normalizer, levels, tables, desc.get("channels"), sha256_file(weights), p)

    def save(
        self, path: str | os.PathLike, dtype: torch.dtype = torch.float32, extra: dict | None = None
    ) -> str:
        """Write the checkpoint directory (replacing one there); returns the model id."""
        desc = {
            "format": FORMAT,
            "version": VERSION,
            "arch": ARCH,
            "kwargs": dict(self.model.init_kwargs),
            "normalizer": self.normalizer.to_dict(),
            "channels": list(self.channels) or None,
            "levels": {str(k): v for k, v in sorted(self.levels.items())},
            "prob_bits": rans.DEFAULT_PROB_BITS,
        }
        arrays = {k: v.detach().to(dtype).cpu().numpy() for k, v in self.model.state_dict().items()}
        for lv, parts in self.tables.items():
            for part, table in parts.items():
                if table.table.prob_bits != rans.DEFAULT_PROB_BITS:
                    raise ValueError(f"tables must use prob_bits {rans.DEFAULT_PROB_BITS}")
                arrays[f"tables.{lv}.{part}.freqs"] = np.ascontiguousarray(table.table.freqs, np.uint32)
                arrays[f"tables.{lv}.{part}.offsets"] = np.ascontiguousarray(table.offsets, np.int64)
        with atomic_directory(path) as tmp:
            save_file(arrays, tmp / MODEL_FILE, metadata={META_KEY: json.dumps(desc, sort_keys=True)})
            model_id = sha256_file(tmp / MODEL_FILE)
            record = {
                **desc,
                "model_id": model_id,
                "latent_dim": self.latent_dim,
                "table_sha256": {str(lv): h for lv, h in self.table_hashes.items()},
                "n_symbols": {
                    str(lv): {part: t.table.n_symbols for part, t in parts.items()}
                    for lv, parts in self.tables.items()
                },
                "weights_dtype": str(dtype).removeprefix("torch."),
                "extra": dict(extra or {}),
            }
            (tmp / JSON_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        return model_id

    def fit_tables(self, z_cls: np.ndarray, z_tokens: np.ndarray, max_escape_rate: float = MAX_ESCAPE_RATE):
        """Fit every level's tables on training latents z_cls [B, D], z_tokens [N, D] (float)."""
        for lv, step in self.levels.items():
            self.tables[lv] = {
                part: choose_table(np.round(z / step).astype(np.int32), max_escape_rate)
                for part, z in zip(PARTS, (z_cls, z_tokens), strict=True)
            }

    # --- coding ------------------------------------------------------------------------------------
    def _images(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        C, size = self.model.in_chans, self.model.mae.patch_embed.img_size
        if images.ndim != 4 or images.shape[1:] != (C, size, size):
            raise ValueError(f"images must be [B, {C}, {size}, {size}], got {images.shape}")
        return images

    def latents(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unquantized latents of images [B, C, H, W] (GeV): z_cls [B, D], z_tokens [N_occ, D], occ [B, L]."""
        images = self._images(images)
        parts: list[list[np.ndarray]] = [[], [], []]
        with torch.inference_mode():
            for s in range(0, len(images), CHUNK):
                x = self.normalizer.normalize(torch.from_numpy(images[s : s + CHUNK]))
                for out, t in zip(parts, self.model.encode_latents(x.contiguous()), strict=True):
                    out.append(t.numpy())
        if not len(images):
            d, L = self.latent_dim, self.num_patches
            return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32), np.zeros((0, L), bool)
        return tuple(np.concatenate(p) for p in parts)

    def encode(self, images: np.ndarray, level: int, keep: np.ndarray | None = None) -> LatentSymbols:
        """images float32 [B, C, H, W] in GeV -> LatentSymbols; keep [B, L] bool ⊆ occupancy (None: all)."""
        step = self.step(level)
        z_cls, z_tokens, occ = self.latents(images)
        keep = occ.copy() if keep is None else self._check_keep(occ, keep)
        sym_cls = np.round(z_cls / step).astype(np.int32)
        sym_tokens = np.round(z_tokens[keep[occ]] / step).astype(np.int32)
        return LatentSymbols(sym_cls, sym_tokens, occ, keep)

    def _check_keep(self, occ: np.ndarray, keep: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep)
        if keep.shape != occ.shape or keep.dtype != np.bool_:
            raise ValueError(f"keep must be bool {occ.shape}, got {keep.dtype} {keep.shape}")
        if np.any(keep & ~occ):
            raise ValueError("keep marks patches that are not occupied")
        return keep

    def decode(self, cls_sym, tok_sym, occ, keep, level: int) -> np.ndarray:
        """Symbols -> images float32 [B, C, H, W] in GeV (denormalized prediction of every pixel,
        negatives clamped to 0 in non-negative channels; not multiplied by any pixel mask)."""
        step = self.step(level)
        occ = np.asarray(occ, bool)
        B, L, d = len(occ), self.num_patches, self.latent_dim
        if occ.shape != (B, L):
            raise ValueError(f"occ must be [B, {L}], got {occ.shape}")
        keep = self._check_keep(occ, keep)
        cls_sym = np.asarray(cls_sym)
        tok_sym = np.asarray(tok_sym)
        if cls_sym.shape != (B, d) or tok_sym.shape != (int(keep.sum()), d):
            raise ValueError(
                f"expected cls symbols {(B, d)} and token symbols {(int(keep.sum()), d)}, "
                f"got {cls_sym.shape} and {tok_sym.shape}"
            )
        mae = self.model.mae
        size = mae.patch_embed.img_size
        out = np.empty((B, self.model.in_chans, size, size), np.float32)
        tok_start = np.concatenate([[0], np.cumsum(keep.sum(1))])
        nonneg = torch.from_numpy(self.nonnegative)[None, :, None, None]
        with torch.inference_mode():
            for s in range(0, B, CHUNK):
                e = min(s + CHUNK, B)
                zc = torch.from_numpy(cls_sym[s:e].astype(np.float32) * step)
                zt = torch.from_numpy(tok_sym[tok_start[s] : tok_start[e]].astype(np.float32) * step)
                pred = self.model.forward_decoder(
                    zc, zt, torch.from_numpy(occ[s:e]), torch.from_numpy(keep[s:e])
                )
                img = self.normalizer.denormalize(mae.unpatchify(pred))
                out[s:e] = torch.where(nonneg & (img < 0), 0.0, img).numpy()
        return out

    def _tables(self, level: int) -> dict[str, EscapeTable]:
        self.step(level)
        tables = self.tables.get(level, {})
        if set(tables) != set(PARTS):
            raise InputError(None, f"the codec has no entropy tables for level {level}")
        return tables

    def compress(self, sym: LatentSymbols, level: int) -> bytes:
        """varint(len(cls part)) + cls part + tokens part, each `rans.compress` with the level's tables."""
        tables = self._tables(level)
        cls_part = rans.compress(sym.cls, tables["cls"])
        return _varint(len(cls_part)) + cls_part + rans.compress(sym.tokens, tables["tokens"])

    def decompress(self, data, occ: np.ndarray, keep: np.ndarray, n_jets: int, level: int):
        """Inverse of `compress` -> LatentSymbols; DecodeError on corrupt or mismatched data."""
        tables = self._tables(level)
        occ = np.asarray(occ, bool)
        if occ.shape != (n_jets, self.num_patches):
            raise ValueError(f"occ must be [{n_jets}, {self.num_patches}], got {occ.shape}")
        keep = self._check_keep(occ, keep)
        data = memoryview(data).cast("B")
        length, pos = _read_varint(data, 0)
        if length > len(data) - pos:
            raise DecodeError("latent stream: truncated cls part")
        sym_cls = rans.decompress(data[pos : pos + length], tables["cls"], n_jets)
        sym_tokens = rans.decompress(data[pos + length :], tables["tokens"], int(keep.sum()))
        return LatentSymbols(sym_cls, sym_tokens, occ, keep)

    def default_keep(self, occ: np.ndarray, fraction: float) -> np.ndarray:
        """The coded tokens for a keep fraction, from occ [B, L] alone: per jet the first
        ceil(fraction * count) occupied patches in the fixed `patch_priority` order."""
        occ = np.asarray(occ, bool)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        order = np.argsort(self._priority, kind="stable")
        occ_sorted = occ[:, order]
        rank = np.cumsum(occ_sorted, axis=1) - 1
        n_keep = np.ceil(occ.sum(1) * fraction).astype(np.int64)
        keep = np.zeros_like(occ)
        keep[:, order] = occ_sorted & (rank < n_keep[:, None])
        return keep
