"""Masked Auto-Encoder with a ViT encoder (He et al. 2021), for sparse multi-channel jet images.

Data path: `ops.patchify_random_masking` (patchify + masking in one kernel, noise given) -> Linear patch
embedding of the visible patches -> encoder; decoder: `ops.restore_tokens` puts mask tokens back in patch
order -> transformer -> per-patch pixel prediction [B, L, p*p*C] in patchify's (p, q, c) layout.

The loss is MSE on the masked patches computed per channel on the normalized images (see
`e2ecompress.models.normalizer`) and averaged over channels, so sparse channels count as much as dense
ones. Pixels of patchify's zero padding (125 is not a multiple of 8 or 16) are left out of every mean.

sparse=True drops empty patches from the encoder: their noise is pushed past every occupied patch, so the
random mask removes them first, and the batch keeps int(max_b occupied_b * (1 - mask_ratio)) patches, i.e.
visible ∩ occupied as far as the batch allows. The decoder still predicts every patch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from e2ecompress import ops
from e2ecompress.layouts import IMAGE_SIZE
from e2ecompress.models.layers import LN_EPS, Block, check_width, init_weights, sincos_pos_embed_2d
from e2ecompress.models.vit import EncoderBase


class MAEOutput(NamedTuple):
    """loss: scalar; pred: [B, L, p*p*C]; mask: [B, L] (0 keep, 1 remove); mse_*: [C] per channel."""

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor
    mse_masked: torch.Tensor
    mse_visible: torch.Tensor


def keep_ids(ids_restore: torch.Tensor, len_keep: int) -> torch.Tensor:
    """The patch indices of the visible tokens [B, len_keep], from ids_restore (a permutation per row)."""
    B, L = ids_restore.shape
    order = torch.arange(L, device=ids_restore.device).expand(B, L)
    ids_shuffle = torch.empty_like(ids_restore).scatter_(1, ids_restore, order)
    return ids_shuffle[:, :len_keep]


def ratio_for_keep(L: int, len_keep: int) -> float:
    """A mask ratio r with int(L * (1 - r)) == len_keep exactly (aims at len_keep + 0.5)."""
    return 0.0 if len_keep >= L else 1.0 - (len_keep + 0.5) / L


class MaskedAutoencoderViT(EncoderBase):
    """MAE with a ViT encoder and a light transformer decoder; channel count from the data (in_chans)."""

    def __init__(
        self,
        *,
        in_chans: int,
        img_size: int = IMAGE_SIZE,
        patch_size: int = 8,
        embed_dim: int = 192,
        depth: int = 8,
        num_heads: int = 3,
        decoder_embed_dim: int = 128,
        decoder_depth: int = 2,
        decoder_num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        mask_ratio: float = 0.75,
        sparse: bool = False,
    ):
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
        check_width(decoder_embed_dim, decoder_num_heads, "decoder_embed_dim")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
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
            drop_path_rate=drop_path_rate,
            mask_ratio=mask_ratio,
            sparse=sparse,
        )
        self.mask_ratio = mask_ratio
        self.sparse = sparse
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        dec_pos = sincos_pos_embed_2d(decoder_embed_dim, self.patch_embed.grid, cls_token=True)
        self.register_buffer("decoder_pos_embed", dec_pos, persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=LN_EPS)
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.patch_embed.patch_dim)
        # [L, p*p]: 1 for real pixels, 0 for patchify's padding (the same for every channel)
        ones = torch.ones(1, 1, img_size, img_size)
        valid = ops.patchify(ones, patch_size)[0]
        self.register_buffer("pixel_valid", valid, persistent=False)
        self.apply(init_weights)
        self._init_encoder()
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs [B, C, H, W] -> [B, L, p*p*C]."""
        return self.patch_embed.patchify(imgs)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, p*p*C] -> imgs [B, C, H, W] (padding cropped)."""
        size = self.patch_embed.img_size
        return ops.unpatchify(x.contiguous(), self.patch_size, (size, size))

    def visible_count(self, imgs: torch.Tensor, mask_ratio: float) -> tuple[int, torch.Tensor | None]:
        """(len_keep, occupancy [B, L] or None): MAE's count, or with sparse=True the occupied-patch count."""
        L = self.num_patches
        dense = int(L * (1 - mask_ratio))
        if not self.sparse:
            return dense, None
        occ, counts = ops.patch_occupancy(imgs, self.patch_size)
        per_jet = (counts.to(torch.float64) * (1 - mask_ratio)).floor()
        return max(1, min(dense, int(per_jet.max()) if per_jet.numel() else 1)), occ

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs [B, C, H, W] -> latent [B, 1+K, D], mask [B, L] (0 keep, 1 remove), ids_restore [B, L].

        noise [B, L] orders the patches (lowest kept); default torch.rand from the global generator.
        """
        self.patch_embed.check(imgs)
        imgs = imgs.contiguous()
        ratio = self.mask_ratio if mask_ratio is None else float(mask_ratio)
        B, L = imgs.shape[0], self.num_patches
        if noise is None:
            noise = torch.rand(B, L, device=imgs.device)
        len_keep, occ = self.visible_count(imgs, ratio)
        if occ is not None:  # empty patches sort after every occupied one
            span = noise.detach().abs().max() + 1 if noise.numel() else 1
            noise = noise + (~occ).to(noise.dtype) * (2 * span)
            ratio = ratio_for_keep(L, len_keep)
        x, mask, ids_restore = ops.patchify_random_masking(imgs, self.patch_size, noise.contiguous(), ratio)
        x = self.embed_tokens(x, keep_ids(ids_restore, x.shape[1]))
        return self.run_blocks(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent [B, 1+K, D], ids_restore [B, L] -> pred [B, L, p*p*C]."""
        x = self.decoder_embed(latent)
        full = ops.restore_tokens(x[:, 1:].contiguous(), ids_restore, self.mask_token.reshape(-1))
        x = torch.cat([x[:, :1], full], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward_loss(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> loss (channel mean of the masked-patch MSE), mse_masked [C], mse_visible [C] (detached)."""
        B, L, _ = pred.shape
        C = self.in_chans
        err = (pred - self.patchify(imgs)).square().reshape(B, L, -1, C)  # (p, q, c) layout
        valid = self.pixel_valid.to(pred.dtype)  # [L, p*p]
        w_masked = mask.to(pred.dtype)[:, :, None] * valid  # [B, L, p*p]
        w_visible = (1 - mask.to(pred.dtype))[:, :, None] * valid
        mse_masked = torch.einsum("blpc,blp->c", err, w_masked) / w_masked.sum().clamp_min(1.0)
        with torch.no_grad():
            mse_visible = torch.einsum("blpc,blp->c", err, w_visible) / w_visible.sum().clamp_min(1.0)
        return mse_masked.mean(), mse_masked.detach(), mse_visible

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
    ) -> MAEOutput:
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        loss, mse_masked, mse_visible = self.forward_loss(imgs, pred, mask)
        return MAEOutput(loss, pred, mask, mse_masked, mse_visible)

    def reconstruct(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, paste: bool = True):
        """Images [B, C, H, W] from the prediction; paste=True keeps the visible patches of the input."""
        if paste:
            m = mask.to(pred.dtype)[:, :, None]
            pred = self.patchify(imgs) * (1 - m) + pred * m
        return self.unpatchify(pred)

    def classifier_kwargs(self) -> dict[str, Any]:
        """The VisionTransformer arguments that share this encoder."""
        return self.encoder_kwargs()
