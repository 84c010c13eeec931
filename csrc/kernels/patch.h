// SPDX-License-Identifier: BSD-3-Clause
#pragma once
#include <cstdint>

namespace e2e {

// A grid of p×p patches over [B, C, H, W] images. The last row/column of patches is zero-padded when
// H or W is not a multiple of p. Patch l = hi * w + wi holds the vector laid out as (i, j, c):
// element (i * p + j) * C + c is pixel (c, hi * p + i, wi * p + j), as in MAE's `patchify`.
struct PatchGrid {
  int64_t B = 0, C = 0, H = 0, W = 0, p = 0;
  int64_t h = 0, w = 0;  // patches along H and W (rounded up)
  int64_t L() const { return h * w; }
  int64_t D() const { return p * p * C; }
};

// Validates the sizes (std::invalid_argument) and derives the patch grid.
PatchGrid make_patch_grid(int64_t B, int64_t C, int64_t H, int64_t W, int64_t p);

// The kernels only move data, so T is the element's bit pattern: uint16_t (float16 / bfloat16),
// uint32_t (float32) or uint64_t (float64). Loops are parallel over (batch, patch) with OpenMP; none of
// them touches Python. Index arguments are bounds-checked: std::invalid_argument on a bad index.

// imgs [B, C, H, W] -> out [B, L, D].
template <typename T>
void patchify(const T* imgs, const PatchGrid& g, T* out);

// x [B, L, D] -> imgs [B, C, H, W] (the padding is dropped).
template <typename T>
void unpatchify(const T* x, const PatchGrid& g, T* imgs);

// MAE's random_masking on given noise [B, L]: ids_shuffle = stable argsort of each row (NaN sorts last),
// ids_keep [B, len_keep] = its first len_keep entries, ids_restore [B, L] = its inverse, and
// mask [B, L] = 0 where kept, 1 where removed. N is float or double.
template <typename N>
void random_masking_ids(const N* noise, int64_t B, int64_t L, int64_t len_keep, int64_t* ids_keep,
                        float* mask, int64_t* ids_restore);

// random_masking_ids fused with patchify: out [B, len_keep, D] holds the visible patches, in shuffle
// order; only their pixels are read.
template <typename T, typename N>
void patchify_random_masking(const T* imgs, const PatchGrid& g, const N* noise, int64_t len_keep, T* out,
                             float* mask, int64_t* ids_restore);

// x [B, L, D], ids [B, K] in [0, L) -> out [B, K, D] with out[b, k] = x[b, ids[b, k]].
template <typename T>
void gather_tokens(const T* x, int64_t B, int64_t L, int64_t D, const int64_t* ids, int64_t K, T* out);

// x_vis [B, K, D], ids_restore [B, L] in [0, L), mask_token [D] -> out [B, L, D] with
// out[b, l] = x_vis[b, ids_restore[b, l]] when that index is < K, else mask_token.
template <typename T>
void restore_tokens(const T* x_vis, int64_t B, int64_t K, int64_t D, const int64_t* ids_restore, int64_t L,
                    const T* mask_token, T* out);

// occ [B, L]: the patch has a non-zero pixel in some channel (+0 and -0 are zero; NaN is not);
// counts [B]: occupied patches per image.
template <typename T>
void patch_occupancy(const T* imgs, const PatchGrid& g, bool* occ, int64_t* counts);

}  // namespace e2e
