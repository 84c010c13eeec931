// SPDX-License-Identifier: BSD-3-Clause
// Each bind_<topic>.cpp adds its functions to the `_core` module.
#pragma once
#include <pybind11/pybind11.h>

void bind_checksum(pybind11::module_& m);
void bind_ctxcode(pybind11::module_& m);
void bind_ctxval(pybind11::module_& m);
void bind_patch(pybind11::module_& m);
void bind_rans(pybind11::module_& m);
void bind_runs(pybind11::module_& m);
void bind_scan(pybind11::module_& m);
