// SPDX-License-Identifier: BSD-3-Clause
#include "kernels/patch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define E2E_STR(...) #__VA_ARGS__
#ifdef _OPENMP
#define E2E_OMP(...) _Pragma(E2E_STR(omp __VA_ARGS__))
#else
#define E2E_OMP(...)
#endif

namespace e2e {
namespace {

// Below this many elements moved, a loop runs on the calling thread only.
constexpr int64_t kParallelMin = int64_t{1} << 15;

template <int CC>
using Channels = std::integral_constant<int, CC>;

// Calls f(Channels<C>) for the channel counts we specialise (the loops over c unroll), else
// f(Channels<0>) where the count is read at run time.
template <typename F>
void with_channels(int64_t C, F&& f) {
  switch (C) {
    case 1: f(Channels<1>{}); break;
    case 3: f(Channels<3>{}); break;
    case 8: f(Channels<8>{}); break;
    default: f(Channels<0>{}); break;
  }
}

template <int CC>
inline int64_t channels(const PatchGrid& g) {
  return CC > 0 ? int64_t{CC} : g.C;
}

#if defined(__SSE2__)
// Four pixels (j .. j+3) of channels c0 .. c0+3 <-> four 4-channel pixels: a 4x4 transpose of 32-bit
// lanes, so float32 images with C a multiple of 4 move 16 values per step instead of one.
constexpr bool kSimd4x4 = true;

inline void transpose4(__m128i& a, __m128i& b, __m128i& c, __m128i& d) {
  const __m128i ab_lo = _mm_unpacklo_epi32(a, b), ab_hi = _mm_unpackhi_epi32(a, b);
  const __m128i cd_lo = _mm_unpacklo_epi32(c, d), cd_hi = _mm_unpackhi_epi32(c, d);
  a = _mm_unpacklo_epi64(ab_lo, cd_lo);
  b = _mm_unpackhi_epi64(ab_lo, cd_lo);
  c = _mm_unpacklo_epi64(ab_hi, cd_hi);
  d = _mm_unpackhi_epi64(ab_hi, cd_hi);
}

inline __m128i load4(const uint32_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline void store4(uint32_t* p, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }

// src: 4 channel rows `stride` apart -> dst: 4 pixels of C interleaved values (channels c0 .. c0+3).
inline void planar_to_pixels4(const uint32_t* src, int64_t stride, uint32_t* dst, int64_t C) {
  __m128i a = load4(src), b = load4(src + stride), c = load4(src + 2 * stride), d = load4(src + 3 * stride);
  transpose4(a, b, c, d);
  store4(dst, a);
  store4(dst + C, b);
  store4(dst + 2 * C, c);
  store4(dst + 3 * C, d);
}

// The inverse: 4 pixels of C interleaved values -> 4 channel rows `stride` apart.
inline void pixels4_to_planar(const uint32_t* src, int64_t C, uint32_t* dst, int64_t stride) {
  __m128i a = load4(src), b = load4(src + C), c = load4(src + 2 * C), d = load4(src + 3 * C);
  transpose4(a, b, c, d);
  store4(dst, a);
  store4(dst + stride, b);
  store4(dst + 2 * stride, c);
  store4(dst + 3 * stride, d);
}

// Three channels: 4 pixels are 12 values, three vectors, (r0 g0 b0 r1) (g1 b1 r2 g2) (b2 r3 g3 b3).
// _mm_shuffle_ps(x, y, _MM_SHUFFLE(i3, i2, i1, i0)) = (x[i0], x[i1], y[i2], y[i3]).
inline __m128 as_ps(__m128i v) { return _mm_castsi128_ps(v); }
inline __m128i as_si(__m128 v) { return _mm_castps_si128(v); }

inline void planar_to_pixels3(const uint32_t* src, int64_t stride, uint32_t* dst) {
  const __m128 r = as_ps(load4(src)), g = as_ps(load4(src + stride)), b = as_ps(load4(src + 2 * stride));
  const __m128 rg_lo = _mm_unpacklo_ps(r, g), rg_hi = _mm_unpackhi_ps(r, g);  // r0 g0 r1 g1, r2 g2 r3 g3
  const __m128 gb_lo = _mm_unpacklo_ps(g, b), gb_hi = _mm_unpackhi_ps(g, b);  // g0 b0 g1 b1, g2 b2 g3 b3
  const __m128 br_lo = _mm_unpacklo_ps(b, r), br_hi = _mm_unpackhi_ps(b, r);  // b0 r0 b1 r1, b2 r2 b3 r3
  store4(dst, as_si(_mm_shuffle_ps(rg_lo, br_lo, _MM_SHUFFLE(3, 0, 1, 0))));
  store4(dst + 4, as_si(_mm_shuffle_ps(gb_lo, rg_hi, _MM_SHUFFLE(1, 0, 3, 2))));
  store4(dst + 8, as_si(_mm_shuffle_ps(br_hi, gb_hi, _MM_SHUFFLE(3, 2, 3, 0))));
}

inline void pixels3_to_planar(const uint32_t* src, uint32_t* dst, int64_t stride) {
  const __m128 p0 = as_ps(load4(src)), p1 = as_ps(load4(src + 4)), p2 = as_ps(load4(src + 8));
  const __m128 r2g1r3g3 = _mm_shuffle_ps(p1, p2, _MM_SHUFFLE(2, 1, 0, 2));
  const __m128 r = _mm_shuffle_ps(p0, r2g1r3g3, _MM_SHUFFLE(2, 0, 3, 0));
  const __m128 g01 = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(0, 0, 1, 1));  // g0 g0 g1 g1
  const __m128 g23 = _mm_shuffle_ps(p1, p2, _MM_SHUFFLE(2, 2, 3, 3));  // g2 g2 g3 g3
  const __m128 b01 = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(1, 1, 2, 2));  // b0 b0 b1 b1
  const __m128 b23 = _mm_shuffle_ps(p2, p2, _MM_SHUFFLE(3, 3, 0, 0));  // b2 b2 b3 b3
  store4(dst, as_si(r));
  store4(dst + stride, as_si(_mm_shuffle_ps(g01, g23, _MM_SHUFFLE(2, 0, 2, 0))));
  store4(dst + 2 * stride, as_si(_mm_shuffle_ps(b01, b23, _MM_SHUFFLE(2, 0, 2, 0))));
}
#else
constexpr bool kSimd4x4 = false;
#endif

// Whether the 4x4 path applies: 32-bit elements and a compile-time channel count of 3 or 4k.
template <typename T, int CC>
constexpr bool use_simd4x4() {
  return kSimd4x4 && std::is_same_v<T, uint32_t> && (CC == 3 || (CC > 0 && CC % 4 == 0));
}

// Copies patch (hi, wi) of one image [C, H, W] into dst [p, p, C]; padding becomes +0.
// The writes are contiguous; each (row, column) reads one pixel from each channel plane.
template <typename T, int CC>
inline void load_patch(const T* img, const PatchGrid& g, int64_t hi, int64_t wi, T* dst) {
  const int64_t C = channels<CC>(g);
  const int64_t p = g.p, W = g.W, plane = g.H * g.W;
  const int64_t y0 = hi * p, x0 = wi * p;
  const int64_t rows = std::min(p, g.H - y0), cols = std::min(p, W - x0);
  const int64_t row_len = p * C;
  for (int64_t i = 0; i < rows; ++i) {
    const T* src = img + (y0 + i) * W + x0;
    T* d = dst + i * row_len;
    int64_t j = 0;
#if defined(__SSE2__)
    if constexpr (use_simd4x4<T, CC>())
      for (; j + 4 <= cols; j += 4) {
        if constexpr (CC == 3) {
          planar_to_pixels3(src + j, plane, d + j * C);
        } else {
          for (int64_t c = 0; c < C; c += 4) planar_to_pixels4(src + c * plane + j, plane, d + j * C + c, C);
        }
      }
#endif
    for (; j < cols; ++j)
      for (int64_t c = 0; c < C; ++c) d[j * C + c] = src[c * plane + j];
    std::fill(d + cols * C, d + row_len, T{0});
  }
  std::fill(dst + rows * row_len, dst + p * row_len, T{0});
}

// The inverse of load_patch for a whole row of patches: strip [w, p, p, C] -> pixel rows hi*p ... of
// img [C, H, W], padding dropped. The reads walk the strip's row i forwards; the writes are C sequential
// streams, one per channel row. (Measured: ~2x faster than one write stream with stride-C reads.)
template <typename T, int CC>
inline void store_patch_row(const T* strip, const PatchGrid& g, int64_t hi, T* img) {
  const int64_t C = channels<CC>(g);
  const int64_t p = g.p, W = g.W, plane = g.H * g.W, D = g.D();
  const int64_t y0 = hi * p, rows = std::min(p, g.H - y0);
  for (int64_t i = 0; i < rows; ++i) {
    T* d = img + (y0 + i) * W;
    for (int64_t wi = 0; wi < g.w; ++wi) {
      const T* s = strip + wi * D + i * p * C;
      const int64_t x0 = wi * p, cols = std::min(p, W - x0);
      int64_t j = 0;
#if defined(__SSE2__)
      if constexpr (use_simd4x4<T, CC>())
        for (; j + 4 <= cols; j += 4) {
          if constexpr (CC == 3) {
            pixels3_to_planar(s + j * C, d + x0 + j, plane);
          } else {
            for (int64_t c = 0; c < C; c += 4)
              pixels4_to_planar(s + j * C + c, C, d + c * plane + x0 + j, plane);
          }
        }
#endif
      for (; j < cols; ++j)
        for (int64_t c = 0; c < C; ++c) d[c * plane + x0 + j] = s[j * C + c];
    }
  }
}

template <typename N>
using KeyOf = std::conditional_t<sizeof(N) == 4, uint32_t, uint64_t>;

// Maps a float to an unsigned key with the same order as torch's sort: -0 equals +0, every NaN is equal
// and after +inf.
template <typename N>
KeyOf<N> sort_key(N v) {
  using K = KeyOf<N>;
  static_assert(sizeof(N) == sizeof(K), "float or double");
  constexpr K sign = K{1} << (8 * sizeof(K) - 1);
  if (std::isnan(v)) return std::numeric_limits<K>::max();
  if (v == N{0}) v = N{0};
  K bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & sign) ? static_cast<K>(~bits) : static_cast<K>(bits | sign);
}

