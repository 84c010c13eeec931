"""Patch ops: compiled kernels equal the torch reference exactly, gradients, input checks, backend choice."""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ecompress import ops
from e2ecompress.ops import functional
from e2ecompress.ops import reference as ref

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
DTYPE_ID = [str(d).removeprefix("torch.") for d in FLOATS]
CUDA_OK = torch.cuda.is_available() and ops.has_cuda()

# (backend, device) pairs whose kernels are checked against the reference.
COMPILED = [
    pytest.param("cpp", "cpu", id="cpp", marks=pytest.mark.skipif(not ops.has_cpp(), reason="no _core")),
    pytest.param(
        "cuda",
        "cuda",
        id="cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA_OK, reason="no CUDA device or kernels")],
    ),
]
SETTINGS = settings(max_examples=40, deadline=None)


class _NoReference:
    def __getattr__(self, name):
        raise AssertionError(f"the compiled backend fell back to reference.{name}")


@contextmanager
def compiled(backend: str):
    """Runs the block on `backend`, failing if the public ops call the reference instead."""
    with ops.use_backend(backend), mock.patch.object(functional, "ref", _NoReference()):
        yield


def images(seed: int, shape, dtype=torch.float32, device="cpu", density=0.3) -> torch.Tensor:
    """Sparse images with both signed zeros among the zeros."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    keep = torch.rand(shape, generator=g) < density
    signed_zero = torch.where(torch.rand(shape, generator=g) < 0.5, -0.0, 0.0).to(torch.float64)
    return torch.where(keep, x, signed_zero).to(dtype).to(device)


def equal(got, want) -> None:
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape and g.device == w.device
        assert torch.equal(g.cpu(), w.cpu())  # no NaN in these data; -0 == +0 here, so also compare signs
        if g.is_floating_point():
            assert torch.equal(torch.signbit(g).cpu(), torch.signbit(w).cpu())


# Image shapes (B, H, W, p); the channel count and dtype are pytest parameters, so every compiled path
# (float32 with C = 3 or 8 takes the SIMD transposes; C = 1 and 5 the scalar loops) is covered each run.
shapes = st.tuples(st.integers(0, 3), st.integers(1, 40), st.integers(1, 40), st.integers(1, 17))
CHANNELS = [1, 3, 5, 8]
FEW = settings(max_examples=12, deadline=None)


@pytest.mark.parametrize(("backend", "device"), COMPILED)
@pytest.mark.parametrize("dtype", FLOATS, ids=DTYPE_ID)
@pytest.mark.parametrize("C", CHANNELS)
@FEW
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_patchify_unpatchify_match_reference(backend, device, dtype, C, shape, seed):
    B, H, W, p = shape
    imgs = images(seed, (B, C, H, W), dtype, device)
    want = ref.patchify(imgs, p)
    with compiled(backend):
        x = ops.patchify(imgs, p)
        equal(x, want)
        equal(ops.unpatchify(x, p, (H, W)), imgs)
        patches = images(seed + 1, tuple(x.shape), dtype, device)
        equal(ops.unpatchify(patches, p, (H, W)), ref.unpatchify(patches, p, (H, W)))


@pytest.mark.parametrize(("backend", "device"), COMPILED)
@pytest.mark.parametrize("C", [3, 8])
@pytest.mark.parametrize("p", [5, 8, 16])
def test_jet_sized_images(backend, device, C, p):
    imgs = images(C * p, (2, C, 125, 125), device=device, density=0.03)
    L = len(range(0, 125, p)) ** 2
    noise = torch.rand(2, L, generator=torch.Generator().manual_seed(p)).to(device)
    with compiled(backend):
        x = ops.patchify(imgs, p)
        equal(x, ref.patchify(imgs, p))
        equal(ops.unpatchify(x, p, (125, 125)), imgs)
        equal(
            ops.patchify_random_masking(imgs, p, noise, 0.75),
            ref.patchify_random_masking(imgs, p, noise, 0.75),
        )
        equal(ops.patch_occupancy(imgs, p), ref.patch_occupancy(imgs, p))


def noise_values(seed: int, shape, kind: str, dtype: torch.dtype, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        z = torch.rand(shape, generator=g, dtype=torch.float64)
    elif kind == "ties":  # few distinct values: the order is decided by the index
        z = torch.randint(0, 3, shape, generator=g).to(torch.float64)
    else:  # signed zeros, infinities and NaN (sorted last, ties by index)
        pool = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1.0, -1.0])
        z = pool[torch.randint(0, len(pool), shape, generator=g)].to(torch.float64)
    return z.to(dtype).to(device)


ratios = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9, 1.0]), st.floats(0, 1))
noise_kinds = st.sampled_from(["uniform", "ties", "special"])


@pytest.mark.parametrize(("backend", "device"), COMPILED)
@pytest.mark.parametrize("dtype", FLOATS, ids=DTYPE_ID)
@pytest.mark.parametrize("C", CHANNELS)
@FEW
@given(
    shape=shapes,
    noise_dtype=st.sampled_from(FLOATS),
    kind=noise_kinds,
    ratio=ratios,
    seed=st.integers(0, 2**31),
)
def test_patchify_random_masking_matches_reference(
    backend, device, dtype, C, shape, noise_dtype, kind, ratio, seed
):
    B, H, W, p = shape
    imgs = images(seed, (B, C, H, W), dtype, device)
    L = (-(-H // p)) * (-(-W // p))
    noise = noise_values(seed, (B, L), kind, noise_dtype, device)
    want = ref.patchify_random_masking(imgs, p, noise, ratio)
    with compiled(backend):
        got = ops.patchify_random_masking(imgs, p, noise, ratio)
    equal(got, want)
    x_masked, mask, ids_restore = got
    assert x_masked.shape == (B, int(L * (1 - ratio)), p * p * C)
    assert mask.dtype == torch.float32 and ids_restore.dtype == torch.int64
    assert torch.equal(mask.sum(1).cpu(), torch.full((B,), float(L - x_masked.shape[1])))


@pytest.mark.parametrize(("backend", "device"), COMPILED)
@SETTINGS
@given(B=st.integers(0, 3), L=st.integers(1, 50), D=st.integers(1, 9), dtype=st.sampled_from(FLOATS),
       kind=noise_kinds, ratio=ratios, seed=st.integers(0, 2**31))  # fmt: skip
def test_token_ops_match_reference(backend, device, B, L, D, dtype, kind, ratio, seed):
    x = images(seed, (B, L, D), dtype, device, density=0.8)
    noise = noise_values(seed, (B, L), kind, torch.float32, device)
    token = images(seed + 1, (D,), dtype, device, density=1.0)
    with compiled(backend):
        x_masked, mask, ids_restore = ops.random_masking(x, noise, ratio)
        equal((x_masked, mask, ids_restore), ref.random_masking(x, noise, ratio))
        equal(
            ops.restore_tokens(x_masked, ids_restore, token), ref.restore_tokens(x_masked, ids_restore, token)
        )
        # MAE's parameter shape [1, 1, D] is accepted too
        equal(ops.restore_tokens(x_masked, ids_restore, token.reshape(1, 1, D)),
              ref.restore_tokens(x_masked, ids_restore, token))  # fmt: skip
        ids = torch.randint(0, L, (B, 7), generator=torch.Generator().manual_seed(seed)).to(device)
        equal(ops.gather_tokens(x, ids), ref.gather_tokens(x, ids))


@pytest.mark.parametrize(("backend", "device"), COMPILED)
@pytest.mark.parametrize("dtype", FLOATS, ids=DTYPE_ID)
@FEW
@given(shape=shapes, C=st.sampled_from(CHANNELS), density=st.sampled_from([0.0, 0.01, 0.1]),
       seed=st.integers(0, 2**31))  # fmt: skip
def test_patch_occupancy_matches_reference(backend, device, dtype, shape, C, density, seed):
    B, H, W, p = shape
    imgs = images(seed, (B, C, H, W), dtype, device, density=density)
    with compiled(backend):
        equal(ops.patch_occupancy(imgs, p), ref.patch_occupancy(imgs, p))


@pytest.mark.parametrize(("backend", "device"), COMPILED)
@pytest.mark.parametrize("dtype", FLOATS, ids=DTYPE_ID)
def test_patch_occupancy_signed_zero_nan_and_tiny(backend, device, dtype):
    imgs = torch.zeros(1, 2, 4, 6, dtype=dtype)
    imgs[0, 0, 0, 0] = -0.0  # patch 0: only -0 -> empty
    imgs[0, 1, 1, 3] = torch.finfo(dtype).smallest_normal / 4  # patch 1: a subnormal -> occupied
    imgs[0, 1, 3, 5] = float("nan")  # patch 2: NaN -> occupied
    with compiled(backend):
        occ, counts = ops.patch_occupancy(imgs.to(device), 2)
    occ, counts = occ.cpu(), counts.cpu()
    want = torch.zeros(1, 6, dtype=torch.bool)
    want[0, 1] = want[0, 5] = True  # (row 0, col 1) and (row 1, col 2) in a 2x3 grid
    assert torch.equal(occ, want) and counts.tolist() == [2]


# --- gradients -------------------------------------------------------------------------------------------
# The cpp backend moves float64 too, so gradcheck runs the compiled forward and backward kernels.

GRAD_BACKENDS = [pytest.param("cpp", id="cpp"), pytest.param("torch", id="torch")]


def _f64(seed, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_gradcheck_patchify_unpatchify(backend):
    imgs = _f64(0, (2, 3, 7, 5)).requires_grad_()
    x = _f64(1, (2, 6, 3 * 9)).requires_grad_()
    with ops.use_backend(backend):
        assert torch.autograd.gradcheck(lambda t: ops.patchify(t, 3), (imgs,))
        assert torch.autograd.gradcheck(lambda t: ops.unpatchify(t, 3, (7, 5)), (x,))
        assert torch.autograd.gradgradcheck(lambda t: ops.patchify(t, 3), (imgs,))


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_gradcheck_masking_and_tokens(backend):
    imgs = _f64(2, (2, 2, 6, 7)).requires_grad_()
    noise = torch.rand(2, 6, generator=torch.Generator().manual_seed(3))
    tokens = _f64(4, (2, 6, 5)).requires_grad_()
    mask_token = _f64(5, (1, 1, 5)).requires_grad_()
    with ops.use_backend(backend):
        x_vis, _, ids_restore = ops.random_masking(tokens, noise, 0.5)
        vis = x_vis.detach().requires_grad_()
        ids = torch.tensor([[0, 0, 5], [2, 1, 0]])  # repeated ids: the backward must add
        assert torch.autograd.gradcheck(lambda t: ops.patchify_random_masking(t, 3, noise, 0.5)[0], (imgs,))
        assert torch.autograd.gradcheck(lambda t: ops.random_masking(t, noise, 0.5)[0], (tokens,))
        assert torch.autograd.gradcheck(lambda t: ops.gather_tokens(t, ids), (tokens,))
        assert torch.autograd.gradcheck(lambda v, m: ops.restore_tokens(v, ids_restore, m), (vis, mask_token))


def test_compiled_and_reference_gradients_agree():
    imgs = images(7, (3, 3, 11, 9)).requires_grad_()
    noise = torch.rand(3, 30, generator=torch.Generator().manual_seed(8))  # 6 x 5 patches
    token = torch.randn(12).requires_grad_()
    grads = {}
    for backend in ("cpp", "torch"):
        with ops.use_backend(backend):
            x_vis, _, ids_restore = ops.patchify_random_masking(imgs, 2, noise, 0.6)
            full = ops.restore_tokens(x_vis * 2, ids_restore, token)
            out = ops.unpatchify(full, 2, (11, 9))
            (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
        grads[backend] = (imgs.grad.clone(), token.grad.clone())
        imgs.grad = token.grad = None
    torch.testing.assert_close(grads["cpp"], grads["torch"], rtol=0, atol=0)
    assert grads["cpp"][0].abs().sum() > 0 and grads["cpp"][1].abs().sum() > 0


# --- input checks ----------------------------------------------------------------------------------------

BACKEND_NAMES = [pytest.param("cpp", id="cpp"), pytest.param("torch", id="torch")]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_bad_images_raise(backend):
    good = torch.zeros(2, 3, 8, 8)
    with ops.use_backend(backend):
        with pytest.raises(ValueError, match=r"imgs must be 4-D"):
            ops.patchify(torch.zeros(3, 8, 8), 4)
        with pytest.raises(ValueError, match=r"imgs has dtype int32"):
            ops.patchify(good.int(), 4)
        with pytest.raises(ValueError, match=r"imgs must be contiguous"):
            ops.patchify(good.transpose(2, 3), 4)
        with pytest.raises(ValueError, match=r"imgs must be a torch.Tensor"):
            ops.patch_occupancy(good.numpy(), 4)
        with pytest.raises(ValueError, match=r"patch size p must be a positive int"):
            ops.patchify(good, 0)
        with pytest.raises(ValueError, match=r"patch size p"):
            ops.patch_occupancy(good, 2.0)
        with pytest.raises(ValueError, match=r"imgs must be contiguous"):
            ops.patchify_random_masking(good[:, :, ::2], 4, torch.rand(2, 2), 0.5)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_bad_unpatchify_args_raise(backend):
    x = torch.zeros(2, 4, 3 * 16)
    with ops.use_backend(backend):
        with pytest.raises(ValueError, match=r"x.shape\[1\] is 4 but must equal the number of 4x4 patches"):
            ops.unpatchify(x, 4, (9, 8))
        with pytest.raises(ValueError, match=r"not C \* p \* p"):
            ops.unpatchify(x, 3, (6, 6))
        with pytest.raises(ValueError, match=r"out_hw must be a pair"):
            ops.unpatchify(x, 4, 8)
        with pytest.raises(ValueError, match=r"out_hw must hold two positive ints"):
            ops.unpatchify(x, 4, (8, 0))
        with pytest.raises(ValueError, match=r"x must be 3-D"):
            ops.unpatchify(x[0], 4, (8, 8))
        with pytest.raises(ValueError, match=r"x must be contiguous"):
            ops.unpatchify(torch.zeros(2, 48, 4).transpose(1, 2), 4, (8, 8))


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_bad_masking_args_raise(backend):
    imgs = torch.zeros(2, 3, 8, 8)
    noise = torch.rand(2, 4)
    with ops.use_backend(backend):
        with pytest.raises(ValueError, match=r"noise.shape\[1\] is 5 but must equal the number of patches L"):
            ops.patchify_random_masking(imgs, 4, torch.rand(2, 5), 0.5)
        with pytest.raises(ValueError, match=r"noise.shape\[0\] is 3 but must equal the batch size"):
            ops.patchify_random_masking(imgs, 4, torch.rand(3, 4), 0.5)
        with pytest.raises(ValueError, match=r"noise has dtype int64"):
            ops.patchify_random_masking(imgs, 4, torch.zeros(2, 4, dtype=torch.int64), 0.5)
        with pytest.raises(ValueError, match=r"noise must be contiguous"):
            ops.random_masking(torch.zeros(2, 4, 5), torch.rand(4, 2).t(), 0.5)
        with pytest.raises(ValueError, match=r"noise is on meta but imgs/x on cpu"):
            ops.patchify_random_masking(imgs, 4, noise.to("meta"), 0.5)
        for ratio in (1.5, -0.1, float("nan"), "0.5", True):
            with pytest.raises(ValueError, match=r"mask_ratio must be a number in \[0, 1\]"):
                ops.patchify_random_masking(imgs, 4, noise, ratio)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_bad_token_args_raise(backend):
    x = torch.zeros(2, 3, 4)
    ids = torch.tensor([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    token = torch.zeros(4)
    with ops.use_backend(backend):
        with pytest.raises(ValueError, match=r"ids_restore has values outside \[0, 5\)|index out of range"):
            ops.restore_tokens(x, ids + 1, token)
        with pytest.raises(ValueError, match=r"ids_keep has values outside \[0, 3\)|index out of range"):
            ops.gather_tokens(x, torch.tensor([[0], [-1]]))
        with pytest.raises(ValueError, match=r"ids_keep has dtype int32"):
            ops.gather_tokens(x, ids.int())
        with pytest.raises(ValueError, match=r"ids_keep.shape\[0\] is 1"):
            ops.gather_tokens(x, ids[:1])
        with pytest.raises(ValueError, match=r"ids_keep is on meta but x on cpu"):
            ops.gather_tokens(x, ids.to("meta"))
        with pytest.raises(ValueError, match=r"mask_token has dtype float64"):
            ops.restore_tokens(x, ids, token.double())
        with pytest.raises(ValueError, match=r"mask_token.shape\[0\] is 5"):
            ops.restore_tokens(x, ids, torch.zeros(5))
        with pytest.raises(ValueError, match=r"mask_token is on meta"):
            ops.restore_tokens(x, ids, token.to("meta"))
        with pytest.raises(ValueError, match=r"x_vis has 3 tokens but ids_restore only 2 positions"):
            ops.restore_tokens(x, ids[:, :2].contiguous(), token)
        with pytest.raises(ValueError, match=r"ids_restore must be contiguous"):
            ops.restore_tokens(x, torch.zeros(5, 2, dtype=torch.int64).t(), token)


def test_compiled_backend_refuses_other_devices():
    with (
        ops.use_backend("cpp"),
        pytest.raises(ValueError, match=r"imgs is on meta, but backend 'cpp' runs on cpu"),
    ):
        ops.patchify(torch.zeros(1, 1, 4, 4, device="meta"), 2)


def test_kernels_refuse_silent_copies_and_check_sizes():
    core = pytest.importorskip("e2ecompress._core")
    with pytest.raises(TypeError):  # float64 data is not reinterpreted or converted
        core.patchify(np.zeros((1, 1, 4, 4)), 2)
    with pytest.raises(TypeError):  # nor is a strided view copied
        core.patchify(np.zeros((1, 1, 4, 8), np.int32)[..., ::2], 2)
    with pytest.raises(ValueError, match=r"len_keep must be in \[0, L\]"):
        core.patchify_random_masking(np.zeros((1, 1, 4, 4), np.int32), 2, np.zeros((1, 4), np.float32), 5)
    with pytest.raises(ValueError, match=r"noise.shape\[1\] must be 4"):
        core.patchify_random_masking(np.zeros((1, 1, 4, 4), np.int32), 2, np.zeros((1, 3), np.float32), 1)
    with pytest.raises(ValueError, match=r"patch size p must be >= 1"):
        core.patch_occupancy(np.zeros((1, 1, 4, 4), np.int16), 0)
    with pytest.raises(ValueError, match=r"x.shape\[1\] must be 4"):
        core.unpatchify(np.zeros((1, 3, 4), np.int32), 2, 4, 4)


# --- backend choice --------------------------------------------------------------------------------------


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv("E2E_BACKEND", "torch")
    assert ops.backend() == "torch"
    monkeypatch.setenv("E2E_BACKEND", "auto")
    assert ops.backend("cpu") == ("cpp" if ops.has_cpp() else "torch")
    assert ops.backend("meta") == "torch"
    assert ops.backend("cuda") == ("cuda" if ops.has_cuda() else "torch")
    monkeypatch.setenv("E2E_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"E2E_BACKEND: unknown backend 'fast'"):
        ops.backend()


def test_backend_override_and_restore(monkeypatch):
    monkeypatch.setenv("E2E_BACKEND", "torch")
    with ops.use_backend("cpp"):
        assert ops.backend() == "cpp"
        with ops.use_backend("torch"):
            assert ops.backend() == "torch"
        assert ops.backend() == "cpp"
    assert ops.backend() == "torch"
    with pytest.raises(ValueError, match=r"unknown backend 'gpu'"):
        ops.set_backend("gpu")
    if not ops.has_cuda():
        with pytest.raises(ValueError, match=r"backend 'cuda' is not available"):
            ops.set_backend("cuda")
    assert ops.backend() == "torch"


def test_torch_backend_runs_the_reference(monkeypatch):
    calls = []
    monkeypatch.setattr(ref, "patchify", lambda imgs, p: calls.append(p) or torch.zeros(1))
    with ops.use_backend("torch"):
        ops.patchify(torch.zeros(1, 1, 4, 4), 2)
    assert calls == [2]
