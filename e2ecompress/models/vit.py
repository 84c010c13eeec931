"""ViT encoder shared by the MAE and the classifier, and the `VisionTransformer` classifier.

Both models name their encoder parts alike (`patch_embed.proj`, `cls_token`, `blocks.N`, `norm`), so a
classifier loads a pretrained MAE's encoder with `load_encoder_state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from e2ecompress import ops
from e2ecompress.errors import InputError
from e2ecompress.layouts import IMAGE_SIZE
from e2ecompress.models.layers import (
    LN_EPS,
    Block,
    PatchEmbed,
    check_width,
    drop_path_rates,
    init_weights,
    sincos_pos_embed_2d,
)

ENCODER_PREFIXES = ("patch_embed.", "cls_token", "blocks.", "norm.")
ENCODER_KEYS = (
    "img_size",
    "patch_size",
    "in_chans",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
)
GLOBAL_POOLS = ("avg", "token", "avg_count")


def occupied_ids(occ: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """occ [B, L] bool, counts [B] -> ids [B, K] of occupied patches first (in index order), valid [B, K].

    K = max(counts) (at least 1); rows with fewer occupied patches are padded with empty ones, valid False.
    """
    K = max(int(counts.max()) if counts.numel() else 0, 1)
    ids = torch.argsort((~occ).to(torch.int8), dim=1, stable=True)[:, :K].contiguous()
    valid = torch.arange(K, device=occ.device)[None, :] < counts[:, None]
    return ids, valid


class EncoderBase(nn.Module):
    """Patch embedding (ops.patchify + Linear), cls token, fixed 2-D sin-cos positions, pre-norm blocks."""

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rate: float,
    ):
        super().__init__()
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        check_width(embed_dim, num_heads)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.num_patches = self.patch_embed.num_patches
        self.embed_dim = embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = sincos_pos_embed_2d(embed_dim, self.patch_embed.grid, cls_token=True)
        self.register_buffer("pos_embed", pos, persistent=False)  # fixed: a function of the config
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_path=r)
            for r in drop_path_rates(drop_path_rate, depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size

    @property
    def in_chans(self) -> int:
        return self.patch_embed.in_chans

    def _init_encoder(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)

    def _with_cls(self, x: torch.Tensor) -> torch.Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def embed_tokens(self, patches: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        """patches [B, K, p*p*C] at patch indices ids [B, K] (None: all L in order) -> [B, 1+K, D]."""
        x = self.patch_embed.proj(patches)
        pos = self.pos_embed[0, 1:]
        x = x + (pos[None] if ids is None else pos[ids])
        return self._with_cls(x)

    def run_blocks(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, attn_mask)
        return self.norm(x)

    def encoder_kwargs(self) -> dict[str, Any]:
        return {k: self.init_kwargs[k] for k in ENCODER_KEYS}  # token_threshold: see JetMAE

    def encoder_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(ENCODER_PREFIXES)}


class VisionTransformer(EncoderBase):
    """ViT classifier: forward_features -> tokens [B, 1+L, D]; forward_head -> logits [B, num_classes].

    Args:
        global_pool: 'avg' (mean of the patch tokens), 'token' (the cls token) or 'avg_count' (the mean
            and log(1 + number of tokens), so the head sees the jet's multiplicity; needs sparse=True).
        token_threshold: with sparse=True, a patch is a token when its summed |normalized value| exceeds
            this (0: any non-zero pixel); the same rule as the MAE it was pretrained with.
        sparse: feed only the tokens of occupied patches (padded per batch, masked in attention and pooling).
        probe: head = BatchNorm1d(affine=False) + Linear, the MAE linear-probe head.
    """

    def __init__(
        self,
        *,
        in_chans: int,
        img_size: int = IMAGE_SIZE,
        patch_size: int = 8,
        num_classes: int = 2,
        embed_dim: int = 192,
        depth: int = 8,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        sparse: bool = False,
        probe: bool = False,
        token_threshold: float = 0.0,
    ):
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}")
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
        )
        self.init_kwargs = dict(
            in_chans=in_chans,
            img_size=img_size,
            patch_size=patch_size,
            num_classes=num_classes,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            drop_rate=drop_rate,
            global_pool=global_pool,
            sparse=sparse,
            probe=probe,
            token_threshold=token_threshold,
        )
        if global_pool == "avg_count" and not sparse:
            raise ValueError("global_pool='avg_count' needs sparse=True (the count is of occupied tokens)")
        self.token_threshold = token_threshold
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.sparse = sparse
        self.head_drop = nn.Dropout(drop_rate)
        width = embed_dim + (global_pool == "avg_count")
        linear = nn.Linear(width, num_classes)
        if probe:
            self.head = nn.Sequential(nn.BatchNorm1d(width, affine=False, eps=LN_EPS), linear)
        else:
            self.head = linear
        self.apply(init_weights)
        self._init_encoder()
        nn.init.normal_(linear.weight, std=0.01 if probe else 2e-5)  # small head init, as MAE fine-tuning
        self._valid: torch.Tensor | None = None

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs: [B, C, H, W] (normalized) -> tokens [B, 1+K, D] after the final norm.

        K = L, or with sparse=True the largest count of occupied patches in the batch.
        """
        patches = self.patch_embed.patchify(imgs)
        if not self.sparse:
            self._valid = None
            return self.run_blocks(self.embed_tokens(patches, None))
        if self.token_threshold > 0:
            occ = patches.abs().sum(dim=2) > self.token_threshold
            counts = occ.sum(dim=1)
        else:
            occ, counts = ops.patch_occupancy(imgs.contiguous(), self.patch_size)
        ids, valid = occupied_ids(occ, counts)
        x = self.embed_tokens(ops.gather_tokens(patches, ids), ids)
        keys = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)
        self._valid = valid
        return self.run_blocks(x, keys[:, None, None, :])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """tokens [B, 1+K, D] -> pooled [B, D] (pre_logits) or logits [B, num_classes]."""
        sparse_tokens = self._valid is not None and self._valid.shape[:2] == (x.shape[0], x.shape[1] - 1)
        if self.global_pool == "token":
            x = x[:, 0]
        elif sparse_tokens:
            w = self._valid.to(x.dtype)[:, :, None]
            n = w.sum(dim=1)
            x = (x[:, 1:] * w).sum(dim=1) / n.clamp_min(1.0)
            if self.global_pool == "avg_count":
                x = torch.cat([x, torch.log1p(n)], dim=1)
        else:
            x = x[:, 1:].mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(imgs))

    def load_encoder_state(self, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Copy an (MAE) encoder's patch_embed, cls_token, blocks and norm; InputError on any mismatch."""
        own = self.encoder_state()
        missing = sorted(k for k in own if k not in state)
        if missing:
            raise InputError(
                source,
                f"has no encoder weights {', '.join(missing[:4])}"
                f"{' ...' if len(missing) > 4 else ''} (is it a ViT/MAE checkpoint?)",
            )
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise InputError(
                    source,
                    f"encoder weight {k} has shape {tuple(state[k].shape)}, "
                    f"the model expects {tuple(v.shape)}",
                )
        self.load_state_dict({k: state[k] for k in own}, strict=False)

    def layer_id(self, name: str) -> int:
        """For layer-wise LR decay: 0 for the embedding, i+1 for blocks.i, depth+1 for norm and head."""
        if name.startswith(("cls_token", "patch_embed.")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return len(self.blocks) + 1