// Stable LSD radix sort of (keys, idx) by key, one byte a pass, skipping bytes that all keys share.
// The tmp arrays are scratch of the same length; returns whichever index array holds the result.
template <typename K>
const uint32_t* radix_sort(K* keys, uint32_t* idx, K* keys_tmp, uint32_t* idx_tmp, int64_t n) {
  constexpr int kPasses = sizeof(K);
  uint32_t hist[kPasses][256] = {};
  for (int64_t i = 0; i < n; ++i)
    for (int pass = 0; pass < kPasses; ++pass) ++hist[pass][(keys[i] >> (8 * pass)) & 0xFFu];
  for (int pass = 0; pass < kPasses && n > 0; ++pass) {
    uint32_t* h = hist[pass];
    const int shift = 8 * pass;
    if (h[(keys[0] >> shift) & 0xFFu] == n) continue;
    uint32_t sum = 0;
    for (int d = 0; d < 256; ++d) {
      const uint32_t c = h[d];
      h[d] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t pos = h[(keys[i] >> shift) & 0xFFu]++;
      keys_tmp[pos] = keys[i];
      idx_tmp[pos] = idx[i];
    }
    std::swap(keys, keys_tmp);
    std::swap(idx, idx_tmp);
  }
  return idx;
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_num() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// MAE's random_masking order for each row of noise: ids_shuffle is the stable ascending order (equal keys
// keep their index order, exactly as std::stable_sort / torch.argsort(stable=True)); writes its inverse
// to ids_restore, the 0/1 mask, its first len_keep entries to ids_keep (unless null), then calls
// row_done(b, ids_shuffle) on the same thread while the row is in cache.
template <typename N, typename RowDone>
void shuffle_rows(const N* noise, int64_t B, int64_t L, int64_t len_keep, int64_t* ids_keep, float* mask,
                  int64_t* ids_restore, RowDone&& row_done) {
  using K = KeyOf<N>;
  if (L > int64_t{0xFFFFFFFF}) throw std::invalid_argument("too many patches per image (L >= 2^32)");
  // Scratch for one row per thread: keys and indices, twice (the sort ping-pongs).
  const auto per_thread = static_cast<std::size_t>(2 * L);
  std::unique_ptr<K[]> keys(new K[per_thread * static_cast<std::size_t>(max_threads())]);
  std::unique_ptr<uint32_t[]> idx(new uint32_t[per_thread * static_cast<std::size_t>(max_threads())]);
  E2E_OMP(parallel for schedule(guided) if (B * L >= kParallelMin / 16))
  for (int64_t b = 0; b < B; ++b) {
    const auto scratch = per_thread * static_cast<std::size_t>(thread_num());
    K* k = keys.get() + scratch;
    uint32_t* i = idx.get() + scratch;
    const N* z = noise + b * L;
    for (int64_t l = 0; l < L; ++l) {
      k[l] = sort_key(z[l]);
      i[l] = static_cast<uint32_t>(l);
    }
    const uint32_t* order = radix_sort(k, i, k + L, i + L, L);
    for (int64_t r = 0; r < L; ++r) {
      const int64_t l = order[r];
      ids_restore[b * L + l] = r;
      mask[b * L + l] = r < len_keep ? 0.0f : 1.0f;
      if (ids_keep != nullptr && r < len_keep) ids_keep[b * len_keep + r] = l;
    }
    row_done(b, order);
  }
}

void check_len_keep(int64_t L, int64_t len_keep) {
  if (len_keep < 0 || len_keep > L)
    throw std::invalid_argument("len_keep must be in [0, L] (got " + std::to_string(len_keep) + ", L " +
                                std::to_string(L) + ")");
}

const char* kBadIndex = "index out of range [0, L)";

}  // namespace

