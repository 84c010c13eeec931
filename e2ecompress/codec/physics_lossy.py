"""The physics levels of the image codec (mode "physics", quality 1..5): relative precision inside the jet
cone, exact per-jet cone sums, exact positions inside the cone, counts and coarse values outside it.

Per chunk, channel and plane kind ("px": pixel planes; "blk": block grids of the planes found constant on
k x k blocks, with k found in the chunk's data by `sparse.detect_blocks`, never from a channel name), on the
non-zero cells (`c{i}.{kind}.` streams):

- inside the cone (`cone`: radius R pixels about the window centre) the positions are exact (".n" counts,
  ".g" gaps over the cone's own cells in raster order) and a value x is the index q of the nearest point of
  the logarithmic grid g_q = r^q, r = 1 + step / 4096 (".v": q less a reference, under the "direct" or
  "runs" predictor, whichever is smaller; ".sg": sign bits, only when a value is negative);
- per plane, the sum of x w over its cells inside the cone (w: pixels a cell covers) is restored by a
  factor 1 + t 2^-sum_bits on all of them (".s": t, for the planes with such cells), so decoded cone
  sums are exact within 2^-(sum_bits + 1) relative and every cone value within r - 1 relative;
- outside the cone, on plane kinds with at most `exact_cells` cells there (coarse grids: towers), the
  positions are exact (".on" counts, ".og" gaps over the outside cells) and the values on a coarser grid
  r_out in cell order (".ov", as ".v"); on the others a plane keeps, per ring about the axis (edges
  `rings`, pixels), its number of non-zero cells (".on") and their values on the coarser grid, sorted
  (".ov": per plane and ring the smallest code, then the rises), and the decoder draws their positions
  again inside their ring (`cone.regenerate`, seeded by the ".on" stream's CRC32C, the channel and the
  kind), so decoding is reproducible.

Zeros inside the cone stay zeros and non-zero values stay non-zero; no value changes sign. "phys" holds the
parameters and the block size k per channel, "planes" the plane code per jet of the channels with k > 0
(0: a pixel plane, else 1 + the block offset).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from e2ecompress import _core
from e2ecompress.codec import cone, ctxocc, sparse
from e2ecompress.codec import physics_values as pv
from e2ecompress.codec.intcode import compress_ints, decompress_ints
from e2ecompress.codec.physics_values import Level, get
from e2ecompress.errors import DecodeError

LEVELS = {  # in-cone relative bound r - 1: 400 %, 32 %, 16 %, 4 %, 1 %
    1: Level(16383, 16383, 6, rings=(), exact_cells=0),
    2: Level(1311, 4096, 8),
    3: Level(655, 4096, 9),
    4: Level(164, 4096, 11),
    5: Level(41, 2048, 13),
}
DEFAULT_LEVEL = 3
KINDS = ("px", "blk")


@dataclass
class _Part:
    """The cells of one channel and plane kind of a chunk."""

    c: int
    kind: str
    sel: np.ndarray  # jets whose plane is of this kind
    k: int  # block size (0 for pixel planes)
    var: np.ndarray  # geometry variant per plane (block offset, or 0)
    geo: cone.ConeGeometry
    exact_cells: int  # the level's limit for exact positions outside the cone

    @property
    def prefix(self) -> str:
        return f"c{self.c}.{self.kind}."

    @property
    def exact_outside(self) -> bool:
        return int(self.geo.n_out.sum(1).max()) <= self.exact_cells

    def seed(self, counts_stream: bytes) -> int:
        return (_core.crc32c(counts_stream) << 24) ^ (self.c << 1 | KINDS.index(self.kind))


def _cone_planes(pid: np.ndarray, idx: np.ndarray, part: _Part, n: int) -> np.ndarray:
    """bool [n, h, w] planes of a part's grid with the given cells set."""
    occ = np.zeros((n, part.geo.local.shape[1]), bool)
    occ[pid, idx] = True
    return occ.reshape(n, part.geo.height, part.geo.width)


