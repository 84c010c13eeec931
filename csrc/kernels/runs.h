// SPDX-License-Identifier: BSD-3-Clause
// The "runs" value predictor of the sparse image codec (e2ecompress/codec/sparse.py), on occupied cells only.
//
// Cells are the occupied cells of a stack of planes of width W, sorted by (plane, index), index = y * W + x.
// A run is a maximal horizontal sequence of occupied cells. The first cell of a run is predicted by the
// decoded cell above it when that one is occupied, else by `base`; every other cell of the run is coded
// relative to the same start value: Q_k = round((x_k - P) / step), r_k = Q_k - Q_(k-1), Q_(-1) = 0, and the
// decoded value is P + step * Q_k (float64, no contraction, so both sides compute the same bits).
// The integer variants (lossless mode) predict a run start by the cell above (else 0) and the others by
// their left neighbour, with wrapping int64 arithmetic.
#pragma once
#include <cstddef>
#include <cstdint>

namespace e2e {

struct Cells {
  const int64_t* plane;
  const int64_t* index;
  std::size_t n;
  int64_t width;
};

// Throws std::invalid_argument unless cells are sorted, unique and width > 0, indices >= 0.
void check_cells(const Cells& cells);

void runs_quantize(const Cells& cells, const double* x, const double* base, double step, int64_t* r,
                   double* rec);
void runs_dequantize(const Cells& cells, const int64_t* r, const double* base, double step, double* rec);
void runs_int_encode(const Cells& cells, const int64_t* b, int64_t* r);
void runs_int_decode(const Cells& cells, const int64_t* r, int64_t* b);

}  // namespace e2e