PatchGrid make_patch_grid(int64_t B, int64_t C, int64_t H, int64_t W, int64_t p) {
  if (B < 0 || C < 1 || H < 1 || W < 1)
    throw std::invalid_argument("images must have B >= 0 and C, H, W >= 1");
  if (p < 1) throw std::invalid_argument("patch size p must be >= 1 (got " + std::to_string(p) + ")");
  constexpr int64_t kMax = int64_t{1} << 40;
  if (C > kMax || H > kMax || W > kMax || p > kMax)
    throw std::invalid_argument("image or patch size too large");
  PatchGrid g;
  g.B = B;
  g.C = C;
  g.H = H;
  g.W = W;
  g.p = p;
  g.h = (H + p - 1) / p;
  g.w = (W + p - 1) / p;
  // The padded image must be addressable with int64 offsets.
  const double padded = static_cast<double>(B) * static_cast<double>(C) * static_cast<double>(g.h * p) *
                        static_cast<double>(g.w * p);
  if (padded > 0x1p62) throw std::invalid_argument("image batch too large");
  return g;
}

template <typename T>
void patchify(const T* imgs, const PatchGrid& g, T* out) {
  const int64_t L = g.L(), D = g.D(), image = g.C * g.H * g.W, n = g.B * L;
  with_channels(g.C, [&](auto cc) {
    constexpr int CC = decltype(cc)::value;
    E2E_OMP(parallel for schedule(guided) if (n * D >= kParallelMin))
    for (int64_t t = 0; t < n; ++t) {
      const int64_t b = t / L, l = t % L;
      load_patch<T, CC>(imgs + b * image, g, l / g.w, l % g.w, out + t * D);
    }
  });
}

