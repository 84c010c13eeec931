// SPDX-License-Identifier: BSD-3-Clause
// Bindings of the context-modelled value coder (kernels/ctxval.h): ctxval_encode, ctxval_decode (Python API:
// e2ecompress.codec.ctxval). Arguments are validated with the GIL held; coding runs with it released.
// e2e::DecodeError (corrupt stream, or one made for other cells) becomes e2ecompress.errors.DecodeError;
// bad arguments raise ValueError or TypeError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "kernels/ctxval.h"
#include "kernels/rans.h"  // e2e::DecodeError

namespace py = pybind11;

namespace {

using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

e2e::ValueKind parse_kind(const std::string& kind) {
  if (kind == "quantized") return e2e::ValueKind::kQuantized;
  if (kind == "float32bits") return e2e::ValueKind::kFloat32Bits;
  throw std::invalid_argument("kind must be 'quantized' or 'float32bits', got '" + kind + "'");
}

void check_1d(const I64& a, const char* name, py::ssize_t n) {
  if (a.ndim() != 1) throw std::invalid_argument(std::string(name) + " must be 1-D");
  if (a.shape(0) != n)
    throw std::invalid_argument(std::string(name) + " has " + std::to_string(a.shape(0)) +
                                " entries, expected " + std::to_string(n));
}

void check_size(py::ssize_t h, py::ssize_t w) {
  if (h < 0 || w < 0)
    throw std::invalid_argument("height and width must be >= 0, got " + std::to_string(h) + ", " +
                                std::to_string(w));
}

py::object decode_error_class() { return py::module_::import("e2ecompress.errors").attr("DecodeError"); }

py::bytes encode(const I64& values, const I64& plane, const I64& index, py::ssize_t h, py::ssize_t w,
                 const std::string& kind_name) {
  const e2e::ValueKind kind = parse_kind(kind_name);
  check_size(h, w);
  if (values.ndim() != 1) throw std::invalid_argument("values must be 1-D");
  const py::ssize_t n = values.shape(0);
  check_1d(plane, "plane", n);
  check_1d(index, "index", n);
  const auto un = static_cast<std::size_t>(n), uh = static_cast<std::size_t>(h);
  const auto uw = static_cast<std::size_t>(w);
  const int64_t* v = values.data();
  const int64_t* p = plane.data();
  const int64_t* ix = index.data();
  e2e::ctxval_check_cells(p, ix, un, uh, uw);
  e2e::ctxval_check_values(v, un, kind);
  std::vector<uint8_t> out;
  {
    py::gil_scoped_release release;
    out = e2e::ctxval_encode(v, p, ix, un, uh, uw, kind);
  }
  return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

py::array_t<int64_t> decode(const py::buffer& data, const I64& plane, const I64& index, py::ssize_t h,
                            py::ssize_t w, const std::string& kind_name) {
  const e2e::ValueKind kind = parse_kind(kind_name);
  check_size(h, w);
  if (plane.ndim() != 1) throw std::invalid_argument("plane must be 1-D");
  const py::ssize_t n = plane.shape(0);
  check_1d(index, "index", n);
  const py::buffer_info info = data.request();
  if (!PyBuffer_IsContiguous(info.view(), 'C'))
    throw std::invalid_argument("data must be a contiguous buffer");
  const auto* ptr = static_cast<const uint8_t*>(info.ptr);
  const auto size = static_cast<std::size_t>(info.size * info.itemsize);
  const auto un = static_cast<std::size_t>(n), uh = static_cast<std::size_t>(h);
  const auto uw = static_cast<std::size_t>(w);
  const int64_t* p = plane.data();
  const int64_t* ix = index.data();
  e2e::ctxval_check_cells(p, ix, un, uh, uw);
  try {
    const e2e::CtxValHeader hdr = e2e::ctxval_read_header(ptr, size);
    if (hdr.n != static_cast<uint64_t>(n))
      throw e2e::DecodeError("value stream holds " + std::to_string(hdr.n) + " values, expected " +
                             std::to_string(n));
    py::array_t<int64_t> out(n);
    int64_t* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      e2e::ctxval_decode(ptr, size, p, ix, un, uh, uw, kind, dst);
    }
    return out;
  } catch (const e2e::DecodeError& e) {
    PyErr_SetString(decode_error_class().ptr(), e.what());
    throw py::error_already_set();
  }
}

}  // namespace

void bind_ctxval(py::module_& m) {
  m.def("ctxval_encode", &encode, py::arg("values"), py::arg("plane"), py::arg("index"), py::arg("height"),
        py::arg("width"), py::arg("kind"),
        "Code int64 values [n] at occupied cells (plane, index) sorted by (plane, index) of height x width "
        "planes; kind 'quantized' or 'float32bits' -> bytes.");
  m.def("ctxval_decode", &decode, py::arg("data"), py::arg("plane"), py::arg("index"), py::arg("height"),
        py::arg("width"), py::arg("kind"),
        "Decode bytes of ctxval_encode at the same cells -> int64 [n]; raises DecodeError if corrupt, "
        "truncated, or not made for these cells and kind.");
}
