// SPDX-License-Identifier: BSD-3-Clause
// rANS coder bindings: RansTable, rans_build_freqs, rans_encode, rans_decode (Python API: e2ecompress.codec).
// Arguments are validated with the GIL held; coding runs with it released. e2e::DecodeError (corrupt stream
// or table bytes) becomes e2ecompress.errors.DecodeError; std::invalid_argument becomes ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bindings/bindings.h"
#include "kernels/rans.h"

namespace py = pybind11;
using e2e::RansTable;

namespace {

using Int64In = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

struct Bytes {
  const uint8_t* ptr;
  std::size_t size;
};

// A read-only view of any C-contiguous buffer; `info` must outlive the view.
Bytes view_bytes(const py::buffer_info& info, const char* name) {
  if (!PyBuffer_IsContiguous(info.view(), 'C'))
    throw std::invalid_argument(std::string(name) + " must be a C-contiguous buffer");
  return {static_cast<const uint8_t*>(info.ptr), static_cast<std::size_t>(info.size * info.itemsize)};
}

py::bytes to_pybytes(const std::vector<uint8_t>& v) {
  return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

std::pair<std::size_t, std::size_t> shape2(const py::array& a, const char* name) {
  if (a.ndim() != 2)
    throw std::invalid_argument(std::string(name) + " must be 2-D [rows, dims], got " +
                                std::to_string(a.ndim()) + " dimensions");
  return {static_cast<std::size_t>(a.shape(0)), static_cast<std::size_t>(a.shape(1))};
}

std::shared_ptr<RansTable> table_from_freqs(const Int64In& freqs, int prob_bits) {
  const auto [D, K] = shape2(freqs, "freqs");
  std::vector<uint32_t> f(D * K);
  const int64_t* src = freqs.data();
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (src[i] < 0 || src[i] > (int64_t{1} << 16))
      throw std::invalid_argument("frequency " + std::to_string(src[i]) + " out of range [0, 2^prob_bits]");
    f[i] = static_cast<uint32_t>(src[i]);
  }
  return std::make_shared<RansTable>(f.data(), D, K, prob_bits);
}

py::array_t<uint32_t> freqs_array(const std::vector<uint32_t>& f, std::size_t D, std::size_t K) {
  py::array_t<uint32_t> out({static_cast<py::ssize_t>(D), static_cast<py::ssize_t>(K)});
  std::copy(f.begin(), f.end(), out.mutable_data());
  return out;
}

template <typename T>
std::vector<uint16_t> check_typed(const py::array& a, std::size_t n_rows, const RansTable& t) {
  const auto* p = static_cast<const T*>(a.data());
  py::gil_scoped_release release;
  return e2e::rans_check_symbols<T>(p, n_rows, t);
}

// Symbols of any integer dtype, checked against the table and narrowed to uint16.
std::vector<uint16_t> checked_symbols(py::array a, const RansTable& t) {
  const auto [n_rows, D] = shape2(a, "symbols");
  if (D != t.dims())
    throw std::invalid_argument("symbols have " + std::to_string(D) + " dims, the table has " +
                                std::to_string(t.dims()));
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error("symbols must have an integer dtype, got " + py::str(a.dtype()).cast<std::string>());
  if (!(a.flags() & py::array::c_style)) a = py::array::ensure(a, py::array::c_style);
  const bool s = kind == 'i';
  switch (a.itemsize()) {
    case 1: return s ? check_typed<int8_t>(a, n_rows, t) : check_typed<uint8_t>(a, n_rows, t);
    case 2: return s ? check_typed<int16_t>(a, n_rows, t) : check_typed<uint16_t>(a, n_rows, t);
    case 4: return s ? check_typed<int32_t>(a, n_rows, t) : check_typed<uint32_t>(a, n_rows, t);
    case 8: return s ? check_typed<int64_t>(a, n_rows, t) : check_typed<uint64_t>(a, n_rows, t);
    default: throw py::type_error("unsupported symbol dtype " + py::str(a.dtype()).cast<std::string>());
  }
}

py::bytes encode(py::array symbols, const RansTable& t, int n_states) {
  if (n_states < 0 || n_states > 64 || (n_states & (n_states - 1)))
    throw std::invalid_argument("n_states must be 0 (auto), 1, 2, 4, 8, 16, 32 or 64, got " +
                                std::to_string(n_states));
  const std::vector<uint16_t> sym = checked_symbols(std::move(symbols), t);
  std::vector<uint8_t> out;
  {
    py::gil_scoped_release release;
    out = e2e::rans_encode(sym.data(), sym.size() / t.dims(), t, n_states);
  }
  return to_pybytes(out);
}

py::array_t<int32_t> decode(const py::buffer& data, const RansTable& t, py::ssize_t n_rows,
                            std::optional<py::array> out) {
  if (n_rows < 0) throw std::invalid_argument("n_rows must be >= 0, got " + std::to_string(n_rows));
  const auto rows = static_cast<std::size_t>(n_rows);
  const py::buffer_info info = data.request();
  const Bytes in = view_bytes(info, "data");
  e2e::rans_check_stream(in.ptr, in.size, t, rows);  // before allocating anything for a bad stream

  py::array_t<int32_t> result;
  if (out) {
    if (!py::isinstance<py::array_t<int32_t>>(*out))
      throw py::type_error("out must be an int32 array");
    if (!(out->flags() & py::array::c_style) || !out->writeable())
      throw std::invalid_argument("out must be C-contiguous and writeable");
    if (out->ndim() != 2 || out->shape(0) != n_rows || out->shape(1) != static_cast<py::ssize_t>(t.dims()))
      throw std::invalid_argument("out must have shape (" + std::to_string(n_rows) + ", " +
                                  std::to_string(t.dims()) + ")");
    result = py::reinterpret_borrow<py::array_t<int32_t>>(*out);
  } else {
    result = py::array_t<int32_t>({n_rows, static_cast<py::ssize_t>(t.dims())});
  }
  int32_t* dst = result.mutable_data();
  {
    py::gil_scoped_release release;
    e2e::rans_decode(in.ptr, in.size, t, rows, dst);
  }
  return result;
}

}  // namespace

