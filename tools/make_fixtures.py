"""Write the backward-compatibility fixtures of the .e2ez format into tests/fixtures/.

    python tools/make_fixtures.py              # refuses to replace fixtures that are already there
    python tools/make_fixtures.py --force      # replace them (only for a deliberate format break)
    python tools/make_fixtures.py --out DIR    # write somewhere else, e.g. to compare with the committed ones

Files (together well under 200 KB):

- jets_small.parquet: 24 jets [ECAL, HCAL, Tracks] x 125 x 125, deterministic (seed 20261129), shaped
  like generated CMS jets: ECAL and Tracks sparse pixels above a threshold, HCAL constant on 5x5 towers at
  a random grid offset (every fourth jet: a pixel plane instead), plus the columns y (float), pt (double),
  parton_id (int32), jet_uid (int64) and sample (string).
- vN_bounded_0.01.e2ez, vN_lossless.e2ez, vN_physics_q3.e2ez, vN_bounded_0.1_unbiased.e2ez (N: the format
  version of this release): that file packed with --max-error 0.01, --lossless, --quality 3 and
  --max-error 0.1 --unbiased, 10 jets per chunk (3 chunks). (Version 2's first files had only the first
  two.)
- vN_expected.json: per fixture the SHA-256 of its decoded images (float32 little-endian, C order
  [N, C, H, W]) and summary numbers, plus the same for the input images.

tests/test_pack.py decodes the committed .e2ez files of every version and checks them against their
vN_expected.json, so any change to the container or the codec that stops old files from decoding to the
same images fails there. Fixtures of a new format version go beside the old ones, never over them; the
input file is shared (it is written only when missing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import pyarrow as pa

from e2ecompress import __version__, api
from e2ecompress.format import FORMAT_VERSION, ContainerReader
from e2ecompress.io import Batch, open_jets, write_jets

SEED = 20261129
N_JETS = 24
CHUNK = 10
CHANNELS = ("ECAL", "HCAL", "Tracks")
SIZE = 125
TOWER = 5
INPUT = "jets_small.parquet"
PREFIX = f"v{FORMAT_VERSION}_"
FIXTURES = {
    f"{PREFIX}bounded_0.01.e2ez": {"max_error": 0.01},
    f"{PREFIX}lossless.e2ez": {"lossless": True},
    f"{PREFIX}physics_q3.e2ez": {"quality": 3},
    f"{PREFIX}bounded_0.1_unbiased.e2ez": {"max_error": 0.1, "unbiased": True},
}
EXPECTED = f"{PREFIX}expected.json"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "fixtures")


def _pixels(rng: np.random.Generator, occupancy: float, threshold: float, scale: float) -> np.ndarray:
    """A sparse 125 x 125 plane: energies threshold + exponential(scale) at random pixels, else 0."""
    plane = np.zeros((SIZE, SIZE), np.float32)
    hit = rng.random(plane.shape) < occupancy
    plane[hit] = (threshold + rng.exponential(scale, int(hit.sum()))).astype(np.float32)
    return plane


def _towers(rng: np.random.Generator, occupancy: float) -> np.ndarray:
    """A plane constant on 5x5 towers whose grid is shifted by a random (oy, ox): HCAL."""
    grid = np.zeros((SIZE // TOWER + 2, SIZE // TOWER + 2), np.float32)
    hit = rng.random(grid.shape) < occupancy
    grid[hit] = (0.024 + rng.exponential(5.0, int(hit.sum())) / TOWER**2).astype(np.float32)
    full = np.repeat(np.repeat(grid, TOWER, 0), TOWER, 1)
    oy, ox = (int(v) for v in rng.integers(0, TOWER, 2))
    return full[(TOWER - oy) % TOWER :, (TOWER - ox) % TOWER :][:SIZE, :SIZE].copy()


def make_jets(seed: int = SEED, n: int = N_JETS) -> Batch:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, len(CHANNELS), SIZE, SIZE), np.float32)
    for j in range(n):
        images[j, 0] = _pixels(rng, 0.006, 0.12, 1.5)
        images[j, 1] = _pixels(rng, 0.01, 0.02, 0.3) if j % 4 == 3 else _towers(rng, 0.08)
        images[j, 2] = _pixels(rng, 0.002, 0.5, 6.0)
    table = pa.table(
        {
            "y": pa.array(rng.integers(0, 2, n).astype(np.float32)),
            "pt": pa.array(rng.uniform(20.0, 500.0, n)),
            "parton_id": pa.array(rng.choice([1, 2, 3, 4, 5, 21], n).astype(np.int32)),
            "jet_uid": pa.array(rng.integers(0, 2**62, n, dtype=np.int64)),
            "sample": pa.array([f"qg3-fixture-{j % 3}" for j in range(n)]),
        }
    )
    return Batch(images, table)


def images_sha256(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images, "<f4").tobytes()).hexdigest()


def summary(images: np.ndarray) -> dict:
    return {
        "n_jets": len(images),
        "images_sha256": images_sha256(images),
        "nonzero_pixels": int(np.count_nonzero(images)),
        "sum": float(images.sum(dtype=np.float64)),
        "max": float(images.max()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="directory (default: tests/fixtures)")
    p.add_argument("--force", action="store_true", help="replace existing fixtures")
    args = p.parse_args(argv)
    out = os.path.normpath(args.out)
    names = [INPUT, *FIXTURES, EXPECTED]
    there = [n for n in names[1:] if os.path.exists(os.path.join(out, n))]
    if there and not args.force:
        print(f"{out}: {', '.join(there)} exist; old fixtures stay as they are (--force)", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    src = os.path.join(out, INPUT)
    if not os.path.exists(src):  # shared by every version: written once
        jets = make_jets()
        write_jets(src, [jets], channels=CHANNELS, extra={"seed": SEED, "purpose": "e2ez v1 fixture"})
    with open_jets(src) as f:
        original = f.read().images
    expected = {
        "format_version": FORMAT_VERSION,
        "created_by": f"e2ecompress {__version__}",
        "chunk_size": CHUNK,
        "input": {"file": INPUT, **summary(original)},
        "fixtures": {},
    }
    for name, options in FIXTURES.items():
        path = os.path.join(out, name)
        api.pack(src, path, chunk_size=CHUNK, **options)
        decoded = api.read(path).images
        with ContainerReader(path) as r:
            chunks = [c.n_jets for c in r.chunks]
            mode = r.header["codec"]["mode"]
        expected["fixtures"][name] = {
            "mode": mode,
            "max_error": options.get("max_error"),
            "options": options,
            "chunks": chunks,
            "max_abs_error": float(np.abs(decoded - original).max()),
            **summary(decoded),
        }
    with open(os.path.join(out, EXPECTED), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    for name in names:
        print(f"{os.path.join(out, name)}: {os.path.getsize(os.path.join(out, name))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
