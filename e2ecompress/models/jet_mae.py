"""A masked auto-encoder whose pretext task is about jets, not about empty pixels.

Differences from the image MAE (`MaskedAutoencoderViT`), each answering a way that model learned little:

- Masking per jet: each jet keeps round((1 - r) * n) of its own n occupied patches visible (at least
  one) and masks the rest; tokens are padded to the batch's largest count and hidden by attention masks,
  so one busy jet does not change what the others see.
- Targets: the masked occupied patches plus a random sample of `empty_samples` empty patches per jet.
  A sampled empty patch stands for all of the jet's empty patches (importance weight n_empty / n_sampled,
  times `empty_weight`), so the occupancy probabilities are calibrated over the whole unseen region.
- Decoder: context tokens (cls + visible) attend to each other; every target token attends to the
  context and to itself only, so a patch's prediction does not depend on which other patches are asked
  for (training asks for a sample, evaluation for every unseen patch).
- Two heads per pixel: occupancy (a logit, binary cross-entropy) and the value where occupied (mean and
  log-variance of a Gaussian on the normalized value, negative log-likelihood). The expected raw value
  follows from the log-normal mean (`Normalizer.expected_value`), so predicted energies are not shrunk
  towards the geometric mean as a squared error in log space would do.
- `token_threshold`: patches whose summed |normalized value| is at most this count as empty (never
  visible, never a masked target; noise-only patches, e.g. one ECAL crystal just above its noise cut).
  0 keeps every patch with any non-zero pixel. The classifier built from this encoder uses the same rule.

Losses are averaged per channel, then over channels, so a sparse channel counts as much as a dense one;
the occupancy loss is normalized by the number of occupied pixels, like the value loss.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from e2ecompress.layouts import IMAGE_SIZE
from e2ecompress.models.layers import init_weights
from e2ecompress.models.mae import MaskedAutoencoderViT

LOGVAR_RANGE = (-7.0, 4.0)


class JetMAEOutput(NamedTuple):
    """loss = loss_occupancy + loss_value (scalars); the parts are detached."""

    loss: torch.Tensor
    loss_occupancy: torch.Tensor
    loss_value: torch.Tensor


class Prediction(NamedTuple):
    """What the decoder says about target patches.

    ids_visible [B, K] / valid_visible: the visible patch indices (padded); ids [B, T] / valid [B, T]:
    the target patch indices; occupied [B, T]: target patch counted as occupied; logit, mu, logvar
    [B, T, p*p*C] in patchify's (p, q, c) layout, on the normalized scale.
    """

    ids_visible: torch.Tensor
    valid_visible: torch.Tensor
    ids: torch.Tensor
    valid: torch.Tensor
    occupied: torch.Tensor
    logit: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor


def take(order: torch.Tensor, start: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns start_b .. start_b + count_b - 1 of each row of `order`, padded: (ids, valid)."""
    L = order.shape[1]
    width = max(int(count.max()) if count.numel() else 0, 1)
    j = torch.arange(width, device=order.device)[None, :]
    valid = j < count[:, None]
    pos = (start[:, None] + j).clamp(max=L - 1)
    return order.gather(1, pos), valid


