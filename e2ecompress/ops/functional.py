"""The public patch ops: checks, backend dispatch and autograd.

On the `torch` backend the reference runs as is and torch differentiates it. On `cpp` / `cuda` the
kernels run inside `torch.autograd.Function`s whose backward passes are the adjoint ops, themselves
dispatched (so double backward works): patchify <-> unpatchify, gather -> scatter-add.
Inputs must be contiguous on every backend (ValueError otherwise; see `_checks.tensor`). The compiled
kernels take float16, bfloat16, float32 and float64 (they move bit patterns), so gradcheck in float64
runs through them rather than through the reference.
"""

from __future__ import annotations

import torch

from e2ecompress.ops import _checks, compiled
from e2ecompress.ops import reference as ref
from e2ecompress.ops.backends import backend as backend_for
from e2ecompress.ops.reference import grid_size, len_keep_for


def _pick(name: str, t: torch.Tensor) -> str:
    chosen = backend_for(t.device)
    _checks.backend_device(name, t, chosen)
    return chosen


def _scatter_add(grad: torch.Tensor, ids: torch.Tensor, L: int) -> torch.Tensor:
    """Adjoint of gathering rows ids [B, K] from [B, L, D]: grad [B, K, D] -> [B, L, D]."""
    B, _, D = grad.shape
    zeros = grad.new_zeros(B, L, D)
    return zeros.scatter_add(1, ids.unsqueeze(-1).expand(-1, -1, D), grad)


class _Patchify(torch.autograd.Function):
    @staticmethod
    def forward(ctx, imgs, p, name):
        ctx.p, ctx.hw = p, (imgs.shape[2], imgs.shape[3])
        return compiled.patchify(imgs, p, name)

    @staticmethod
    def backward(ctx, grad):
        return unpatchify(grad.contiguous(), ctx.p, ctx.hw), None, None


class _Unpatchify(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, out_hw, name):
        ctx.p = p
        return compiled.unpatchify(x, p, out_hw, name)

    @staticmethod
    def backward(ctx, grad):
        return patchify(grad.contiguous(), ctx.p), None, None, None


class _PatchifyRandomMasking(torch.autograd.Function):
    @staticmethod
    def forward(ctx, imgs, p, noise, len_keep, name):
        out, mask, ids_restore = compiled.patchify_random_masking(imgs, p, noise, len_keep, name)
        ctx.mark_non_differentiable(mask, ids_restore)
        ctx.save_for_backward(ids_restore)
        ctx.p, ctx.hw = p, (imgs.shape[2], imgs.shape[3])
        return out, mask, ids_restore

    @staticmethod
    def backward(ctx, grad, _grad_mask, _grad_ids):
        (ids_restore,) = ctx.saved_tensors
        zero = grad.new_zeros(grad.shape[2])
        full = restore_tokens(grad.contiguous(), ids_restore, zero)  # masked patches get no gradient
        return unpatchify(full, ctx.p, ctx.hw), None, None, None, None


class _GatherTokens(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, ids_keep, name):
        ctx.save_for_backward(ids_keep)
        ctx.L = x.shape[1]
        return compiled.gather_tokens(x, ids_keep, name)

    @staticmethod
    def backward(ctx, grad):
        (ids_keep,) = ctx.saved_tensors
        return _scatter_add(grad, ids_keep, ctx.L), None, None


class _RestoreTokens(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_vis, ids_restore, mask_token, name):
        ctx.save_for_backward(ids_restore)
        ctx.K = x_vis.shape[1]
        return compiled.restore_tokens(x_vis, ids_restore, mask_token, name)

    @staticmethod
    def backward(ctx, grad):
        (ids_restore,) = ctx.saved_tensors
        full = _scatter_add(grad, ids_restore, ids_restore.shape[1])  # gradient of cat(x_vis, tokens)
        grad_x = full[:, : ctx.K] if ctx.needs_input_grad[0] else None
        grad_token = full[:, ctx.K :].sum(dim=(0, 1)) if ctx.needs_input_grad[2] else None
        return grad_x, None, grad_token, None


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """imgs: [B, C, H, W] -> [B, L, p*p*C], L = ceil(H/p) * ceil(W/p), patch vector layout (p, q, c).

    H and W need not be multiples of p: the last row/column of patches is zero-padded.
    """
    p = _checks.patch_size(p)
    _checks.tensor(imgs, "imgs", "[B, C, H, W]")
    name = _pick("imgs", imgs)
    if name == "torch":
        return ref.patchify(imgs, p)
    return _Patchify.apply(imgs, p, name)


