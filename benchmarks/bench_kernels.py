"""Patch kernels against the torch reference and a plain copy, on batches of C×125×125 images.

Run: OMP_NUM_THREADS=2 python benchmarks/bench_kernels.py [--batch 256] [--min-time 0.5]

Each op is first checked to equal the reference exactly, then timed (best and median of at least
`--min-iters` calls and `--min-time` seconds; the ratios use the best). GB/s counts the bytes an op must
touch: unpatchify reads the patches and writes the image; patchify+mask reads only the kept patches'
pixels and writes them plus mask and ids_restore (at p = 5 a patch row is 20 bytes, so the cache lines
actually read are ~2-3x that). The yardsticks copy the op's input, counted as read + write GB/s:
`torch.clone` (a fresh output, as the ops allocate theirs) and `np.copyto` into a buffer already paged
in. Targets: patchify+mask >= 3x the reference, unpatchify >= 1.5x, and both reach at least half the
faster copy's GB/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from e2ecompress import ops
from e2ecompress.ops import reference as ref

IMAGE = 125
MASK_RATIO = 0.75


def timeit(fn: Callable[[], object], min_iters: int, min_time: float) -> tuple[float, float]:
    """(best, median) seconds per call over at least min_iters calls and min_time seconds."""
    fn()  # warm up: page in, thread pools
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def jet_like(B: int, C: int, seed: int) -> torch.Tensor:
    """Sparse positive images (~3% non-zero), the shape and density of the jet images."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, IMAGE, IMAGE, generator=g)
    return torch.where(x > 0.97, x, torch.zeros(()))


def copy_yardsticks(t: torch.Tensor, timing: dict) -> tuple[float, float]:
    """GB/s (read + write) of copying t: torch.clone (a fresh output, as the ops allocate theirs) and
    np.copyto into a buffer whose pages are already mapped (no page faults: the stricter yardstick)."""
    src = t.numpy()
    dst = np.empty_like(src)
    np.copyto(dst, src)
    clone = timeit(t.clone, **timing)
    copyto = timeit(lambda: np.copyto(dst, src), **timing)
    return 2 * nbytes(t) / clone[0] / 1e9, 2 * nbytes(t) / copyto[0] / 1e9


def report(
    op: str, C: int, p: int, fused, base, moved: int, copies: tuple[float, float], target: float
) -> bool:
    """Prints one line; True when both targets are met. fused/base are (best, median) seconds; the
    bandwidth target is checked against the stricter copy."""
    speedup = base[0] / fused[0]
    gbs = moved / fused[0] / 1e9
    clone_gbs, copyto_gbs = copies
    ok_speed, ok_bw = speedup >= target, gbs >= 0.5 * max(copies)
    print(
        f"{op:<13} C={C} p={p:<2} | fused {fused[0] * 1e3:6.2f} ms (med {fused[1] * 1e3:6.2f})"
        f" {gbs:5.2f} GB/s | torch {base[0] * 1e3:6.2f} ms (med {base[1] * 1e3:6.2f})"
        f" x{speedup:5.2f} {'PASS' if ok_speed else 'MISS'}"
        f" | clone {clone_gbs:5.2f} GB/s (x{gbs / clone_gbs:4.2f}), copyto {copyto_gbs:5.2f} GB/s"
        f" (x{gbs / copyto_gbs:4.2f}) {'PASS' if ok_bw else 'MISS'}"
    )
    return ok_speed and ok_bw


def bench_masking(imgs: torch.Tensor, p: int, timing: dict) -> bool:
    B, C, H, W = imgs.shape
    L = len(range(0, H, p)) * len(range(0, W, p))
    noise = torch.rand(B, L, generator=torch.Generator().manual_seed(p))
    got = ops.patchify_random_masking(imgs, p, noise, MASK_RATIO)
    want = ref.patchify_random_masking(imgs, p, noise, MASK_RATIO)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True)), ("patchify+mask", C, p)
    fused = timeit(lambda: ops.patchify_random_masking(imgs, p, noise, MASK_RATIO), **timing)
    base = timeit(lambda: ref.patchify_random_masking(imgs, p, noise, MASK_RATIO), **timing)
    copies = copy_yardsticks(imgs, timing)
    # touched: the kept pixels (read) and the visible patches (written), noise, mask and ids_restore
    moved = 2 * nbytes(got[0]) + nbytes(noise, *got[1:])
    return report("patchify+mask", C, p, fused, base, moved, copies, 3.0)


def bench_unpatchify(imgs: torch.Tensor, p: int, timing: dict) -> bool:
    C, H, W = imgs.shape[1:]
    x = ref.patchify(imgs, p)
    out = ops.unpatchify(x, p, (H, W))
    assert torch.equal(out, imgs) and torch.equal(out, ref.unpatchify(x, p, (H, W))), ("unpatchify", C, p)
    fused = timeit(lambda: ops.unpatchify(x, p, (H, W)), **timing)
    base = timeit(lambda: ref.unpatchify(x, p, (H, W)), **timing)
    return report("unpatchify", C, p, fused, base, nbytes(x, out), copy_yardsticks(x, timing), 1.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, nargs="+", default=[3, 8])
    parser.add_argument("--patch", type=int, nargs="+", default=[5, 8, 16])
    parser.add_argument("--min-iters", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args()

    ops.set_backend("cpp")
    print(
        f"backend {ops.backend()}, torch {torch.__version__} threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, batch {args.batch} x C x {IMAGE}^2 "
        f"float32, mask_ratio {MASK_RATIO}; best (median) of >= {args.min_iters} calls and {args.min_time} s"
    )
    print(
        "targets: fused/torch >= 3x (patchify+mask), >= 1.5x (unpatchify); fused GB/s >= 0.5x the faster copy"
    )
    timing = {"min_iters": args.min_iters, "min_time": args.min_time}
    all_ok = True
    with torch.no_grad():
        for C in args.channels:
            imgs = jet_like(args.batch, C, seed=C)
            for p in args.patch:
                all_ok &= bench_masking(imgs, p, timing)
                all_ok &= bench_unpatchify(imgs, p, timing)
    print("ALL TARGETS MET" if all_ok else "SOME TARGETS MISSED")


if __name__ == "__main__":
    main()