template <typename T>
void unpatchify(const T* x, const PatchGrid& g, T* imgs) {
  const int64_t D = g.D(), image = g.C * g.H * g.W, n = g.B * g.h;
  with_channels(g.C, [&](auto cc) {
    constexpr int CC = decltype(cc)::value;
    E2E_OMP(parallel for schedule(guided) if (n * g.w * D >= kParallelMin))
    for (int64_t t = 0; t < n; ++t) {
      const int64_t b = t / g.h, hi = t % g.h;
      store_patch_row<T, CC>(x + (b * g.L() + hi * g.w) * D, g, hi, imgs + b * image);
    }
  });
}

template <typename N>
void random_masking_ids(const N* noise, int64_t B, int64_t L, int64_t len_keep, int64_t* ids_keep,
                        float* mask, int64_t* ids_restore) {
  check_len_keep(L, len_keep);
  shuffle_rows(noise, B, L, len_keep, ids_keep, mask, ids_restore, [](int64_t, const uint32_t*) {});
}

template <typename T, typename N>
void patchify_random_masking(const T* imgs, const PatchGrid& g, const N* noise, int64_t len_keep, T* out,
                             float* mask, int64_t* ids_restore) {
  const int64_t D = g.D(), image = g.C * g.H * g.W;
  check_len_keep(g.L(), len_keep);
  // Each row's kept patches are gathered right after its sort, by the same thread.
  with_channels(g.C, [&](auto cc) {
    constexpr int CC = decltype(cc)::value;
    const auto gather_row = [&](int64_t b, const uint32_t* order) {
      for (int64_t k = 0; k < len_keep; ++k) {
        const int64_t l = order[k];
        load_patch<T, CC>(imgs + b * image, g, l / g.w, l % g.w, out + (b * len_keep + k) * D);
      }
    };
    shuffle_rows(noise, g.B, g.L(), len_keep, nullptr, mask, ids_restore, gather_row);
  });
}

