// SPDX-License-Identifier: BSD-3-Clause
// CUDA versions of the patch kernels in patch.cpp; same layouts and the same masking order.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/patch_cuda.h"

namespace e2e::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride loops cover the rest

// PatchGrid with the derived sizes spelled out, usable on the device.
struct Grid {
  int64_t B, C, H, W, p, h, w, L, D;
};

Grid device_grid(const PatchGrid& g) { return Grid{g.B, g.C, g.H, g.W, g.p, g.h, g.w, g.L(), g.D()}; }

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

unsigned int blocks_for(int64_t n, int64_t per_block = kThreads) {
  return static_cast<unsigned int>(std::min(kMaxBlocks, (n + per_block - 1) / per_block));
}

__device__ inline int64_t first_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}
__device__ inline int64_t grid_stride() { return static_cast<int64_t>(blockDim.x) * gridDim.x; }

// Calls f(T{}) with the unsigned type of the element width.
template <typename F>
void with_width(int itemsize, F&& f) {
  switch (itemsize) {
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(static_cast<unsigned long long>(0)); break;
    default: throw std::invalid_argument("itemsize must be 2, 4 or 8");
  }
}

// Patch rows ids[b * K + k] (or k itself when ids is null) of each image -> out [B, K, D].
template <typename T>
__global__ void gather_patches_kernel(const T* imgs, Grid g, const int64_t* ids, int64_t K, T* out) {
  const int64_t total = g.B * K * g.D;
  for (int64_t t = first_index(); t < total; t += grid_stride()) {
    const int64_t d = t % g.D, bk = t / g.D, b = bk / K;
    const int64_t l = ids ? ids[bk] : bk % K;
    T v = 0;
    if (l >= 0 && l < g.L) {
      const int64_t c = d % g.C, ij = d / g.C, j = ij % g.p, i = ij / g.p;
      const int64_t y = (l / g.w) * g.p + i, x = (l % g.w) * g.p + j;
      if (y < g.H && x < g.W) v = imgs[((b * g.C + c) * g.H + y) * g.W + x];
    }
    out[t] = v;
  }
}

// One thread per output pixel: coalesced writes, reads within the patch rows.
template <typename T>
__global__ void unpatchify_kernel(const T* x, Grid g, T* imgs) {
  const int64_t total = g.B * g.C * g.H * g.W;
  for (int64_t t = first_index(); t < total; t += grid_stride()) {
    const int64_t xx = t % g.W, y = (t / g.W) % g.H, c = (t / (g.W * g.H)) % g.C, b = t / (g.C * g.H * g.W);
    const int64_t l = (y / g.p) * g.w + xx / g.p, d = ((y % g.p) * g.p + xx % g.p) * g.C + c;
    imgs[t] = x[(b * g.L + l) * g.D + d];
  }
}

