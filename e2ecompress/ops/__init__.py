"""Patch ops for the MAE: patchify, random masking, unpatchify, token gather/restore, patch occupancy.

Each op has a pure-torch reference (`e2ecompress.ops.reference`) and compiled kernels (C++/OpenMP and
CUDA) that match it exactly; `backend()` tells which one runs, `E2E_BACKEND` / `use_backend` choose.
"""

from e2ecompress.ops.backends import BACKENDS, backend, has_cpp, has_cuda, set_backend, use_backend
from e2ecompress.ops.functional import (
    gather_tokens,
    patch_occupancy,
    patchify,
    patchify_random_masking,
    random_masking,
    restore_tokens,
    unpatchify,
)

__all__ = [
    "BACKENDS",
    "backend",
    "gather_tokens",
    "has_cpp",
    "has_cuda",
    "patch_occupancy",
    "patchify",
    "patchify_random_masking",
    "random_masking",
    "restore_tokens",
    "set_backend",
    "unpatchify",
    "use_backend",
]
