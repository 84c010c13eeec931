// SPDX-License-Identifier: BSD-3-Clause
#include "kernels/runs.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace e2e {
namespace {

// Per column: the plane and row of the last cell seen there, and its decoded value.
template <typename T>
class Columns {
 public:
  explicit Columns(int64_t width)
      : plane_(static_cast<std::size_t>(width), -1), row_(static_cast<std::size_t>(width), -1),
        value_(static_cast<std::size_t>(width)) {}

  bool above(int64_t plane, int64_t row, int64_t col, T* out) const {
    const auto c = static_cast<std::size_t>(col);
    if (plane_[c] != plane || row_[c] != row - 1) return false;
    *out = value_[c];
    return true;
  }
  void set(int64_t plane, int64_t row, int64_t col, T value) {
    const auto c = static_cast<std::size_t>(col);
    plane_[c] = plane;
    row_[c] = row;
    value_[c] = value;
  }

 private:
  std::vector<int64_t> plane_, row_;
  std::vector<T> value_;
};

inline bool run_start(const Cells& c, std::size_t i) {
  return i == 0 || c.plane[i - 1] != c.plane[i] || c.index[i - 1] != c.index[i] - 1 || c.index[i] % c.width == 0;
}

inline uint64_t u(int64_t v) { return static_cast<uint64_t>(v); }
inline int64_t s(uint64_t v) { return static_cast<int64_t>(v); }

}  // namespace

void check_cells(const Cells& c) {
  if (c.width <= 0) throw std::invalid_argument("width must be > 0");
  for (std::size_t i = 0; i < c.n; ++i) {
    if (c.index[i] < 0 || c.plane[i] < 0) throw std::invalid_argument("cell indices must be >= 0");
    if (i && (c.plane[i] < c.plane[i - 1] || (c.plane[i] == c.plane[i - 1] && c.index[i] <= c.index[i - 1])))
      throw std::invalid_argument("cells must be sorted by (plane, index) without repeats (cell " +
                                  std::to_string(i) + ")");
  }
}

void runs_quantize(const Cells& c, const double* x, const double* base, double step, int64_t* r,
                   double* rec) {
  Columns<double> cols(c.width);
  double start = 0.0;
  int64_t q_prev = 0;
  for (std::size_t i = 0; i < c.n; ++i) {
    const int64_t row = c.index[i] / c.width, col = c.index[i] % c.width;
    if (run_start(c, i)) {
      if (!cols.above(c.plane[i], row, col, &start)) start = base[i];
      q_prev = 0;
    }
    const double q = std::nearbyint((x[i] - start) / step);
    const auto qi = static_cast<int64_t>(q);
    r[i] = qi - q_prev;
    q_prev = qi;
    const double scaled = step * q;
    rec[i] = start + scaled;
    cols.set(c.plane[i], row, col, rec[i]);
  }
}

void runs_dequantize(const Cells& c, const int64_t* r, const double* base, double step, double* rec) {
  Columns<double> cols(c.width);
  double start = 0.0;
  uint64_t q = 0;
  for (std::size_t i = 0; i < c.n; ++i) {
    const int64_t row = c.index[i] / c.width, col = c.index[i] % c.width;
    if (run_start(c, i)) {
      if (!cols.above(c.plane[i], row, col, &start)) start = base[i];
      q = 0;
    }
    q += u(r[i]);
    const double scaled = step * static_cast<double>(s(q));
    rec[i] = start + scaled;
    cols.set(c.plane[i], row, col, rec[i]);
  }
}

namespace {

// Lossless runs predictor; `in` is b (encode) or r (decode), `out` the other. The prediction always uses
// b, which the decoder has already rebuilt for every earlier cell.
template <bool kEncode>
void int_runs(const Cells& c, const int64_t* in, int64_t* out) {
  const int64_t* b = kEncode ? in : out;
  Columns<int64_t> cols(c.width);
  for (std::size_t i = 0; i < c.n; ++i) {
    const int64_t row = c.index[i] / c.width, col = c.index[i] % c.width;
    int64_t pred = 0;
    if (!run_start(c, i)) pred = b[i - 1];
    else if (!cols.above(c.plane[i], row, col, &pred)) pred = 0;
    out[i] = kEncode ? s(u(in[i]) - u(pred)) : s(u(in[i]) + u(pred));
    cols.set(c.plane[i], row, col, b[i]);
  }
}

}  // namespace

void runs_int_encode(const Cells& c, const int64_t* b, int64_t* r) { int_runs<true>(c, b, r); }
void runs_int_decode(const Cells& c, const int64_t* r, int64_t* b) { int_runs<false>(c, r, b); }

}  // namespace e2e