// Same key as patch.cpp: -0 == +0, NaN after +inf, all NaN equal.
__device__ inline unsigned int sort_key(float v) {
  if (isnan(v)) return 0xFFFFFFFFu;
  if (v == 0.0f) v = 0.0f;
  const unsigned int bits = __float_as_uint(v);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ inline unsigned long long sort_key(double v) {
  if (isnan(v)) return ~0ull;
  if (v == 0.0) v = 0.0;
  const auto bits = static_cast<unsigned long long>(__double_as_longlong(v));
  return (bits & (1ull << 63)) ? ~bits : (bits | (1ull << 63));
}

// One block per row: the rank of element i is the number of elements before it in a stable sort,
// #{j : key_j < key_i or (key_j == key_i and j < i)}, counted against tiles of the row in shared memory.
template <typename N>
__global__ void rank_kernel(const N* noise, int64_t L, int64_t len_keep, int64_t* ids_keep, float* mask,
                            int64_t* ids_restore) {
  using Key = decltype(sort_key(N{}));
  __shared__ Key tile[kThreads];
  const int64_t b = blockIdx.x;
  const N* row = noise + b * L;
  for (int64_t i0 = 0; i0 < L; i0 += blockDim.x) {
    const int64_t i = i0 + threadIdx.x;
    const Key key = i < L ? sort_key(row[i]) : Key{0};
    int64_t rank = 0;
    for (int64_t j0 = 0; j0 < L; j0 += blockDim.x) {
      __syncthreads();
      if (j0 + threadIdx.x < L) tile[threadIdx.x] = sort_key(row[j0 + threadIdx.x]);
      __syncthreads();
      const int64_t n = min(static_cast<int64_t>(blockDim.x), L - j0);
      for (int64_t jj = 0; jj < n; ++jj) {
        const Key kj = tile[jj];
        rank += (kj < key || (kj == key && j0 + jj < i)) ? 1 : 0;
      }
    }
    if (i < L) {
      ids_restore[b * L + i] = rank;
      mask[b * L + i] = rank < len_keep ? 0.0f : 1.0f;
      if (rank < len_keep) ids_keep[b * len_keep + rank] = i;
    }
  }
}

template <typename T>
__global__ void gather_tokens_kernel(const T* x, int64_t B, int64_t L, int64_t D, const int64_t* ids,
                                     int64_t K, T* out) {
  const int64_t total = B * K * D;
  for (int64_t t = first_index(); t < total; t += grid_stride()) {
    const int64_t bk = t / D, l = ids[bk];
    out[t] = (l >= 0 && l < L) ? x[((bk / K) * L + l) * D + t % D] : T{0};
  }
}

template <typename T>
__global__ void restore_tokens_kernel(const T* x_vis, int64_t B, int64_t K, int64_t D, const int64_t* ids,
                                      int64_t L, const T* mask_token, T* out) {
  const int64_t total = B * L * D;
  for (int64_t t = first_index(); t < total; t += grid_stride()) {
    const int64_t bl = t / D, d = t % D, r = ids[bl];
    T v = 0;
    if (r >= 0 && r < K)
      v = x_vis[((bl / L) * K + r) * D + d];
    else if (r >= K && r < L)
      v = mask_token[d];
    out[t] = v;
  }
}

// One warp per patch; the lanes walk (c, i, j) with j fastest. counts must be zeroed before.
template <typename T>
__global__ void occupancy_kernel(const T* imgs, Grid g, bool* occ, unsigned long long* counts) {
  constexpr T magnitude = static_cast<T>(~T{0}) >> 1;
  const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
  const int64_t n = g.B * g.L, pp = g.p * g.p;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(warps) + threadIdx.x / 32; t < n;
       t += static_cast<int64_t>(warps) * gridDim.x) {
    const int64_t b = t / g.L, l = t % g.L;
    const int64_t y0 = (l / g.w) * g.p, x0 = (l % g.w) * g.p;
    T acc = 0;
    for (int64_t e = lane; e < g.C * pp; e += 32) {
      const int64_t c = e / pp, i = (e / g.p) % g.p, j = e % g.p;
      const int64_t y = y0 + i, x = x0 + j;
      if (y < g.H && x < g.W) acc |= imgs[((b * g.C + c) * g.H + y) * g.W + x] & magnitude;
    }
    const bool any = __any_sync(0xFFFFFFFFu, acc != 0) != 0;
    if (lane == 0) {
      occ[t] = any;
      if (any) atomicAdd(counts + b, 1ull);
    }
  }
}

}  // namespace

void patchify(const void* imgs, void* out, int itemsize, const PatchGrid& g, std::uintptr_t stream) {
  const Grid dg = device_grid(g);
  const int64_t n = dg.B * dg.L * dg.D;
  if (n == 0) return;
  with_width(itemsize, [&](auto zero) {
    using T = decltype(zero);
    gather_patches_kernel<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(imgs), dg, nullptr, dg.L, static_cast<T*>(out));
  });
  check_launch("patchify");
}