template <typename T>
void gather_tokens(const T* x, int64_t B, int64_t L, int64_t D, const int64_t* ids, int64_t K, T* out) {
  const int64_t n = B * K;
  const auto row_bytes = static_cast<std::size_t>(D) * sizeof(T);
  bool bad = false;
  E2E_OMP(parallel for schedule(guided) reduction(|| : bad) if (n * D >= kParallelMin))
  for (int64_t t = 0; t < n; ++t) {
    const int64_t b = t / K, l = ids[t];
    if (l < 0 || l >= L) {
      bad = true;
      continue;
    }
    std::memcpy(out + t * D, x + (b * L + l) * D, row_bytes);
  }
  if (bad) throw std::invalid_argument(kBadIndex);
}

template <typename T>
void restore_tokens(const T* x_vis, int64_t B, int64_t K, int64_t D, const int64_t* ids_restore, int64_t L,
                    const T* mask_token, T* out) {
  if (K > L) throw std::invalid_argument("restore_tokens: more visible tokens than positions");
  const int64_t n = B * L;
  const auto row_bytes = static_cast<std::size_t>(D) * sizeof(T);
  bool bad = false;
  E2E_OMP(parallel for schedule(guided) reduction(|| : bad) if (n * D >= kParallelMin))
  for (int64_t t = 0; t < n; ++t) {
    const int64_t b = t / L, r = ids_restore[t];
    if (r < 0 || r >= L) {
      bad = true;
      continue;
    }
    std::memcpy(out + t * D, r < K ? x_vis + (b * K + r) * D : mask_token, row_bytes);
  }
  if (bad) throw std::invalid_argument(kBadIndex);
}

template <typename T>
void patch_occupancy(const T* imgs, const PatchGrid& g, bool* occ, int64_t* counts) {
  constexpr T magnitude = std::numeric_limits<T>::max() >> 1;  // every bit but the sign
  const int64_t L = g.L(), p = g.p, W = g.W, plane = g.H * g.W, image = g.C * plane, n = g.B * L;
  E2E_OMP(parallel for schedule(guided) if (n * g.D() >= kParallelMin))
  for (int64_t t = 0; t < n; ++t) {
    const int64_t b = t / L, l = t % L;
    const int64_t y0 = (l / g.w) * p, x0 = (l % g.w) * p;
    const int64_t rows = std::min(p, g.H - y0), cols = std::min(p, W - x0);
    T acc = 0;
    for (int64_t c = 0; c < g.C && acc == 0; ++c)
      for (int64_t i = 0; i < rows; ++i) {
        const T* src = imgs + b * image + c * plane + (y0 + i) * W + x0;
        for (int64_t j = 0; j < cols; ++j) acc = static_cast<T>(acc | (src[j] & magnitude));
      }
    occ[t] = acc != 0;
  }
  for (int64_t b = 0; b < g.B; ++b) {
    int64_t count = 0;
    for (int64_t l = 0; l < L; ++l) count += occ[b * L + l] ? 1 : 0;
    counts[b] = count;
  }
}

#define E2E_PATCH_MOVE(T)                                                                                 \
  template void patchify<T>(const T*, const PatchGrid&, T*);                                              \
  template void unpatchify<T>(const T*, const PatchGrid&, T*);                                            \
  template void patchify_random_masking<T, float>(const T*, const PatchGrid&, const float*, int64_t, T*,  \
                                                  float*, int64_t*);                                      \
  template void patchify_random_masking<T, double>(const T*, const PatchGrid&, const double*, int64_t, T*, \
                                                   float*, int64_t*);                                     \
  template void gather_tokens<T>(const T*, int64_t, int64_t, int64_t, const int64_t*, int64_t, T*);       \
  template void restore_tokens<T>(const T*, int64_t, int64_t, int64_t, const int64_t*, int64_t, const T*, \
                                  T*);                                                                    \
  template void patch_occupancy<T>(const T*, const PatchGrid&, bool*, int64_t*);

E2E_PATCH_MOVE(uint16_t)
E2E_PATCH_MOVE(uint32_t)
E2E_PATCH_MOVE(uint64_t)
#undef E2E_PATCH_MOVE

template void random_masking_ids<float>(const float*, int64_t, int64_t, int64_t, int64_t*, float*, int64_t*);
template void random_masking_ids<double>(const double*, int64_t, int64_t, int64_t, int64_t*, float*,
                                         int64_t*);

}  // namespace e2e
