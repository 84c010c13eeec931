"""Pure-torch reference of the patch ops; the compiled kernels must match these exactly.

Differentiable by torch autograd and unvalidated: the public wrappers in `e2ecompress.ops` check inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grid_size(H: int, W: int, p: int) -> tuple[int, int]:
    """Patches along H and W; a partial last row/column is padded to a whole patch."""
    return -(-H // p), -(-W // p)


def len_keep_for(L: int, mask_ratio: float) -> int:
    """Number of visible patches, as in MAE: int(L * (1 - mask_ratio))."""
    return int(L * (1 - mask_ratio))


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """imgs: [B, C, H, W] -> [B, L, p*p*C], patch vector layout (p, q, c); zero-padded at bottom/right."""
    B, C, H, W = imgs.shape
    h, w = grid_size(H, W, p)
    if h * p != H or w * p != W:
        imgs = F.pad(imgs, (0, w * p - W, 0, h * p - H))
    x = imgs.reshape(B, C, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(B, h * w, p * p * C)


def unpatchify(x: torch.Tensor, p: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """x: [B, L, p*p*C] -> [B, C, H, W] with (H, W) = out_hw, the padding cropped."""
    H, W = out_hw
    h, w = grid_size(H, W, p)
    B, _, D = x.shape
    C = D // (p * p)
    x = x.reshape(B, h, w, p, p, C)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(B, C, h * p, w * p)[:, :, :H, :W].contiguous()


def random_masking_ids(noise: torch.Tensor, len_keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """noise: [B, L] -> ids_keep [B, len_keep], mask [B, L] float32 (0 keep, 1 remove), ids_restore [B, L].

    Patches are kept in the order of a stable ascending sort of the noise (ties by index, NaN last).
    """
    B, L = noise.shape
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(B, L, dtype=torch.float32, device=noise.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_shuffle[:, :len_keep], mask, ids_restore


def gather_tokens(x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """x: [B, L, D], ids_keep: [B, K] -> [B, K, D]."""
    return torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[2]))


def random_masking(
    x: torch.Tensor, noise: torch.Tensor, mask_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's random_masking with the noise given: x [B, L, D] -> (x_masked, mask, ids_restore)."""
    ids_keep, mask, ids_restore = random_masking_ids(noise, len_keep_for(x.shape[1], mask_ratio))
    return gather_tokens(x, ids_keep), mask, ids_restore


def patchify_random_masking(
    imgs: torch.Tensor, p: int, noise: torch.Tensor, mask_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """patchify, then random_masking: -> visible patches [B, len_keep, D], mask [B, L], ids_restore [B, L]."""
    return random_masking(patchify(imgs, p), noise, mask_ratio)


def restore_tokens(x_vis: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
    """MAE decoder's unshuffle: x_vis [B, K, D], ids_restore [B, L], mask_token [D] -> [B, L, D]."""
    B, K, D = x_vis.shape
    L = ids_restore.shape[1]
    mask_tokens = mask_token.reshape(1, 1, D).expand(B, L - K, D)
    x = torch.cat([x_vis, mask_tokens], dim=1)
    return torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D))


def patch_occupancy(imgs: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """imgs: [B, C, H, W] -> occupied [B, L] bool (a non-zero pixel in some channel), counts [B] int64."""
    occ = (patchify(imgs, p) != 0).any(dim=-1)
    return occ, occ.sum(dim=1)
