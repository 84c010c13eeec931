"""The dense-plane scans (C++): nonzero_cells and compare against numpy on random sparse arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ecompress import _core


def _sparse(rng, shape, dtype, occupancy):
    x = np.where(rng.random(shape) < occupancy, rng.normal(size=shape), 0).astype(dtype)
    return x


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    n=st.integers(0, 5),
    h=st.integers(1, 19),
    w=st.integers(1, 19),
    occupancy=st.sampled_from([0.0, 0.02, 0.3, 1.0]),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]),
    seed=st.integers(0, 2**16),
)
def test_nonzero_cells_matches_numpy(n, h, w, occupancy, dtype, seed):
    rng = np.random.default_rng(seed)
    x = _sparse(rng, (n, 3, h, w), dtype, occupancy)
    if x.size and np.dtype(dtype).kind == "f":
        x.flat[0] = -0.0  # == 0: not occupied for floats
    for c in range(3):  # strided planes: a channel of [B, C, H, W]
        got = _core.nonzero_cells(x[:, c])
        want = np.nonzero(x[:, c].reshape(n, h * w) != 0)
        assert all(np.array_equal(g, v) for g, v in zip(got, want, strict=True))


def test_nonzero_cells_bit_patterns_and_bad_input():
    x = np.zeros((2, 4, 4), np.float32)
    x[1, 2, 3] = -0.0
    assert len(_core.nonzero_cells(x)[0]) == 0
    plane, index = _core.nonzero_cells(x.view(np.int32))  # lossless mode keys on bits: -0.0 counts
    assert plane.tolist() == [1] and index.tolist() == [11]
    with pytest.raises(ValueError, match="contiguous within each plane"):
        _core.nonzero_cells(np.zeros((2, 4, 4), np.float32)[:, :, ::2])
    with pytest.raises(ValueError, match="float32, float64, int32, int64, uint8 or bool"):
        _core.nonzero_cells(np.zeros((2, 4), np.int16))


@pytest.mark.parametrize("xd", [(np.float32, np.float32), (np.float64, np.float32), (np.float64, np.float64)])
def test_compare_matches_numpy(xd):
    rng = np.random.default_rng(3)
    x = _sparse(rng, (4, 3, 9, 7), xd[0], 0.1)
    d = (x + rng.uniform(-0.01, 0.01, x.shape) * (x != 0)).astype(xd[1])
    err, false_nz, bits, first = _core.compare(x, d, 0.02)
    assert err == pytest.approx(np.abs(d.astype(np.float64) - x).max(), rel=0, abs=0)
    assert (false_nz, first) == (0, -1)
    if xd[0] == xd[1]:
        item = x.dtype.itemsize
        differ = np.any(x.view(np.uint8).reshape(-1, item) != d.view(np.uint8).reshape(-1, item), axis=1)
        assert bits == int(differ.sum())
    d.flat[5] = 1.0 if x.flat[5] == 0 else 0.0  # a false non-zero, or a cell far off
    err, false_nz, _, first = _core.compare(x, d, 0.02)
    assert first == 5 and false_nz == int(x.flat[5] == 0)
    d.flat[5] = np.nan
    assert _core.compare(x, d, 0.02)[0] == np.inf and _core.compare(x, d, 0.02)[3] == 5
