"""Where a chunk's bytes go: stream names grouped into components (positions / values per channel, ...).

ImageCodec names its streams "c{i}.{kind}.{part}" for channel i (kind "px" pixels or "blk" block grid;
part "o" context-coded occupancy, or in older chunks "n" counts and "g" gaps = positions, "v" = values)
plus chunk-wide streams ("planes": which planes are block grids, "step", "latent", "f64", ...).
`component` maps a name to a label for reports; streams of other coders keep their own name, so a new
stream kind shows up as itself rather than disappearing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

_CHANNEL_STREAM = re.compile(r"c(\d+)\.([a-z0-9_]+)\.([a-z0-9_]+)")
_PARTS = {"o": "positions", "n": "positions", "g": "positions", "v": "values"}


def component(name: str, channels: Sequence[str] | None = None) -> str:
    """'positions ECAL', 'values ch1', 'planes', ... for a stream name."""
    m = _CHANNEL_STREAM.fullmatch(name)
    if m is None:
        return name
    i = int(m[1])
    channel = channels[i] if channels is not None and i < len(channels) else f"ch{i}"
    return f"{_PARTS.get(m[3], m[3])} {channel}"


def add_streams(
    totals: dict[str, int], sizes: Mapping[str, int] | Iterable[tuple[str, int]], channels=None
) -> dict[str, int]:
    """Accumulate stream sizes (name -> bytes) into totals per component; returns totals."""
    items = sizes.items() if isinstance(sizes, Mapping) else sizes
    for name, size in items:
        key = component(name, channels)
        totals[key] = totals.get(key, 0) + int(size)
    return totals


def per_jet(totals: Mapping[str, int], n_jets: int) -> dict[str, float]:
    """bytes/jet per component, the largest first."""
    n = max(int(n_jets), 1)
    return {k: v / n for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
