// SPDX-License-Identifier: BSD-3-Clause
// Launchers for the CUDA patch kernels (patch_cuda.cu). Plain C++: no CUDA headers needed to call them.
// Every pointer is a device pointer on the current device; `stream` is a cudaStream_t cast to an integer
// (0: the legacy default stream). `itemsize` (2, 4 or 8) picks the element width, since the kernels only
// move bit patterns; noise is float (4) or double (8). Launch errors throw std::runtime_error; indices
// outside their range are never dereferenced (the element becomes 0) — callers validate them.
#pragma once
#include <cstdint>

#include "kernels/patch.h"

namespace e2e::cuda {

void patchify(const void* imgs, void* out, int itemsize, const PatchGrid& g, std::uintptr_t stream);

void unpatchify(const void* x, void* imgs, int itemsize, const PatchGrid& g, std::uintptr_t stream);

// ids_keep [B, len_keep] is an output too (scratch the caller allocates).
void patchify_random_masking(const void* imgs, int itemsize, const PatchGrid& g, const void* noise,
                             int noise_itemsize, int64_t len_keep, void* out, float* mask,
                             int64_t* ids_restore, int64_t* ids_keep, std::uintptr_t stream);

void random_masking_ids(const void* noise, int noise_itemsize, int64_t B, int64_t L, int64_t len_keep,
                        int64_t* ids_keep, float* mask, int64_t* ids_restore, std::uintptr_t stream);

void gather_tokens(const void* x, int itemsize, int64_t B, int64_t L, int64_t D, const int64_t* ids,
                   int64_t K, void* out, std::uintptr_t stream);

void restore_tokens(const void* x_vis, int itemsize, int64_t B, int64_t K, int64_t D,
                    const int64_t* ids_restore, int64_t L, const void* mask_token, void* out,
                    std::uintptr_t stream);

void patch_occupancy(const void* imgs, int itemsize, const PatchGrid& g, bool* occ, int64_t* counts,
                     std::uintptr_t stream);

}  // namespace e2e::cuda
