"""Calls into the compiled kernels (`cpp` on CPU tensors, `cuda` on CUDA tensors).

Inputs arrive checked (contiguous, supported dtype, right device). CPU tensors cross as zero-copy NumPy
views of their bits (float16/bfloat16 -> int16, float32 -> int32, float64 -> int64), since the kernels
only move data; CUDA tensors cross as device pointers, on torch's current stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from e2ecompress.ops.backends import core
from e2ecompress.ops.reference import grid_size

_BITS = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def _np(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return t.view(_BITS.get(t.dtype, t.dtype)).numpy()


def _tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(a)
    return t.view(dtype) if dtype in _BITS else t


def _noise(noise: torch.Tensor) -> torch.Tensor:
    # float16/bfloat16 widen to float32 exactly, so the order (ties, NaN, -0) is unchanged.
    return noise.detach() if noise.dtype in (torch.float32, torch.float64) else noise.detach().float()


@contextmanager
def _cuda(t: torch.Tensor) -> Iterator[int]:
    """Makes t's GPU current and yields torch's current stream there as an integer."""
    with torch.cuda.device(t.device):
        yield torch.cuda.current_stream(t.device).cuda_stream


def patchify(imgs: torch.Tensor, p: int, backend: str) -> torch.Tensor:
    B, C, H, W = imgs.shape
    if backend == "cpp":
        return _tensor(core().patchify(_np(imgs), p), imgs.dtype)
    h, w = grid_size(H, W, p)
    out = torch.empty(B, h * w, p * p * C, dtype=imgs.dtype, device=imgs.device)
    with _cuda(imgs) as stream:
        core().patchify_cuda(imgs.data_ptr(), out.data_ptr(), imgs.element_size(), B, C, H, W, p, stream)
    return out


def unpatchify(x: torch.Tensor, p: int, out_hw: tuple[int, int], backend: str) -> torch.Tensor:
    H, W = out_hw
    if backend == "cpp":
        return _tensor(core().unpatchify(_np(x), p, H, W), x.dtype)
    B, _, D = x.shape
    C = D // (p * p)
    out = torch.empty(B, C, H, W, dtype=x.dtype, device=x.device)
    with _cuda(x) as stream:
        core().unpatchify_cuda(x.data_ptr(), out.data_ptr(), x.element_size(), B, C, H, W, p, stream)
    return out


def patchify_random_masking(
    imgs: torch.Tensor, p: int, noise: torch.Tensor, len_keep: int, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    noise = _noise(noise)
    if backend == "cpp":
        out, mask, ids_restore = core().patchify_random_masking(_np(imgs), p, noise.numpy(), len_keep)
        return _tensor(out, imgs.dtype), torch.from_numpy(mask), torch.from_numpy(ids_restore)
    B, C, H, W = imgs.shape
    L = noise.shape[1]
    dev = imgs.device
    out = torch.empty(B, len_keep, p * p * C, dtype=imgs.dtype, device=dev)
    mask = torch.empty(B, L, dtype=torch.float32, device=dev)
    ids_restore = torch.empty(B, L, dtype=torch.int64, device=dev)
    ids_keep = torch.empty(B, len_keep, dtype=torch.int64, device=dev)
    with _cuda(imgs) as stream:
        core().patchify_random_masking_cuda(
            imgs.data_ptr(), imgs.element_size(), B, C, H, W, p,
            noise.data_ptr(), noise.element_size(), len_keep,
            out.data_ptr(), mask.data_ptr(), ids_restore.data_ptr(), ids_keep.data_ptr(), stream,
        )  # fmt: skip
    return out, mask, ids_restore


def random_masking_ids(
    noise: torch.Tensor, len_keep: int, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    noise = _noise(noise)
    if backend == "cpp":
        ids_keep, mask, ids_restore = core().random_masking_ids(noise.numpy(), len_keep)
        return torch.from_numpy(ids_keep), torch.from_numpy(mask), torch.from_numpy(ids_restore)
    B, L = noise.shape
    dev = noise.device
    ids_keep = torch.empty(B, len_keep, dtype=torch.int64, device=dev)
    mask = torch.empty(B, L, dtype=torch.float32, device=dev)
    ids_restore = torch.empty(B, L, dtype=torch.int64, device=dev)
    with _cuda(noise) as stream:
        core().random_masking_ids_cuda(
            noise.data_ptr(), noise.element_size(), B, L, len_keep,
            ids_keep.data_ptr(), mask.data_ptr(), ids_restore.data_ptr(), stream,
        )  # fmt: skip
    return ids_keep, mask, ids_restore


def gather_tokens(x: torch.Tensor, ids_keep: torch.Tensor, backend: str) -> torch.Tensor:
    if backend == "cpp":
        return _tensor(core().gather_tokens(_np(x), _np(ids_keep)), x.dtype)
    B, L, D = x.shape
    K = ids_keep.shape[1]
    out = torch.empty(B, K, D, dtype=x.dtype, device=x.device)
    with _cuda(x) as stream:
        core().gather_tokens_cuda(
            x.data_ptr(), x.element_size(), B, L, D, ids_keep.data_ptr(), K, out.data_ptr(), stream
        )
    return out


def restore_tokens(
    x_vis: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor, backend: str
) -> torch.Tensor:
    if backend == "cpp":
        out = core().restore_tokens(_np(x_vis), _np(ids_restore), _np(mask_token))
        return _tensor(out, x_vis.dtype)
    B, K, D = x_vis.shape
    L = ids_restore.shape[1]
    out = torch.empty(B, L, D, dtype=x_vis.dtype, device=x_vis.device)
    with _cuda(x_vis) as stream:
        core().restore_tokens_cuda(
            x_vis.data_ptr(), x_vis.element_size(), B, K, D, ids_restore.data_ptr(), L,
            mask_token.data_ptr(), out.data_ptr(), stream,
        )  # fmt: skip
    return out


def patch_occupancy(imgs: torch.Tensor, p: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "cpp":
        occ, counts = core().patch_occupancy(_np(imgs), p)
        return torch.from_numpy(occ), torch.from_numpy(counts)
    B, C, H, W = imgs.shape
    h, w = grid_size(H, W, p)
    occ = torch.empty(B, h * w, dtype=torch.bool, device=imgs.device)
    counts = torch.empty(B, dtype=torch.int64, device=imgs.device)
    with _cuda(imgs) as stream:
        core().patch_occupancy_cuda(
            imgs.data_ptr(), imgs.element_size(), B, C, H, W, p, occ.data_ptr(), counts.data_ptr(), stream
        )
    return occ, counts
