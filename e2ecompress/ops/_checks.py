"""Argument checks shared by the patch ops: every failure is a ValueError that names the argument."""

from __future__ import annotations

import numbers

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int64,)


def _names(dtypes: tuple[torch.dtype, ...]) -> str:
    return ", ".join(str(d).removeprefix("torch.") for d in dtypes)


def tensor(
    t: object,
    name: str,
    shape: str,
    *,
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
    device: torch.device | None = None,
    like: str = "",
) -> torch.Tensor:
    """Checks type, rank (from the shape string, e.g. "[B, C, H, W]"), dtype, device and contiguity.

    Non-contiguous tensors are refused rather than copied, on every backend, so a hidden copy never
    changes the cost of a call; pass `t.contiguous()` explicitly.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {shape}, got {type(t).__name__}")
    ndim = shape.count(",") + 1
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D {shape}, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        raise ValueError(f"{name} has dtype {str(t.dtype).removeprefix('torch.')}; expected {_names(dtypes)}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but {like or 'the other inputs'} on {device}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (pass {name}.contiguous())")
    return t


def patch_size(p: object) -> int:
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1:
        raise ValueError(f"patch size p must be a positive int, got {p!r}")
    return int(p)


def mask_ratio(r: object) -> float:
    if isinstance(r, bool) or not isinstance(r, numbers.Real) or not (0.0 <= float(r) <= 1.0):
        raise ValueError(f"mask_ratio must be a number in [0, 1], got {r!r}")  # NaN fails the test too
    return float(r)


def out_hw(hw: object) -> tuple[int, int]:
    try:
        H, W = hw  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"out_hw must be a pair (H, W), got {hw!r}") from None
    for v in (H, W):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"out_hw must hold two positive ints, got {hw!r}")
    return int(H), int(W)


def same_size(name: str, axis: int, got: int, want: int, what: str) -> None:
    if got != want:
        raise ValueError(f"{name}.shape[{axis}] is {got} but must equal {what} ({want})")


def indices_in_range(ids: torch.Tensor, name: str, high: int) -> None:
    """For backends whose kernels do not check indices themselves (torch, cuda; the latter syncs)."""
    if ids.numel() and bool(((ids < 0) | (ids >= high)).any()):
        raise ValueError(f"{name} has values outside [0, {high})")


def backend_device(name: str, t: torch.Tensor, backend: str) -> None:
    """An explicit cpp/cuda backend only runs tensors of its own device."""
    want = {"cpp": "cpu", "cuda": "cuda"}.get(backend)
    if want is not None and t.device.type != want:
        raise ValueError(f"{name} is on {t.device}, but backend {backend!r} runs on {want} tensors")