void unpatchify(const void* x, void* imgs, int itemsize, const PatchGrid& g, std::uintptr_t stream) {
  const Grid dg = device_grid(g);
  const int64_t n = dg.B * dg.C * dg.H * dg.W;
  if (n == 0) return;
  with_width(itemsize, [&](auto zero) {
    using T = decltype(zero);
    unpatchify_kernel<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(static_cast<const T*>(x), dg,
                                                                             static_cast<T*>(imgs));
  });
  check_launch("unpatchify");
}

void random_masking_ids(const void* noise, int noise_itemsize, int64_t B, int64_t L, int64_t len_keep,
                        int64_t* ids_keep, float* mask, int64_t* ids_restore, std::uintptr_t stream) {
  if (len_keep < 0 || len_keep > L) throw std::invalid_argument("len_keep must be in [0, L]");
  if (B > 0x7FFFFFFF) throw std::invalid_argument("too many rows for one launch");
  if (B == 0 || L == 0) return;
  const auto blocks = static_cast<unsigned int>(B);
  if (noise_itemsize == 4)
    rank_kernel<float><<<blocks, kThreads, 0, as_stream(stream)>>>(static_cast<const float*>(noise), L,
                                                                   len_keep, ids_keep, mask, ids_restore);
  else if (noise_itemsize == 8)
    rank_kernel<double><<<blocks, kThreads, 0, as_stream(stream)>>>(static_cast<const double*>(noise), L,
                                                                    len_keep, ids_keep, mask, ids_restore);
  else
    throw std::invalid_argument("noise must be float32 or float64");
  check_launch("random_masking_ids");
}

void patchify_random_masking(const void* imgs, int itemsize, const PatchGrid& g, const void* noise,
                             int noise_itemsize, int64_t len_keep, void* out, float* mask,
                             int64_t* ids_restore, int64_t* ids_keep, std::uintptr_t stream) {
  const Grid dg = device_grid(g);
  random_masking_ids(noise, noise_itemsize, dg.B, dg.L, len_keep, ids_keep, mask, ids_restore, stream);
  const int64_t n = dg.B * len_keep * dg.D;
  if (n == 0) return;
  with_width(itemsize, [&](auto zero) {
    using T = decltype(zero);
    gather_patches_kernel<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(imgs), dg, ids_keep, len_keep, static_cast<T*>(out));
  });
  check_launch("patchify_random_masking");
}

void gather_tokens(const void* x, int itemsize, int64_t B, int64_t L, int64_t D, const int64_t* ids,
                   int64_t K, void* out, std::uintptr_t stream) {
  const int64_t n = B * K * D;
  if (n == 0) return;
  with_width(itemsize, [&](auto zero) {
    using T = decltype(zero);
    gather_tokens_kernel<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), B, L, D, ids, K, static_cast<T*>(out));
  });
  check_launch("gather_tokens");
}

void restore_tokens(const void* x_vis, int itemsize, int64_t B, int64_t K, int64_t D,
                    const int64_t* ids_restore, int64_t L, const void* mask_token, void* out,
                    std::uintptr_t stream) {
  const int64_t n = B * L * D;
  if (n == 0) return;
  with_width(itemsize, [&](auto zero) {
    using T = decltype(zero);
    restore_tokens_kernel<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x_vis), B, K, D, ids_restore, L, static_cast<const T*>(mask_token),
        static_cast<T*>(out));
  });
  check_launch("restore_tokens");
}

void patch_occupancy(const void* imgs, int itemsize, const PatchGrid& g, bool* occ, int64_t* counts,
                     std::uintptr_t stream) {
  const Grid dg = device_grid(g);
  if (dg.B == 0) return;
  const cudaError_t err =
      cudaMemsetAsync(counts, 0, static_cast<std::size_t>(dg.B) * sizeof(int64_t), as_stream(stream));
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("patch_occupancy: ") + cudaGetErrorString(err));
  const int64_t patches = dg.B * dg.L;
  with_width(itemsize, [&](auto zero) {
    using T = decltype(zero);
    occupancy_kernel<T><<<blocks_for(patches, kThreads / 32), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(imgs), dg, occ, reinterpret_cast<unsigned long long*>(counts));
  });
  check_launch("patch_occupancy");
}

}  // namespace e2e::cuda
