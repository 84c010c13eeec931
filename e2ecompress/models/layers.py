"""Transformer building blocks: patch embedding through the patch ops, pre-norm blocks, fixed position codes.

Names follow timm (`embed_dim`, `num_heads`, `mlp_ratio`, `qkv_bias`, `drop_path`); the patch embedding is
`ops.patchify` followed by a Linear (not a Conv2d), so the compiled patch kernels carry the pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from e2ecompress import ops

LN_EPS = 1e-6


def grid_size(img_size: int, patch_size: int) -> int:
    """Patches per side; a partial last row/column is zero-padded to a whole patch (125 / 8 -> 16)."""
    return -(-img_size // patch_size)


def sincos_pos_embed_1d(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """pos: [M] -> [M, embed_dim]: sin of pos * omega_i for the first half, cos for the second."""
    if embed_dim % 2:
        raise ValueError(f"embed_dim for a 1-D sin-cos code must be even, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = pos.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_pos_embed_2d(embed_dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position code: [1, cls + grid*grid, embed_dim] float32 (the cls row is zero).

    Half the channels encode the patch row, half the column; token order is row-major, as patchify's.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be a multiple of 4 for a 2-D sin-cos code, got {embed_dim}")
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    emb = torch.cat(
        [
            sincos_pos_embed_1d(embed_dim // 2, rows.reshape(-1)),
            sincos_pos_embed_1d(embed_dim // 2, cols.reshape(-1)),
        ],
        dim=1,
    )
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float().unsqueeze(0)


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability drop_prob, rescale the rest."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention with torch's scaled_dot_product_attention.

    attn_mask (optional): bool [B, 1, 1, N], True where a key may be attended (padding tokens False).
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, D)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each with drop path."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), attn_mask))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """imgs [B, C, H, W] -> patch vectors [B, L, p*p*C] (ops.patchify) -> tokens [B, L, embed_dim]."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.grid = grid_size(img_size, patch_size)
        self.num_patches = self.grid * self.grid
        self.patch_dim = patch_size * patch_size * in_chans
        self.proj = nn.Linear(self.patch_dim, embed_dim)

    def check(self, imgs: torch.Tensor) -> None:
        if imgs.dim() != 4 or tuple(imgs.shape[1:]) != (self.in_chans, self.img_size, self.img_size):
            raise ValueError(
                f"expected images [B, {self.in_chans}, {self.img_size}, {self.img_size}], "
                f"got {tuple(imgs.shape)}"
            )

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        self.check(imgs)
        return ops.patchify(imgs.contiguous(), self.patch_size)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        return self.proj(self.patchify(imgs))


def init_weights(module: nn.Module) -> None:
    """MAE's init: xavier-uniform Linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Stochastic depth rising linearly from 0 to drop_path_rate over the blocks."""
    if depth <= 1:
        return [0.0] * depth
    return [drop_path_rate * i / (depth - 1) for i in range(depth)]


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def check_width(embed_dim: int, num_heads: int, what: str = "embed_dim") -> None:
    """The 2-D sin-cos code needs a multiple of 4; the heads must split the width evenly."""
    if embed_dim < 4 or embed_dim % 4 or num_heads < 1 or embed_dim % num_heads:
        raise ValueError(f"{what} {embed_dim} must be a multiple of 4 and of num_heads {num_heads}")