void bind_rans(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const e2e::DecodeError& e) {
      py::object cls = py::module_::import("e2ecompress.errors").attr("DecodeError");
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

  py::class_<RansTable, std::shared_ptr<RansTable>>(
      m, "RansTable",
      "Static rANS frequency tables, one per dimension: freqs [D, K], each row summing to 2**prob_bits.")
      .def(py::init(&table_from_freqs), py::arg("freqs"), py::arg("prob_bits"))
      .def_static(
          "from_counts",
          [](const Int64In& counts, int prob_bits) {
            const auto [D, K] = shape2(counts, "counts");
            const auto f = e2e::rans_build_freqs(counts.data(), D, K, prob_bits);
            return std::make_shared<RansTable>(f.data(), D, K, prob_bits);
          },
          py::arg("counts"), py::arg("prob_bits") = 14)
      .def_static(
          "from_bytes",
          [](const py::buffer& data) {
            const py::buffer_info info = data.request();
            const Bytes in = view_bytes(info, "data");
            return std::make_shared<RansTable>(RansTable::from_bytes(in.ptr, in.size));
          },
          py::arg("data"), "Parse to_bytes() output; raises DecodeError unless it is a valid table.")
      .def("to_bytes", [](const RansTable& t) { return to_pybytes(t.to_bytes()); },
           "Canonical serialization (hash it to identify the table).")
      .def_property_readonly("dims", &RansTable::dims)
      .def_property_readonly("n_symbols", &RansTable::n_symbols)
      .def_property_readonly("prob_bits", &RansTable::prob_bits)
      .def_property_readonly(
          "freqs", [](const RansTable& t) { return freqs_array(t.freqs(), t.dims(), t.n_symbols()); })
      .def("__eq__", [](const RansTable& a, const RansTable& b) { return a == b; }, py::is_operator())
      .def("__repr__", [](const RansTable& t) {
        return "RansTable(dims=" + std::to_string(t.dims()) + ", n_symbols=" + std::to_string(t.n_symbols()) +
               ", prob_bits=" + std::to_string(t.prob_bits()) + ")";
      });

  m.def(
      "rans_build_freqs",
      [](const Int64In& counts, int prob_bits) {
        const auto [D, K] = shape2(counts, "counts");
        return freqs_array(e2e::rans_build_freqs(counts.data(), D, K, prob_bits), D, K);
      },
      py::arg("counts"), py::arg("prob_bits") = 14,
      "Integer frequencies [D, K] (rows sum to 2**prob_bits, all >= 1) closest in code length to counts.");
  m.def("rans_encode", &encode, py::arg("symbols"), py::arg("table"), py::arg("n_states") = 0,
        "Encode integer symbols [N, D] (column d uses table row d) with n_states states (0: auto).");
  m.def("rans_decode", &decode, py::arg("data"), py::arg("table"), py::arg("n_rows"),
        py::arg("out") = py::none(),
        "Decode a stream of n_rows rows into int32 [n_rows, D]; raises DecodeError on any corruption.");
  m.def(
      "rans_simd",
      [](std::optional<bool> enabled) {
        if (enabled) e2e::rans_set_simd(*enabled);
        return e2e::rans_simd_enabled();
      },
      py::arg("enabled") = py::none(),
      "Whether the AVX2 rANS decoder is used; pass False/True to switch it (it needs a CPU with AVX2).");
}