def _plane_codes(codes: np.ndarray, ks: list[int]) -> np.ndarray:
    """Plane codes of the channels with blocks, FULL -> 0 and offset -> offset + 1."""
    cols = [c for c, k in enumerate(ks) if k]
    sub = codes[:, cols]
    return np.where(sub == sparse.FULL, 0, sub + 1).ravel()


class PhysicsCodec:
    """Compress / decompress chunks [B, C, H, W] float32 at one physics level (see the module docstring)."""

    def __init__(self, quality: int, n_channels: int, image_size: tuple[int, int]):
        if quality not in LEVELS:
            raise ValueError(f"physics quality must be one of {sorted(LEVELS)}, got {quality}")
        self.level = LEVELS[quality]
        self.n_channels = n_channels
        self.image_size = (int(image_size[0]), int(image_size[1]))

    def _parts(self, codes: np.ndarray, ks: list[int], level: Level) -> Iterator[_Part]:
        H, W = self.image_size
        for c, k in enumerate(ks):
            full = codes[:, c] == sparse.FULL
            geo = cone.geometry(H, W, 0, level.radius, level.rings)
            yield _Part(c, "px", full, 0, np.zeros(int(full.sum()), np.int64), geo, level.exact_cells)
            if k:
                geo = cone.geometry(H, W, k, level.radius, level.rings)
                yield _Part(c, "blk", ~full, k, codes[~full, c], geo, level.exact_cells)

    # -----------------------------------------------------------------------------------------------
    def compress(
        self, images: np.ndarray, decoded: bool = True
    ) -> tuple[dict[str, bytes], np.ndarray | None]:
        images = np.ascontiguousarray(images, np.float32)
        B, C = images.shape[:2]
        level = self.level
        ks = sparse.detect_blocks(images) if B else [0] * C
        codes = np.full((B, C), sparse.FULL, np.int64)
        for c, k in enumerate(ks):
            if k:
                codes[:, c] = sparse.find_block_offsets(images[:, c], k)
        streams = {"phys": pv.header_to_bytes(level, ks), "planes": compress_ints(_plane_codes(codes, ks))}
        out = np.zeros_like(images) if decoded else None
        previous = None  # cone occupancy of the previous channel when it has pixel planes only
        for part in self._parts(codes, ks, level):
            planes = images[part.sel, part.c]
            if part.k:
                planes = sparse.to_blocks(planes, part.var, part.k)
            n = len(planes)
            pid, idx = sparse.occupied_cells(planes)
            x = planes.reshape(n, planes.shape[1] * planes.shape[2])[pid, idx]
            loc = part.geo.local[part.var[pid], idx]
            inc = loc >= 0
            context = previous if not ks[part.c] else None
            s, rec = self._compress_cone(pid[inc], loc[inc], idx[inc], x[inc], part, n, level, context)
            if part.kind == "px":
                previous = None if ks[part.c] else _cone_planes(pid[inc], idx[inc], part, n)
            s2, (plane, cell, vals) = self._compress_outside(pid[~inc], idx[~inc], x[~inc], part, n, level)
            streams.update({part.prefix + key: v for key, v in {**s, **s2}.items()})
            if out is not None:
                cells = (np.concatenate([pid[inc], plane]), np.concatenate([idx[inc], cell]))
                self._scatter(out, part, *cells, np.concatenate([rec, vals]))
        return streams, out

    @staticmethod
    def _compress_cone(
        pid, loc, idx, x, part: _Part, n: int, level: Level, previous: np.ndarray | None = None
    ) -> tuple[dict[str, bytes], np.ndarray]:
        s = {}
        occ = _cone_planes(pid, idx, part, n)
        s["o"] = ctxocc.compress_planes(occ)  # cone cells only
        if previous is not None:  # channels sharing positions: the previous channel's cone as context
            shared = ctxocc.compress_planes(occ, ctxocc.near_context(previous))
            if len(shared) < len(s["o"]):
                s["o"] = shared
        q = pv.quantize(np.abs(x.astype(np.float64)), level.step)
        s["v"] = pv.compress_cone_values(q, pid, idx, part.geo.width, part.geo.height)
        neg = x < 0
        if neg.any():
            s["sg"] = np.packbits(neg).tobytes()
        g = pv.log_grid(level.step)[0][q]
        g = np.where(neg, -g, g)
        w = part.geo.weight[part.var[pid], idx].astype(np.float64)
        t = pv.sum_factors(x.astype(np.float64), w, pid, g, n, level)
        busy = np.bincount(pid, minlength=n) > 0
        s["s"] = compress_ints(t[busy], signed=True)
        return s, pv.cone_decoded(g, t[pid], level)

    def _compress_outside(self, pid, idx, x, part: _Part, n: int, level: Level):
        """Outside the cone: exact positions and coarse values in cell order (".on" / ".og" / ".ov") on
        kinds with few cells there, else counts per ring and sorted coarse values, positions drawn."""
        s = {}
        if part.exact_outside:
            s["on"], s["og"] = sparse.compress_occupancy(pid, part.geo.out_local[part.var[pid], idx], n)
            m = pv.outside_codes(x, level.out_step)
            s["ov"] = pv.compress_cone_values(m, pid, idx, part.geo.width, part.geo.height)
            return s, (pid, idx, pv.outside_decoded(m, level.out_step))
        nr = part.geo.n_out.shape[1]
        sub = pid * nr + part.geo.ring[part.var[pid], idx]  # plane and ring
        counts = np.bincount(sub, minlength=n * nr)
        s["on"] = compress_ints(counts)
        s["ov"], m = pv.compress_outside_values(x, sub, level.out_step)
        plane, cell = self._drawn_cells(counts, part, s["on"])
        return s, (plane, cell, pv.outside_decoded(m, level.out_step))

    @staticmethod
    def _drawn_cells(counts: np.ndarray, part: _Part, counts_stream: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Drawn positions of the cells outside the cone: (plane, grid index), by plane and ring."""
        n_rings = part.geo.n_out.shape[1]
        sub, number = cone.regenerate(counts, part.geo.n_out[part.var].ravel(), part.seed(counts_stream))
        plane, ring = np.divmod(sub, n_rings)
        return plane, part.geo.outside[part.var[plane], ring, number]

    def _scatter(
        self, out: np.ndarray, part: _Part, plane: np.ndarray, idx: np.ndarray, vals: np.ndarray
    ) -> None:
        C = out.shape[1]
        H, W = self.image_size
        flat = out.reshape(-1)
        jets = np.flatnonzero(part.sel)
        if not part.k:
            flat[(jets[plane] * C + part.c) * (H * W) + idx] = vals
            return
        cells = sparse.CellSet(plane, idx, part.geo.width)
        p, pix, src = sparse.expand_blocks(cells, part.var, part.k, self.image_size)
        flat[(jets[p] * C + part.c) * (H * W) + pix] = vals[src]

    # -----------------------------------------------------------------------------------------------
    def decompress(self, streams, n_jets: int, out: np.ndarray | None = None) -> np.ndarray:
        C = self.n_channels
        H, W = self.image_size
        level, ks = pv.header_from_bytes(get(streams, "phys"), C)
        blocky = [c for c, k in enumerate(ks) if k]
        codes = np.full((n_jets, C), sparse.FULL, np.int64)
        raw = decompress_ints(get(streams, "planes"), n_jets * len(blocky)).reshape(n_jets, len(blocky))
        for j, c in enumerate(blocky):
            if raw[:, j].max(initial=0) > ks[c] * ks[c]:
                raise DecodeError("planes: bad plane code")
            codes[:, c] = np.where(raw[:, j] == 0, sparse.FULL, raw[:, j] - 1)
        if out is None:
            out = np.zeros((n_jets, C, H, W), np.float32)
        else:
            out.fill(0)
        previous = None
        for part in self._parts(codes, ks, level):
            context = previous if not ks[part.c] else None
            pid, idx, rec = self._decompress_cone(streams, part, level, context)
            if part.kind == "px":
                previous = None if ks[part.c] else _cone_planes(pid, idx, part, len(part.var))
            plane, cell, vals = self._decompress_outside(streams, part, level)
            vals = np.concatenate([rec, vals])
            if not np.isfinite(vals).all():
                raise DecodeError(f"{part.prefix}v: value beyond the float32 range")
            self._scatter(out, part, np.concatenate([pid, plane]), np.concatenate([idx, cell]), vals)
        return out

    @staticmethod
    def _decompress_cone(streams, part: _Part, level: Level, previous: np.ndarray | None = None):
        p, geo, n = part.prefix, part.geo, len(part.var)
        grid = pv.log_grid(level.step)[0]
        data = get(streams, p + "o")
        context = None
        if ctxocc.uses_context(data):
            if previous is None:
                raise DecodeError(f"{p}o: coded with a context this chunk does not have")
            context = ctxocc.near_context(previous)
        occ = ctxocc.decompress_planes(data, n, geo.height, geo.width, context)
        pid, idx = sparse.occupied_cells(occ)
        if (geo.local[part.var[pid], idx] < 0).any():
            raise DecodeError(f"{p}o: cell outside the cone")
        g = grid[
            pv.decompress_cone_values(get(streams, p + "v"), pid, idx, geo.width, geo.height, 0, len(grid))
        ]
        if p + "sg" in streams:
            raw = np.frombuffer(streams[p + "sg"], np.uint8)
            if len(raw) != (len(g) + 7) // 8:
                raise DecodeError(f"{p}sg: bad size")
            g = np.where(np.unpackbits(raw)[: len(g)].astype(bool), -g, g)
        busy = np.bincount(pid, minlength=n) > 0
        t = np.zeros(n, np.int64)
        t[busy] = decompress_ints(get(streams, p + "s"), int(busy.sum()), signed=True)
        lo, hi = pv.sum_limits(level)
        if t.min(initial=0) < -lo or t.max(initial=0) > hi:
            raise DecodeError(f"{p}s: sum factor out of range")
        return pid, idx, pv.cone_decoded(g, t[pid], level)

    def _decompress_outside(self, streams, part: _Part, level: Level):
        p, geo, n = part.prefix, part.geo, len(part.var)
        n_grid = len(pv.log_grid(level.out_step)[0])
        if part.exact_outside:
            names = [get(streams, p + "on"), get(streams, p + "og")]
            pid, loc = sparse.decompress_occupancy(names, n, geo.out_cells.shape[1])
            if (loc >= geo.n_out[part.var[pid]].sum(1)).any():
                raise DecodeError(f"{p}og: cell out of range")
            idx = geo.out_cells[part.var[pid], loc]
            m = pv.decompress_cone_values(
                get(streams, p + "ov"), pid, idx, geo.width, geo.height, -n_grid, n_grid + 1
            )
            if (m == 0).any():
                raise DecodeError(f"{p}ov: code out of range")
            return pid, idx, pv.outside_decoded(m, level.out_step)
        counts_stream = get(streams, p + "on")
        counts = decompress_ints(counts_stream, geo.n_out.shape[1] * n)
        if (counts > geo.n_out[part.var].ravel()).any():
            raise DecodeError(f"{p}on: more cells than outside the cone")
        m = pv.decompress_outside_values(get(streams, p + "ov"), counts, level.out_step)
        plane, cell = self._drawn_cells(counts, part, counts_stream)
        return plane, cell, pv.outside_decoded(m, level.out_step)