def unpatchify(x: torch.Tensor, p: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """x: [B, L, p*p*C] -> imgs [B, C, H, W] with (H, W) = out_hw, cropping patchify's padding."""
    p = _checks.patch_size(p)
    H, W = _checks.out_hw(out_hw)
    _checks.tensor(x, "x", "[B, L, D]")
    if x.shape[2] % (p * p):
        raise ValueError(f"x.shape[2] = {x.shape[2]} is not C * p * p for p = {p}")
    h, w = grid_size(H, W, p)
    _checks.same_size("x", 1, x.shape[1], h * w, f"the number of {p}x{p} patches in {H}x{W}")
    name = _pick("x", x)
    if name == "torch":
        return ref.unpatchify(x, p, (H, W))
    return _Unpatchify.apply(x, p, (H, W), name)


def _noise(noise: torch.Tensor, B: int, L: int, device: torch.device) -> None:
    _checks.tensor(noise, "noise", "[B, L]", device=device, like="imgs/x")
    _checks.same_size("noise", 0, noise.shape[0], B, "the batch size")
    _checks.same_size("noise", 1, noise.shape[1], L, "the number of patches L")


def patchify_random_masking(
    imgs: torch.Tensor, p: int, noise: torch.Tensor, mask_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's patchify + random_masking in one pass, with the per-sample noise given.

    Args:
        imgs: [B, C, H, W]; p: patch size; noise: [B, L] float; mask_ratio: in [0, 1].
    Returns:
        x_masked [B, len_keep, D] (the kept patches, len_keep = int(L * (1 - mask_ratio)), in the order of
        a stable argsort of noise), mask [B, L] float32 (0 keep, 1 remove), ids_restore [B, L] int64.
    The compiled kernels read only the kept patches' pixels.
    """
    p = _checks.patch_size(p)
    ratio = _checks.mask_ratio(mask_ratio)
    _checks.tensor(imgs, "imgs", "[B, C, H, W]")
    h, w = grid_size(imgs.shape[2], imgs.shape[3], p)
    _noise(noise, imgs.shape[0], h * w, imgs.device)
    name = _pick("imgs", imgs)
    if name == "torch":
        return ref.patchify_random_masking(imgs, p, noise, ratio)
    return _PatchifyRandomMasking.apply(imgs, p, noise, len_keep_for(h * w, ratio), name)


def random_masking(
    x: torch.Tensor, noise: torch.Tensor, mask_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's random_masking on tokens x [B, L, D] given noise [B, L] -> (x_masked, mask, ids_restore)."""
    ratio = _checks.mask_ratio(mask_ratio)
    _checks.tensor(x, "x", "[B, L, D]")
    _noise(noise, x.shape[0], x.shape[1], x.device)
    name = _pick("x", x)
    if name == "torch":
        return ref.random_masking(x, noise, ratio)
    ids_keep, mask, ids_restore = compiled.random_masking_ids(noise, len_keep_for(x.shape[1], ratio), name)
    return _GatherTokens.apply(x, ids_keep, name), mask, ids_restore


def gather_tokens(x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """x: [B, L, D], ids_keep: [B, K] int64 in [0, L) -> [B, K, D] (out[b, k] = x[b, ids_keep[b, k]])."""
    _checks.tensor(x, "x", "[B, L, D]")
    _checks.tensor(ids_keep, "ids_keep", "[B, K]", dtypes=_checks.INDEX_DTYPES, device=x.device, like="x")
    _checks.same_size("ids_keep", 0, ids_keep.shape[0], x.shape[0], "the batch size")
    name = _pick("x", x)
    if name != "cpp":  # the C++ kernel checks indices as it goes
        _checks.indices_in_range(ids_keep, "ids_keep", x.shape[1])
    if name == "torch":
        return ref.gather_tokens(x, ids_keep)
    return _GatherTokens.apply(x, ids_keep, name)


def restore_tokens(x_vis: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
    """MAE decoder's unshuffle: x_vis [B, K, D], ids_restore [B, L], mask_token [D] or [1, 1, D] -> [B, L, D].

    Position l gets x_vis[b, ids_restore[b, l]] when that index is < K, else mask_token.
    """
    _checks.tensor(x_vis, "x_vis", "[B, K, D]")
    B, K, D = x_vis.shape
    _checks.tensor(ids_restore, "ids_restore", "[B, L]", dtypes=_checks.INDEX_DTYPES, device=x_vis.device,
                   like="x_vis")  # fmt: skip
    _checks.same_size("ids_restore", 0, ids_restore.shape[0], B, "the batch size")
    L = ids_restore.shape[1]
    if K > L:
        raise ValueError(f"x_vis has {K} tokens but ids_restore only {L} positions")
    if isinstance(mask_token, torch.Tensor) and mask_token.dim() == 3 and mask_token.shape[:2] == (1, 1):
        mask_token = mask_token.reshape(-1)
    _checks.tensor(mask_token, "mask_token", "[D]", dtypes=(x_vis.dtype,), device=x_vis.device, like="x_vis")
    _checks.same_size("mask_token", 0, mask_token.shape[0], D, "x_vis.shape[2]")
    name = _pick("x_vis", x_vis)
    if name != "cpp":
        _checks.indices_in_range(ids_restore, "ids_restore", L)
    if name == "torch":
        return ref.restore_tokens(x_vis, ids_restore, mask_token)
    return _RestoreTokens.apply(x_vis, ids_restore, mask_token, name)


def patch_occupancy(imgs: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """imgs: [B, C, H, W] -> occupied [B, L] bool (some pixel of the patch non-zero; -0 counts as zero,
    NaN as non-zero) and counts [B] int64 of occupied patches. Not differentiable."""
    p = _checks.patch_size(p)
    _checks.tensor(imgs, "imgs", "[B, C, H, W]")
    name = _pick("imgs", imgs)
    with torch.no_grad():
        if name == "torch":
            return ref.patch_occupancy(imgs, p)
        return compiled.patch_occupancy(imgs.detach(), p, name)
