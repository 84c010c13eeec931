"""Type stubs for the private compiled module; use the Python wrappers (e2ecompress.ops, ...) instead."""

import numpy as np
import numpy.typing as npt

has_cuda: bool

def crc32c(data: bytes | bytearray | memoryview | np.ndarray, value: int = 0) -> int: ...

# --- patch kernels (csrc/bindings/bind_patch.cpp) ----------------------------------------------------------
# Data arrays are C-contiguous bit patterns: int16 (float16/bfloat16), int32 (float32), int64 (float64);
# nothing is converted or copied, other dtypes/layouts raise TypeError. Bad sizes or indices: ValueError.

_Bits = npt.NDArray[np.int16] | npt.NDArray[np.int32] | npt.NDArray[np.int64]
_Noise = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_Ids = npt.NDArray[np.int64]

def patchify(imgs: _Bits, p: int) -> _Bits: ...
def unpatchify(x: _Bits, p: int, H: int, W: int) -> _Bits: ...
def patchify_random_masking(
    imgs: _Bits, p: int, noise: _Noise, len_keep: int
) -> tuple[_Bits, npt.NDArray[np.float32], _Ids]: ...
def random_masking_ids(noise: _Noise, len_keep: int) -> tuple[_Ids, npt.NDArray[np.float32], _Ids]: ...
def gather_tokens(x: _Bits, ids_keep: _Ids) -> _Bits: ...
def restore_tokens(x_vis: _Bits, ids_restore: _Ids, mask_token: _Bits) -> _Bits: ...
def patch_occupancy(imgs: _Bits, p: int) -> tuple[npt.NDArray[np.bool_], _Ids]: ...

# CUDA launchers, present only when has_cuda: device pointers and the stream are integers.
def patchify_cuda(
    imgs: int, out: int, itemsize: int, B: int, C: int, H: int, W: int, p: int, stream: int
) -> None: ...
def unpatchify_cuda(
    x: int, out: int, itemsize: int, B: int, C: int, H: int, W: int, p: int, stream: int
) -> None: ...
def patchify_random_masking_cuda(
    imgs: int,
    itemsize: int,
    B: int,
    C: int,
    H: int,
    W: int,
    p: int,
    noise: int,
    noise_itemsize: int,
    len_keep: int,
    out: int,
    mask: int,
    ids_restore: int,
    ids_keep: int,
    stream: int,
) -> None: ...
def random_masking_ids_cuda(
    noise: int,
    noise_itemsize: int,
    B: int,
    L: int,
    len_keep: int,
    ids_keep: int,
    mask: int,
    ids_restore: int,
    stream: int,
) -> None: ...
def gather_tokens_cuda(
    x: int, itemsize: int, B: int, L: int, D: int, ids_keep: int, K: int, out: int, stream: int
) -> None: ...
def restore_tokens_cuda(
    x_vis: int,
    itemsize: int,
    B: int,
    K: int,
    D: int,
    ids_restore: int,
    L: int,
    mask_token: int,
    out: int,
    stream: int,
) -> None: ...
def patch_occupancy_cuda(
    imgs: int, itemsize: int, B: int, C: int, H: int, W: int, p: int, occ: int, counts: int, stream: int
) -> None: ...

# --- rANS coder (csrc/bindings/bind_rans.cpp; wrappers in e2ecompress.codec.rans) ---------------------------
# Corrupt streams or table bytes raise e2ecompress.errors.DecodeError; bad arguments ValueError (TypeError for
# a non-integer symbol dtype or a non-int32 `out`).

_Bytes = bytes | bytearray | memoryview | np.ndarray

class RansTable:
    def __init__(self, freqs: npt.ArrayLike, prob_bits: int) -> None: ...
    @staticmethod
    def from_counts(counts: npt.ArrayLike, prob_bits: int = 14) -> RansTable: ...
    @staticmethod
    def from_bytes(data: _Bytes) -> RansTable: ...
    def to_bytes(self) -> bytes: ...
    @property
    def dims(self) -> int: ...
    @property
    def n_symbols(self) -> int: ...
    @property
    def prob_bits(self) -> int: ...
    @property
    def freqs(self) -> npt.NDArray[np.uint32]: ...
    def __eq__(self, other: object) -> bool: ...

def rans_build_freqs(counts: npt.ArrayLike, prob_bits: int = 14) -> npt.NDArray[np.uint32]: ...
def rans_encode(symbols: np.ndarray, table: RansTable, n_states: int = 0) -> bytes: ...
def rans_decode(
    data: _Bytes, table: RansTable, n_rows: int, out: npt.NDArray[np.int32] | None = None
) -> npt.NDArray[np.int32]: ...
def rans_simd(enabled: bool | None = None) -> bool: ...

# dense-plane scans (kernels/scan.h)
def nonzero_cells(planes: np.ndarray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def compare(x: np.ndarray, d: np.ndarray, bound: float) -> tuple[float, int, int, int]: ...

# context-modelled occupancy coder (kernels/ctxcode.h; wrapper: e2ecompress.codec.ctxocc)
def ctx_encode(occ: np.ndarray, context: np.ndarray | None = None, block: int = 5) -> bytes: ...
def ctx_decode(
    data: _Bytes, n: int, h: int, w: int, context: np.ndarray | None = None
) -> npt.NDArray[np.bool_]: ...

# context-modelled value coder (kernels/ctxval.h; wrapper: e2ecompress.codec.ctxval)
def ctxval_encode(
    values: np.ndarray, plane: np.ndarray, index: np.ndarray, height: int, width: int, kind: str
) -> bytes: ...
def ctxval_decode(
    data: _Bytes, plane: np.ndarray, index: np.ndarray, height: int, width: int, kind: str
) -> npt.NDArray[np.int64]: ...
