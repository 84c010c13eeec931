// SPDX-License-Identifier: BSD-3-Clause
// Bindings of the sparse "runs" predictor (kernels/runs.h): runs_quantize, runs_dequantize, runs_int_encode,
// runs_int_decode. Inputs are 1-D arrays over the occupied cells; the work runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "bindings/bindings.h"
#include "kernels/runs.h"

namespace py = pybind11;

namespace {

using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

template <typename A>
std::size_t length(const A& a, std::size_t n, const char* name) {
  if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != n)
    throw std::invalid_argument(std::string(name) + " must be 1-D with one entry per cell");
  return n;
}

e2e::Cells cells(const I64& plane, const I64& index, int64_t width) {
  if (plane.ndim() != 1) throw std::invalid_argument("plane must be 1-D");
  const auto n = static_cast<std::size_t>(plane.shape(0));
  length(index, n, "index");
  e2e::Cells c{plane.data(), index.data(), n, width};
  e2e::check_cells(c);
  return c;
}

}  // namespace

void bind_runs(py::module_& m) {
  m.def(
      "runs_quantize",
      [](const I64& plane, const I64& index, int64_t width, const F64& x, const F64& base, double step) {
        const e2e::Cells c = cells(plane, index, width);
        length(x, c.n, "x");
        length(base, c.n, "base");
        if (!(step > 0)) throw std::invalid_argument("step must be > 0");
        py::array_t<int64_t> r(static_cast<py::ssize_t>(c.n));
        py::array_t<double> rec(static_cast<py::ssize_t>(c.n));
        int64_t* rp = r.mutable_data();
        double* recp = rec.mutable_data();
        {
          py::gil_scoped_release nogil;
          e2e::runs_quantize(c, x.data(), base.data(), step, rp, recp);
        }
        return std::make_pair(r, rec);
      },
      py::arg("plane"), py::arg("index"), py::arg("width"), py::arg("x"), py::arg("base"), py::arg("step"),
      "-> (r int64 [n], decoded float64 [n]) under the runs predictor.");
  m.def(
      "runs_dequantize",
      [](const I64& plane, const I64& index, int64_t width, const I64& r, const F64& base, double step) {
        const e2e::Cells c = cells(plane, index, width);
        length(r, c.n, "r");
        length(base, c.n, "base");
        if (!(step > 0)) throw std::invalid_argument("step must be > 0");
        py::array_t<double> rec(static_cast<py::ssize_t>(c.n));
        double* recp = rec.mutable_data();
        {
          py::gil_scoped_release nogil;
          e2e::runs_dequantize(c, r.data(), base.data(), step, recp);
        }
        return rec;
      },
      py::arg("plane"), py::arg("index"), py::arg("width"), py::arg("r"), py::arg("base"), py::arg("step"));
  m.def(
      "runs_int_encode",
      [](const I64& plane, const I64& index, int64_t width, const I64& b) {
        const e2e::Cells c = cells(plane, index, width);
        length(b, c.n, "b");
        py::array_t<int64_t> r(static_cast<py::ssize_t>(c.n));
        int64_t* rp = r.mutable_data();
        {
          py::gil_scoped_release nogil;
          e2e::runs_int_encode(c, b.data(), rp);
        }
        return r;
      },
      py::arg("plane"), py::arg("index"), py::arg("width"), py::arg("b"));
  m.def(
      "runs_int_decode",
      [](const I64& plane, const I64& index, int64_t width, const I64& r) {
        const e2e::Cells c = cells(plane, index, width);
        length(r, c.n, "r");
        py::array_t<int64_t> b(static_cast<py::ssize_t>(c.n));
        int64_t* bp = b.mutable_data();
        {
          py::gil_scoped_release nogil;
          e2e::runs_int_decode(c, r.data(), bp);
        }
        return b;
      },
      py::arg("plane"), py::arg("index"), py::arg("width"), py::arg("r"));
}
