// SPDX-License-Identifier: BSD-3-Clause
// Bindings of the context-modelled occupancy coder (kernels/ctxcode.h): ctx_encode, ctx_decode (Python API:
// e2ecompress.codec.ctxocc). Arguments are validated with the GIL held; coding runs with it released.
// e2e::DecodeError (corrupt stream, or one made for other sizes) becomes e2ecompress.errors.DecodeError;
// bad arguments raise ValueError or TypeError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "kernels/ctxcode.h"
#include "kernels/rans.h"  // e2e::DecodeError

namespace py = pybind11;

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) s += (k ? ", " : "") + std::to_string(a.shape(k));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// A C-contiguous bool or uint8 array of 3 dimensions (copied only when it is not contiguous).
py::array planes_u8(const py::array& a, const char* name) {
  const char kind = a.dtype().kind();
  if (a.itemsize() != 1 || (kind != 'b' && kind != 'u'))
    throw py::type_error(std::string(name) + " must be a bool or uint8 array, got " +
                         py::str(a.dtype()).cast<std::string>());
  if (a.ndim() != 3)
    throw std::invalid_argument(std::string(name) + " must be 3-D [n, h, w], got shape " + shape_str(a));
  if (a.flags() & py::array::c_style) return a;
  return py::array::ensure(a, py::array::c_style);
}

const uint8_t* context_ptr(const std::optional<py::array>& ctx, py::array& keep, py::ssize_t n, py::ssize_t h,
                           py::ssize_t w) {
  if (!ctx) return nullptr;
  keep = planes_u8(*ctx, "context");
  if (keep.shape(0) != n || keep.shape(1) != h || keep.shape(2) != w)
    throw std::invalid_argument("context must have shape (" + std::to_string(n) + ", " + std::to_string(h) +
                                ", " + std::to_string(w) + "), got " + shape_str(keep));
  return static_cast<const uint8_t*>(keep.data());
}

py::object decode_error_class() { return py::module_::import("e2ecompress.errors").attr("DecodeError"); }

py::bytes encode(const py::array& occ_in, const std::optional<py::array>& ctx_in, int block) {
  const py::array occ = planes_u8(occ_in, "occ");
  const py::ssize_t n = occ.shape(0), h = occ.shape(1), w = occ.shape(2);
  py::array keep;
  const uint8_t* ctx = context_ptr(ctx_in, keep, n, h, w);
  const auto* src = static_cast<const uint8_t*>(occ.data());
  std::vector<uint8_t> out;
  {
    py::gil_scoped_release release;
    out = e2e::ctx_encode(src, ctx, static_cast<std::size_t>(n), static_cast<std::size_t>(h),
                          static_cast<std::size_t>(w), block);
  }
  return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

py::array_t<bool> decode(const py::buffer& data, py::ssize_t n, py::ssize_t h, py::ssize_t w,
                         const std::optional<py::array>& ctx_in) {
  if (n < 0 || h < 0 || w < 0)
    throw std::invalid_argument("n, h, w must be >= 0, got " + std::to_string(n) + ", " + std::to_string(h) +
                                ", " + std::to_string(w));
  const py::buffer_info info = data.request();
  if (!PyBuffer_IsContiguous(info.view(), 'C'))
    throw std::invalid_argument("data must be a contiguous buffer");
  const auto* ptr = static_cast<const uint8_t*>(info.ptr);
  const auto size = static_cast<std::size_t>(info.size * info.itemsize);
  py::array keep;
  const uint8_t* ctx = context_ptr(ctx_in, keep, n, h, w);
  try {
    // The header must match before anything of the caller's size is allocated.
    const e2e::CtxHeader hdr = e2e::ctx_read_header(ptr, size);
    if (hdr.n != static_cast<uint64_t>(n) || hdr.h != static_cast<uint64_t>(h) ||
        hdr.w != static_cast<uint64_t>(w))
      throw e2e::DecodeError("occupancy stream holds " + std::to_string(hdr.n) + " planes of " +
                             std::to_string(hdr.h) + " x " + std::to_string(hdr.w) + ", expected " +
                             std::to_string(n) + " of " + std::to_string(h) + " x " + std::to_string(w));
    py::array_t<bool> out({n, h, w});
    auto* dst = reinterpret_cast<uint8_t*>(out.mutable_data());
    {
      py::gil_scoped_release release;
      e2e::ctx_decode(ptr, size, ctx, static_cast<std::size_t>(n), static_cast<std::size_t>(h),
                      static_cast<std::size_t>(w), dst);
    }
    return out;
  } catch (const e2e::DecodeError& e) {
    PyErr_SetString(decode_error_class().ptr(), e.what());
    throw py::error_already_set();
  }
}

}  // namespace

void bind_ctxcode(py::module_& m) {
  m.def("ctx_encode", &encode, py::arg("occ"), py::arg("context") = py::none(),
        py::arg("block") = e2e::kCtxDefaultBlock,
        "Code occupancy planes occ [n, h, w] (bool/uint8, non-zero = occupied) under an optional uint8 "
        "context [n, h, w] -> bytes.");
  m.def("ctx_decode", &decode, py::arg("data"), py::arg("n"), py::arg("h"), py::arg("w"),
        py::arg("context") = py::none(),
        "Decode bytes of ctx_encode -> bool [n, h, w]; raises DecodeError if corrupt or not made for these "
        "sizes and context.");
}
