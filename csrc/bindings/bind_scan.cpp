// SPDX-License-Identifier: BSD-3-Clause
// Bindings of the dense-plane scans (kernels/scan.h): nonzero_cells and compare, with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "bindings/bindings.h"
#include "kernels/scan.h"

namespace py = pybind11;

namespace {

template <typename T>
using Arr = py::array_t<T, py::array::c_style>;

// planes [N, ...]: contiguous within each plane, any stride between planes (a channel of [B, C, H, W]).
template <typename T>
std::pair<py::array_t<int64_t>, py::array_t<int64_t>> nonzero_typed(const py::array& a) {
  if (a.size() == 0) return {py::array_t<int64_t>(0), py::array_t<int64_t>(0)};
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  py::ssize_t expect = item;
  for (py::ssize_t k = a.ndim() - 1; k >= 1; --k) {
    if (a.shape(k) > 1 && a.strides(k) != expect)
      throw std::invalid_argument("planes must be contiguous within each plane");
    expect *= a.shape(k);
  }
  const py::ssize_t stride0 = a.ndim() ? a.strides(0) : item;
  if (stride0 < 0 || stride0 % item) throw std::invalid_argument("planes: unsupported plane stride");
  const auto n_planes = static_cast<std::size_t>(a.ndim() ? a.shape(0) : 0);
  const auto cells = static_cast<std::size_t>(expect / item);
  const auto stride = static_cast<std::size_t>(stride0 / item);
  const T* x = static_cast<const T*>(a.data());
  std::size_t count;
  {
    py::gil_scoped_release nogil;
    count = e2e::count_nonzero(x, n_planes, cells, stride);
  }
  py::array_t<int64_t> plane(static_cast<py::ssize_t>(count)), index(static_cast<py::ssize_t>(count));
  int64_t* pp = plane.mutable_data();
  int64_t* ip = index.mutable_data();
  {
    py::gil_scoped_release nogil;
    e2e::nonzero_cells(x, n_planes, cells, stride, pp, ip);
  }
  return {plane, index};
}

template <typename X, typename D>
py::tuple compare_typed(const py::array& x, const py::array& d, double bound) {
  const auto xa = Arr<X>::ensure(x);
  const auto da = Arr<D>::ensure(d);
  if (!xa || !da) throw std::invalid_argument("compare: cannot view the arrays as C-contiguous");
  e2e::Comparison c;
  const X* xp = xa.data();
  const D* dp = da.data();
  const auto n = static_cast<std::size_t>(xa.size());
  {
    py::gil_scoped_release nogil;
    c = e2e::compare(xp, dp, n, bound);
  }
  const py::ssize_t first = c.any_bad ? static_cast<py::ssize_t>(c.first_bad) : -1;
  return py::make_tuple(c.max_abs_error, c.false_nonzero, c.bits_differ, first);
}

}  // namespace

void bind_scan(py::module_& m) {
  m.def(
      "nonzero_cells",
      [](const py::array& planes) {
        if (planes.ndim() < 1) throw std::invalid_argument("planes must have a leading plane axis");
        const auto dt = planes.dtype();
        if (dt.is(py::dtype::of<float>())) return nonzero_typed<float>(planes);
        if (dt.is(py::dtype::of<double>())) return nonzero_typed<double>(planes);
        if (dt.is(py::dtype::of<int32_t>())) return nonzero_typed<int32_t>(planes);
        if (dt.is(py::dtype::of<int64_t>())) return nonzero_typed<int64_t>(planes);
        if (dt.is(py::dtype::of<uint8_t>()) || dt.is(py::dtype::of<bool>()))
          return nonzero_typed<uint8_t>(planes);
        throw std::invalid_argument("planes must be float32, float64, int32, int64, uint8 or bool");
      },
      py::arg("planes"),
      "planes [N, ...] -> (plane id int64, flat index int64) of the cells != 0, in plane then raster order.");
  m.def(
      "compare",
      [](const py::array& x, const py::array& d, double bound) {
        if (x.size() != d.size()) throw std::invalid_argument("compare: x and d differ in size");
        if (!(x.flags() & py::array::c_style) || !(d.flags() & py::array::c_style))
          throw std::invalid_argument("compare: arrays must be C-contiguous");
        const bool x32 = x.dtype().is(py::dtype::of<float>()), x64 = x.dtype().is(py::dtype::of<double>());
        const bool d32 = d.dtype().is(py::dtype::of<float>()), d64 = d.dtype().is(py::dtype::of<double>());
        if (x32 && d32) return compare_typed<float, float>(x, d, bound);
        if (x64 && d32) return compare_typed<double, float>(x, d, bound);
        if (x64 && d64) return compare_typed<double, double>(x, d, bound);
        throw std::invalid_argument("compare: x float32|float64 and d float32 (or both float64)");
      },
      py::arg("x"), py::arg("d"), py::arg("bound"),
      "-> (max |d - x|, cells with x == 0 != d, cells whose bits differ (same dtype), first cell with an "
      "error above bound or a false non-zero, or -1).");
}