def gather_rows(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x [B, L, F], ids [B, T] -> [B, T, F]."""
    return x.gather(1, ids[:, :, None].expand(-1, -1, x.shape[2]))


class JetMAE(MaskedAutoencoderViT):
    """Per-jet masked auto-encoder with occupancy and value heads (see the module docstring)."""

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
        drop_path_rate: float = 0.0,
        mask_ratio: float = 0.75,
        empty_samples: int = 16,
        empty_weight: float = 1.0,
        token_threshold: float = 0.0,
        sparse: bool = True,
    ):
        super().__init__(
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
            sparse=True,
        )
        if empty_samples < 0 or empty_weight < 0 or token_threshold < 0:
            raise ValueError("empty_samples, empty_weight and token_threshold must be >= 0")
        self.init_kwargs.update(
            empty_samples=empty_samples, empty_weight=empty_weight, token_threshold=token_threshold
        )
        self.empty_samples = empty_samples
        self.empty_weight = empty_weight
        self.token_threshold = token_threshold
        P = self.patch_embed.patch_dim
        self.decoder_pred = nn.Linear(decoder_embed_dim, 3 * P)
        init_weights(self.decoder_pred)
        with torch.no_grad():  # start from "rarely occupied", unit variance
            self.decoder_pred.bias[:P].fill_(-4.0)
        C = in_chans
        valid = self.pixel_valid  # [L, p*p]
        self.register_buffer(
            "pixel_valid_pc",
            valid[:, :, None].expand(-1, -1, C).reshape(valid.shape[0], -1),
            persistent=False,
        )

    def encoder_kwargs(self) -> dict[str, Any]:
        return {**super().encoder_kwargs(), "token_threshold": self.token_threshold}

    # --- masking --------------------------------------------------------------------------------------

    def occupancy(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, L, P] normalized patches -> [B, L] bool: the patch is a token (see token_threshold)."""
        return patches.abs().sum(dim=2) > self.token_threshold

    def plan(self, occ: torch.Tensor, noise: torch.Tensor, mask_ratio: float):
        """-> order [B, L] (occupied patches in noise order, then empty ones), n_occ [B], n_visible [B]."""
        span = noise.detach().abs().max() + 1 if noise.numel() else 1
        order = torch.argsort(noise + (~occ).to(noise.dtype) * (2 * span), dim=1)
        n_occ = occ.sum(dim=1)
        keep = torch.round(n_occ.to(torch.float64) * (1 - mask_ratio)).long().clamp_min(1)
        return order, n_occ, torch.minimum(keep, n_occ)

    # --- encoder / decoder ----------------------------------------------------------------------------

    def encode(self, patches: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Visible patches at ids [B, K] (valid [B, K]) -> latent [B, 1+K, D]."""
        x = self.embed_tokens(gather_rows(patches, ids), ids)
        keys = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)
        return self.run_blocks(x, keys[:, None, None, :])

    def decode(
        self,
        latent: torch.Tensor,
        ids_visible: torch.Tensor,
        valid_visible: torch.Tensor,
        ids: torch.Tensor,
    ) -> torch.Tensor:
        """-> [B, T, 3P]: occupancy logits, means and log-variances of the target patches ids [B, T]."""
        B, T = ids.shape
        pos = self.decoder_pos_embed[0]
        ctx = self.decoder_embed(latent)
        ctx = ctx + torch.cat([pos[:1].expand(B, 1, -1), pos[1:][ids_visible]], dim=1)
        tgt = self.mask_token + pos[1:][ids]
        x = torch.cat([ctx, tgt], dim=1)
        nc = ctx.shape[1]
        N = nc + T
        keys = torch.cat([valid_visible.new_ones(B, 1), valid_visible], dim=1)  # [B, nc]
        allow = torch.zeros(B, N, N, dtype=torch.bool, device=x.device)
        allow[:, :, :nc] = keys[:, None, :]
        diag = torch.arange(nc, N, device=x.device)
        allow[:, diag, diag] = True
        allow = allow[:, None]
        for blk in self.decoder_blocks:
            x = blk(x, allow)
        return self.decoder_pred(self.decoder_norm(x[:, nc:]))

    def predict(
        self,
        imgs: torch.Tensor,
        noise: torch.Tensor,
        mask_ratio: float | None = None,
        targets: str = "train",
    ) -> Prediction:
        """Mask, encode, decode. targets='train': masked occupied + sampled empty patches; 'all': every
        patch that is not visible (what a reconstruction needs)."""
        return self.predict_patches(self.patchify(imgs), noise, mask_ratio, targets)[0]

    def predict_patches(
        self, patches: torch.Tensor, noise: torch.Tensor, mask_ratio: float | None, targets: str
    ) -> tuple[Prediction, torch.Tensor]:
        """`predict` on patchified images; also returns the occupied-patch counts [B]."""
        ratio = self.mask_ratio if mask_ratio is None else float(mask_ratio)
        occ = self.occupancy(patches)
        order, n_occ, n_vis = self.plan(occ, noise, ratio)
        ids_v, valid_v = take(order, torch.zeros_like(n_vis), n_vis)
        L = self.num_patches
        if targets == "all":
            ids, valid = take(order, n_vis, L - n_vis)
        elif targets == "train":
            ids_m, valid_m = take(order, n_vis, n_occ - n_vis)
            n_empty = (L - n_occ).clamp(max=self.empty_samples)
            ids_e, valid_e = take(order, n_occ, n_empty)
            ids, valid = torch.cat([ids_m, ids_e], dim=1), torch.cat([valid_m, valid_e], dim=1)
        else:
            raise ValueError(f"targets must be 'train' or 'all', got {targets!r}")
        latent = self.encode(patches, ids_v, valid_v)
        out = self.decode(latent, ids_v, valid_v, ids)
        P = patches.shape[2]
        logit, mu, logvar = out[..., :P], out[..., P : 2 * P], out[..., 2 * P :]
        logvar = logvar.clamp(*LOGVAR_RANGE)
        occupied = occ.gather(1, ids) & valid
        return Prediction(ids_v, valid_v, ids, valid, occupied, logit, mu, logvar), n_occ

    # --- loss -----------------------------------------------------------------------------------------

    def token_weights(self, pred: Prediction, n_occ: torch.Tensor) -> torch.Tensor:
        """[B, T]: 1 for occupied targets, empty_weight * n_empty / n_sampled for sampled empty ones."""
        empty = pred.valid & ~pred.occupied
        n_sampled = empty.sum(dim=1, keepdim=True).clamp_min(1)
        n_empty = (self.num_patches - n_occ)[:, None].to(torch.float32)
        w_empty = self.empty_weight * n_empty / n_sampled
        return pred.occupied.float() + empty.float() * w_empty

    def losses(self, patches: torch.Tensor, pred: Prediction, n_occ: torch.Tensor):
        """-> (occupancy loss, value loss), each a channel mean."""
        B, T = pred.ids.shape
        C = self.in_chans
        y = gather_rows(patches, pred.ids)
        pv = self.pixel_valid_pc[pred.ids] * pred.valid[:, :, None]  # [B, T, P]
        target = (y != 0).to(y.dtype)
        w = pv * self.token_weights(pred, n_occ)[:, :, None]
        bce = F.binary_cross_entropy_with_logits(pred.logit, target, reduction="none")
        on = target * pv

        def per_channel(v: torch.Tensor) -> torch.Tensor:  # [B, T, P] -> [C]
            return v.reshape(B, T, -1, C).sum(dim=(0, 1, 2))

        n_on = per_channel(on).clamp_min(1.0)
        loss_occ = (per_channel(bce * w) / n_on).mean()
        nll = 0.5 * (pred.logvar + (y - pred.mu).square() * torch.exp(-pred.logvar))
        loss_val = (per_channel(nll * on) / n_on).mean()
        return loss_occ, loss_val

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
    ) -> JetMAEOutput:
        self.patch_embed.check(imgs)
        if noise is None:
            noise = torch.rand(imgs.shape[0], self.num_patches, device=imgs.device)
        patches = self.patchify(imgs)
        pred, n_occ = self.predict_patches(patches, noise, mask_ratio, "train")
        loss_occ, loss_val = self.losses(patches, pred, n_occ)
        return JetMAEOutput(loss_occ + loss_val, loss_occ.detach(), loss_val.detach())
