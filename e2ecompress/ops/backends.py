"""Which implementation runs the patch ops: compiled C++ (`cpp`), CUDA (`cuda`) or the torch reference.

`E2E_BACKEND=auto|cpp|cuda|torch` chooses; `set_backend` / `use_backend` override it in-process.
`auto` runs CUDA tensors on the CUDA kernels when they were built, CPU tensors on the C++ kernels, and
anything else (other devices, or a build without the kernels) on the torch reference. An explicit
`cpp` or `cuda` is strict: a tensor on the other device is a ValueError rather than a silent fallback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import torch

BACKENDS = ("auto", "cpp", "cuda", "torch")
ENV_VAR = "E2E_BACKEND"

try:
    from e2ecompress import _core as _core_module
except ImportError:  # a source tree without the compiled extension: the reference still works
    _core_module = None

_override: str | None = None


def core() -> ModuleType:
    """The compiled extension; ValueError when it was not built."""
    if _core_module is None:
        raise ValueError("the compiled backends need e2ecompress._core, which is not built")
    return _core_module


def has_cpp() -> bool:
    return _core_module is not None


def has_cuda() -> bool:
    """True when the CUDA kernels were compiled in (a GPU may still be missing at run time)."""
    return _core_module is not None and bool(_core_module.has_cuda)


def _check_name(name: str, source: str) -> str:
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {name!r} (choose one of {', '.join(BACKENDS)})")
    if name == "cpp" and not has_cpp():
        raise ValueError(f"{source}: backend 'cpp' needs the compiled extension e2ecompress._core")
    if name == "cuda" and not has_cuda():
        raise ValueError(f"{source}: backend 'cuda' is not available (built without E2E_CUDA)")
    return name


def requested_backend() -> str:
    """The configured name, not yet resolved for a device: set_backend's, else $E2E_BACKEND, else auto."""
    if _override is not None:
        return _override
    return _check_name(os.environ.get(ENV_VAR, "auto") or "auto", ENV_VAR)


def backend(device: torch.device | str | None = None) -> str:
    """The backend that runs ops on tensors of `device` (default: CPU): 'cpp', 'cuda' or 'torch'."""
    dev = torch.device("cpu" if device is None else device)
    name = requested_backend()
    if name != "auto":
        return name
    if dev.type == "cuda" and has_cuda():
        return "cuda"
    if dev.type == "cpu" and has_cpp():
        return "cpp"
    return "torch"


def set_backend(name: str | None) -> None:
    """Force a backend for this process; None returns to $E2E_BACKEND."""
    global _override
    _override = None if name is None else _check_name(name, "set_backend")


@contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Run a block with another backend, e.g. `with use_backend("torch"): ...`."""
    previous = _override
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)
