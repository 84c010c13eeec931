// SPDX-License-Identifier: BSD-3-Clause
#include <pybind11/pybind11.h>

#include "bindings/bindings.h"
#include "kernels/crc32c.h"

namespace py = pybind11;

void bind_checksum(py::module_& m) {
  m.def(
      "crc32c",
      [](py::buffer data, uint32_t value) {
        py::buffer_info info = data.request();
        if (!PyBuffer_IsContiguous(info.view(), 'C'))
          throw std::invalid_argument("crc32c: buffer must be C-contiguous");
        const auto* ptr = static_cast<const uint8_t*>(info.ptr);
        const auto n = static_cast<std::size_t>(info.size * info.itemsize);
        py::gil_scoped_release release;
        return e2e::crc32c(ptr, n, value);
      },
      py::arg("data"), py::arg("value") = 0u,
      "CRC-32C (Castagnoli) of a contiguous buffer; pass a previous result as `value` to continue.");
}
