"""Shared test fixtures: a seeded generator and sparse jet-like images."""

from __future__ import annotations

import numpy as np
import pytest

from e2ecompress.layouts import IMAGE_SIZE


def sparse_images(
    rng: np.random.Generator,
    n: int,
    channels: int = 3,
    height: int = IMAGE_SIZE,
    width: int | None = None,
    occupancy: float = 0.03,
) -> np.ndarray:
    """[n, channels, height, width] float32, mostly exact zeros, positive energies elsewhere."""
    width = height if width is None else width
    images = np.zeros((n, channels, height, width), np.float32)
    hit = rng.random(images.shape) < occupancy
    images[hit] = rng.exponential(1.0, int(hit.sum())).astype(np.float32)
    return images


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.fixture
def make_images(rng):
    """make_images(n, channels=3, height=125, width=None, occupancy=0.03) with the test's rng."""

    def make(n: int, channels: int = 3, height: int = IMAGE_SIZE, width: int | None = None, occupancy=0.03):
        return sparse_images(rng, n, channels, height, width, occupancy)

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and OpenMP threads stall on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
