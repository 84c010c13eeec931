// SPDX-License-Identifier: BSD-3-Clause
#include "kernels/scan.h"

#include <cmath>
#include <cstring>
#include <type_traits>

namespace e2e {

namespace {

// Blocks of 8 values are skipped when all are zero (bitwise zero for integers, == 0 for floats).
constexpr std::size_t kBlock = 8;

template <typename T>
bool block_zero(const T* x) {
  bool zero = true;
  for (std::size_t j = 0; j < kBlock; ++j) zero &= (x[j] == T(0));
  return zero;
}

}  // namespace

template <typename T>
std::size_t count_nonzero(const T* x, std::size_t n_planes, std::size_t cells, std::size_t stride) {
  std::size_t count = 0;
  for (std::size_t p = 0; p < n_planes; ++p) {
    const T* row = x + p * stride;
    std::size_t i = 0;
    for (; i + kBlock <= cells; i += kBlock) {
      if (block_zero(row + i)) continue;
      for (std::size_t j = 0; j < kBlock; ++j) count += (row[i + j] != T(0));
    }
    for (; i < cells; ++i) count += (row[i] != T(0));
  }
  return count;
}

template <typename T>
void nonzero_cells(const T* x, std::size_t n_planes, std::size_t cells, std::size_t stride, int64_t* plane,
                   int64_t* index) {
  std::size_t k = 0;
  for (std::size_t p = 0; p < n_planes; ++p) {
    const T* row = x + p * stride;
    std::size_t i = 0;
    for (; i + kBlock <= cells; i += kBlock) {
      if (block_zero(row + i)) continue;
      for (std::size_t j = 0; j < kBlock; ++j) {
        if (row[i + j] != T(0)) {
          plane[k] = static_cast<int64_t>(p);
          index[k++] = static_cast<int64_t>(i + j);
        }
      }
    }
    for (; i < cells; ++i) {
      if (row[i] != T(0)) {
        plane[k] = static_cast<int64_t>(p);
        index[k++] = static_cast<int64_t>(i);
      }
    }
  }
}

template <typename X, typename D>
Comparison compare(const X* x, const D* d, std::size_t n, double bound) {
  Comparison c;
  for (std::size_t i = 0; i < n; ++i) {
    const double xi = static_cast<double>(x[i]);
    const double di = static_cast<double>(d[i]);
    const double err = std::fabs(di - xi);
    if (err > c.max_abs_error || std::isnan(err)) c.max_abs_error = std::isnan(err) ? INFINITY : err;
    const bool false_nz = (xi == 0.0) && (di != 0.0);
    c.false_nonzero += false_nz;
    if constexpr (std::is_same_v<X, D>) c.bits_differ += std::memcmp(x + i, d + i, sizeof(X)) != 0;
    if (!c.any_bad && (false_nz || !(err <= bound))) {
      c.any_bad = true;
      c.first_bad = i;
    }
  }
  return c;
}

template std::size_t count_nonzero<float>(const float*, std::size_t, std::size_t, std::size_t);
template std::size_t count_nonzero<double>(const double*, std::size_t, std::size_t, std::size_t);
template std::size_t count_nonzero<int32_t>(const int32_t*, std::size_t, std::size_t, std::size_t);
template std::size_t count_nonzero<int64_t>(const int64_t*, std::size_t, std::size_t, std::size_t);
template std::size_t count_nonzero<uint8_t>(const uint8_t*, std::size_t, std::size_t, std::size_t);
template void nonzero_cells<float>(const float*, std::size_t, std::size_t, std::size_t, int64_t*,
                                     int64_t*);
template void nonzero_cells<double>(const double*, std::size_t, std::size_t, std::size_t, int64_t*,
                                     int64_t*);
template void nonzero_cells<int32_t>(const int32_t*, std::size_t, std::size_t, std::size_t, int64_t*,
                                     int64_t*);
template void nonzero_cells<int64_t>(const int64_t*, std::size_t, std::size_t, std::size_t, int64_t*,
                                     int64_t*);
template void nonzero_cells<uint8_t>(const uint8_t*, std::size_t, std::size_t, std::size_t, int64_t*,
                                     int64_t*);
template Comparison compare<float, float>(const float*, const float*, std::size_t, double);
template Comparison compare<double, float>(const double*, const float*, std::size_t, double);
template Comparison compare<double, double>(const double*, const double*, std::size_t, double);

}  // namespace e2e
