// SPDX-License-Identifier: BSD-3-Clause
#include <pybind11/pybind11.h>

#include "bindings/bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "e2ecompress compiled kernels (private; use the Python wrappers)";
  bind_checksum(m);
  bind_ctxcode(m);
  bind_ctxval(m);
  bind_patch(m);
  bind_rans(m);
  bind_runs(m);
  bind_scan(m);
#ifdef E2E_WITH_CUDA
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
}
