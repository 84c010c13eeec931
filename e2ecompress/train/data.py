"""Training data in memory as sparse pixels, read once from the parquet shards of a dataset directory.

Jet images are ~97-99% zeros, so a split is held as CSR-like arrays: `values` float32 and `index` int32
(flat position in C*H*W) of the non-zero pixels, with per-jet `offsets`. At ~1-3% occupancy that is
~5-10 KB per 3x125x125 jet instead of 187 KB dense, so 50k jets take a few hundred MB; batches are made
dense on the fly. Shuffling and rank sharding use torch's DistributedSampler (seeded by seed and epoch),
so the order is reproducible, the same for a resumed run, and disjoint across DDP ranks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from e2ecompress.errors import InputError
from e2ecompress.io import open_jets
from e2ecompress.models.normalizer import Normalizer

SUBSETS = ("labelled", "unlabelled")
SPLITS = ("train", "val", "test")
SIDE_COLUMNS = ("y", "eta", "pt", "m0")
READ_BATCH = 256


def shard_paths(root: str | os.PathLike, subset: str, split: str) -> list[Path]:
    if subset not in SUBSETS:
        raise InputError(None, f"unknown subset {subset!r} (known: {', '.join(SUBSETS)})")
    if split not in SPLITS:
        raise InputError(None, f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    where = Path(root) / subset / split
    paths = sorted(where.glob("*.parquet")) if where.is_dir() else []
    if not paths:
        raise InputError(os.fspath(where), "no parquet shards here (is --data a make-dataset directory?)")
    return paths


@dataclass
class SparseJets:
    """Jets as sparse pixels; `columns` holds the side columns (y, eta, ...) as numpy arrays."""

    shape: tuple[int, int, int]  # (C, H, W)
    values: np.ndarray  # float32 [nnz]
    index: np.ndarray  # int32 [nnz], flat position in C*H*W
    offsets: np.ndarray  # int64 [N + 1]
    columns: dict[str, np.ndarray]
    channels: tuple[str, ...] | None
    source: str = ""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def in_chans(self) -> int:
        return self.shape[0]

    @property
    def labels(self) -> np.ndarray:
        """y as int64 (1 quark, 0 gluon); InputError for unlabelled jets."""
        y = self.columns.get("y")
        if y is None or (len(y) and (np.isnan(y).any() or (y < 0).any())):
            raise InputError(self.source, "these jets have no labels (y is missing or -1)")
        return y.astype(np.int64)

    @classmethod
    def from_dense(
        cls, images: np.ndarray, columns: dict[str, np.ndarray], channels=None, source=""
    ) -> SparseJets:
        flat = images.reshape(len(images), -1)
        rows, cols = np.nonzero(flat)
        offsets = np.zeros(len(images) + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=len(images)), out=offsets[1:])
        return cls(
            tuple(images.shape[1:]),
            flat[rows, cols].astype(np.float32),
            cols.astype(np.int32),
            offsets,
            columns,
            channels,
            source,
        )

    @classmethod
    def load(
        cls, paths: Sequence[str | os.PathLike], max_jets: int | None = None, source: str = ""
    ) -> SparseJets:
        """Read shards in order (up to max_jets jets), keeping only the non-zero pixels."""
        parts: list[SparseJets] = []
        shape = channels = None
        n = 0
        for path in paths:
            with open_jets(path) as f:
                if shape is None:
                    shape, channels = f.image_shape, f.channels
                elif f.image_shape != shape or f.channels != channels:
                    raise InputError(
                        os.fspath(path),
                        f"image shape/channels {f.image_shape} {f.channels} differ "
                        f"from the first shard's {shape} {channels}",
                    )
                cols = [c for c in SIDE_COLUMNS if c in f.columns]
                for batch in f.iter_batches(READ_BATCH, cols):
                    images = batch.images
                    if max_jets is not None:
                        images = images[: max_jets - n]
                    side = {
                        c: batch.table.column(c).to_numpy()[: len(images)].astype(np.float64) for c in cols
                    }
                    parts.append(cls.from_dense(images, side, channels))
                    n += len(images)
                    if max_jets is not None and n >= max_jets:
                        break
            if max_jets is not None and n >= max_jets:
                break
        if not parts:
            raise InputError(source or None, "no jets")
        return concat(parts, source)

    def subset(self, idx: np.ndarray) -> SparseJets:
        idx = np.asarray(idx, dtype=np.int64)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        sel = _ranges(starts, ends)
        offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(ends - starts, out=offsets[1:])
        return SparseJets(
            self.shape,
            self.values[sel],
            self.index[sel],
            offsets,
            {k: v[idx] for k, v in self.columns.items()},
            self.channels,
            self.source,
        )

    def dense(self, idx: np.ndarray) -> np.ndarray:
        """Images [len(idx), C, H, W] float32."""
        idx = np.asarray(idx, dtype=np.int64)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        sel = _ranges(starts, ends)
        size = int(np.prod(self.shape))
        out = np.zeros((len(idx), size), np.float32)
        rows = np.repeat(np.arange(len(idx)), ends - starts)
        out[rows, self.index[sel]] = self.values[sel]
        return out.reshape(len(idx), *self.shape)

    def normalized(self, normalizer: Normalizer) -> SparseJets:
        """A copy whose pixel values are normalized (zeros stay zeros, so the sparsity is the same)."""
        if normalizer.in_chans != self.in_chans:
            raise InputError(
                self.source, f"the normalizer has {normalizer.in_chans} channels, the data {self.in_chans}"
            )
        channel = self.index // (self.shape[1] * self.shape[2])
        values = normalizer.normalize_values(self.values, channel).astype(np.float32)
        return SparseJets(
            self.shape, values, self.index, self.offsets, self.columns, self.channels, self.source
        )

    def iter_dense(self, batch_size: int) -> Iterator[np.ndarray]:
        for s in range(0, len(self), batch_size):
            yield self.dense(np.arange(s, min(s + batch_size, len(self))))

    def fit_normalizer(self, batch_size: int = 512) -> Normalizer:
        return Normalizer.fit(self.iter_dense(batch_size), self.channels)

    @property
    def occupancy(self) -> float:
        return float(len(self.values)) / max(len(self) * int(np.prod(self.shape)), 1)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenated aranges [starts[i], ends[i]) without a Python loop."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    first = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return first + np.arange(total)


def concat(parts: Sequence[SparseJets], source: str = "") -> SparseJets:
    offsets = [np.zeros(1, np.int64)]
    base = 0
    for p in parts:
        offsets.append(p.offsets[1:] + base)
        base += int(p.offsets[-1])
    columns = {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns}
    return SparseJets(
        parts[0].shape,
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.index for p in parts]),
        np.concatenate(offsets),
        columns,
        parts[0].channels,
        source,
    )


def load_split(root: str | os.PathLike, subset: str, split: str, max_jets: int | None = None) -> SparseJets:
    return SparseJets.load(
        shard_paths(root, subset, split), max_jets, source=f"{os.fspath(root)}/{subset}/{split}"
    )


def label_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A class-balanced subset: round(fraction * n_c) jets of each class c (at least 1), sorted indices.

    Depends only on (labels, fraction, seed): the same subset for every training seed, nested for a
    fixed seed (10% contains 1%), since each class uses one fixed permutation.
    """
    if fraction >= 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 20240601])
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        perm = rng.permutation(idx)
        keep.append(perm[: max(1, round(fraction * len(idx)))])
    return np.sort(np.concatenate(keep))


class _Sized:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
) -> list[np.ndarray]:
    """This rank's index batches for one epoch: every rank gets the same number of batches (the sampler
    pads by repeating jets when n is not a multiple of world_size); the last batch may be shorter."""
    sampler = DistributedSampler(_Sized(n), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    idx = np.fromiter(iter(sampler), dtype=np.int64)
    return [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]


def step_batches(
    n: int, batch_size: int, steps: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> list[np.ndarray]:
    """`steps` batches for one epoch of a step budget: consecutive shuffles of the n jets (each seeded by
    seed, epoch and its index), cut into batches of batch_size (min(batch_size, n) when n is smaller)."""
    size = min(batch_size, n)
    out: list[np.ndarray] = []
    pending = np.zeros(0, np.int64)
    k = 0
    while len(out) < steps:
        if len(pending) < size:
            perm = epoch_batches(n, n, seed + 7919 * k, epoch, rank, world_size)[0]
            pending = np.concatenate([pending, perm])
            k += 1
            continue
        out.append(pending[:size])
        pending = pending[size:]
    return out


def to_tensor(jets: SparseJets, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(jets.dense(idx)).to(device)
