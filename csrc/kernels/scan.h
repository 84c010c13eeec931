// SPDX-License-Identifier: BSD-3-Clause
// Single-pass scans of dense, mostly-zero planes: where the non-zero cells are, and how a decoded chunk
// compares with its input (the check `pack` runs before it commits a chunk).
#pragma once
#include <cstddef>
#include <cstdint>

namespace e2e {

// Number of cells != 0 in n_planes planes of `cells` contiguous values each, plane p starting at
// x + p * stride (T: float, double, int32_t, int64_t, uint8_t for bool / uint8 planes).
template <typename T>
std::size_t count_nonzero(const T* x, std::size_t n_planes, std::size_t cells, std::size_t stride);

// Fill plane[k], index[k] for the non-zero cells in (plane, index) order; `plane` and `index` hold
// count_nonzero(...) entries.
template <typename T>
void nonzero_cells(const T* x, std::size_t n_planes, std::size_t cells, std::size_t stride, int64_t* plane,
                   int64_t* index);

struct Comparison {
  double max_abs_error = 0.0;     // max |d - x| over all cells (as double)
  std::size_t false_nonzero = 0;  // cells where x == 0 and d != 0
  std::size_t bits_differ = 0;    // cells whose bit patterns differ (same type only, else 0)
  std::size_t first_bad = 0;      // index of the first cell with an error above `bound` or a false non-zero
  bool any_bad = false;
};

// Compare input x with decoded d (n cells each); "bad" = |d - x| > bound or x == 0 != d.
template <typename X, typename D>
Comparison compare(const X* x, const D* d, std::size_t n, double bound);

}  // namespace e2e
