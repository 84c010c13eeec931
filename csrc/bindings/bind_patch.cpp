// SPDX-License-Identifier: BSD-3-Clause
// Patch kernels on C-contiguous NumPy buffers. The Python wrappers (e2ecompress.ops) pass torch tensors as
// zero-copy NumPy views: float16/bfloat16 as int16, float32 as int32, float64 as int64 bit patterns.
// Arguments are `noconvert`, so a buffer of another dtype or layout is refused rather than silently copied.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "bindings/bindings.h"
#include "kernels/patch.h"
#ifdef E2E_WITH_CUDA
#include "kernels/patch_cuda.h"
#endif

namespace py = pybind11;

namespace {

template <typename S>
using Arr = py::array_t<S, py::array::c_style>;

void require_ndim(const py::array& a, py::ssize_t ndim, const char* name) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + " must have " + std::to_string(ndim) +
                                " dimensions, got " + std::to_string(a.ndim()));
}

void require_dim(const py::array& a, py::ssize_t axis, int64_t size, const char* name) {
  if (a.shape(axis) != size)
    throw std::invalid_argument(std::string(name) + ".shape[" + std::to_string(axis) + "] must be " +
                                std::to_string(size) + ", got " + std::to_string(a.shape(axis)));
}

template <typename S>
Arr<S> empty(std::vector<py::ssize_t> shape) {
  return Arr<S>(std::move(shape));
}

e2e::PatchGrid grid_of(const py::array& imgs, int64_t p) {
  require_ndim(imgs, 4, "imgs");
  return e2e::make_patch_grid(imgs.shape(0), imgs.shape(1), imgs.shape(2), imgs.shape(3), p);
}

template <typename S>
const auto* bits(const Arr<S>& a) {
  return reinterpret_cast<const std::make_unsigned_t<S>*>(a.data());
}

template <typename S>
auto* bits(Arr<S>& a) {
  return reinterpret_cast<std::make_unsigned_t<S>*>(a.mutable_data());
}

template <typename S>
Arr<S> patchify(const Arr<S>& imgs, int64_t p) {
  const auto g = grid_of(imgs, p);
  auto out = empty<S>({g.B, g.L(), g.D()});
  auto* dst = bits(out);
  {
    py::gil_scoped_release release;
    e2e::patchify(bits(imgs), g, dst);
  }
  return out;
}

template <typename S>
Arr<S> unpatchify(const Arr<S>& x, int64_t p, int64_t H, int64_t W) {
  require_ndim(x, 3, "x");
  const int64_t pp = p > 0 ? p * p : 1;
  if (x.shape(2) % pp != 0)
    throw std::invalid_argument("x.shape[2] (" + std::to_string(x.shape(2)) + ") is not a multiple of p*p");
  const auto g = e2e::make_patch_grid(x.shape(0), x.shape(2) / pp, H, W, p);
  require_dim(x, 1, g.L(), "x");
  auto out = empty<S>({g.B, g.C, g.H, g.W});
  auto* dst = bits(out);
  {
    py::gil_scoped_release release;
    e2e::unpatchify(bits(x), g, dst);
  }
  return out;
}

void check_noise(const py::array& noise, int64_t B, int64_t L) {
  require_ndim(noise, 2, "noise");
  require_dim(noise, 0, B, "noise");
  require_dim(noise, 1, L, "noise");
}

template <typename S, typename N>
std::tuple<Arr<S>, Arr<float>, Arr<int64_t>> patchify_random_masking(const Arr<S>& imgs, int64_t p,
                                                                     const Arr<N>& noise, int64_t len_keep) {
  const auto g = grid_of(imgs, p);
  check_noise(noise, g.B, g.L());
  if (len_keep < 0 || len_keep > g.L()) throw std::invalid_argument("len_keep must be in [0, L]");
  auto out = empty<S>({g.B, len_keep, g.D()});
  auto mask = empty<float>({g.B, g.L()});
  auto ids_restore = empty<int64_t>({g.B, g.L()});
  auto* dst = bits(out);
  float* m = mask.mutable_data();
  int64_t* r = ids_restore.mutable_data();
  {
    py::gil_scoped_release release;
    e2e::patchify_random_masking(bits(imgs), g, noise.data(), len_keep, dst, m, r);
  }
  return {out, mask, ids_restore};
}

template <typename N>
std::tuple<Arr<int64_t>, Arr<float>, Arr<int64_t>> random_masking_ids(const Arr<N>& noise, int64_t len_keep) {
  require_ndim(noise, 2, "noise");
  const int64_t B = noise.shape(0), L = noise.shape(1);
  if (len_keep < 0 || len_keep > L) throw std::invalid_argument("len_keep must be in [0, L]");
  auto ids_keep = empty<int64_t>({B, len_keep});
  auto mask = empty<float>({B, L});
  auto ids_restore = empty<int64_t>({B, L});
  int64_t* k = ids_keep.mutable_data();
  float* m = mask.mutable_data();
  int64_t* r = ids_restore.mutable_data();
  {
    py::gil_scoped_release release;
    e2e::random_masking_ids(noise.data(), B, L, len_keep, k, m, r);
  }
  return {ids_keep, mask, ids_restore};
}

template <typename S>
Arr<S> gather_tokens(const Arr<S>& x, const Arr<int64_t>& ids_keep) {
  require_ndim(x, 3, "x");
  require_ndim(ids_keep, 2, "ids_keep");
  require_dim(ids_keep, 0, x.shape(0), "ids_keep");
  const int64_t B = x.shape(0), L = x.shape(1), D = x.shape(2), K = ids_keep.shape(1);
  auto out = empty<S>({B, K, D});
  auto* dst = bits(out);
  {
    py::gil_scoped_release release;
    e2e::gather_tokens(bits(x), B, L, D, ids_keep.data(), K, dst);
  }
  return out;
}

template <typename S>
Arr<S> restore_tokens(const Arr<S>& x_vis, const Arr<int64_t>& ids_restore, const Arr<S>& mask_token) {
  require_ndim(x_vis, 3, "x_vis");
  require_ndim(ids_restore, 2, "ids_restore");
  require_ndim(mask_token, 1, "mask_token");
  require_dim(ids_restore, 0, x_vis.shape(0), "ids_restore");
  require_dim(mask_token, 0, x_vis.shape(2), "mask_token");
  const int64_t B = x_vis.shape(0), K = x_vis.shape(1), D = x_vis.shape(2), L = ids_restore.shape(1);
  if (K > L) throw std::invalid_argument("x_vis has more tokens than ids_restore has positions");
  auto out = empty<S>({B, L, D});
  auto* dst = bits(out);
  {
    py::gil_scoped_release release;
    e2e::restore_tokens(bits(x_vis), B, K, D, ids_restore.data(), L, bits(mask_token), dst);
  }
  return out;
}

template <typename S>
std::tuple<Arr<bool>, Arr<int64_t>> patch_occupancy(const Arr<S>& imgs, int64_t p) {
  const auto g = grid_of(imgs, p);
  auto occ = empty<bool>({g.B, g.L()});
  auto counts = empty<int64_t>({g.B});
  bool* o = occ.mutable_data();
  int64_t* c = counts.mutable_data();
  {
    py::gil_scoped_release release;
    e2e::patch_occupancy(bits(imgs), g, o, c);
  }
  return {occ, counts};
}

template <typename S>
void def_for_width(py::module_& m) {
  m.def("patchify", &patchify<S>, py::arg("imgs").noconvert(), py::arg("p"),
        "imgs [B, C, H, W] -> patches [B, L, p*p*C], layout (p, q, c), zero-padded at bottom/right.");
  m.def("unpatchify", &unpatchify<S>, py::arg("x").noconvert(), py::arg("p"), py::arg("H"), py::arg("W"),
        "patches [B, L, p*p*C] -> imgs [B, C, H, W], the padding cropped.");
  m.def("patchify_random_masking", &patchify_random_masking<S, float>, py::arg("imgs").noconvert(),
        py::arg("p"), py::arg("noise").noconvert(), py::arg("len_keep"),
        "-> (visible patches [B, len_keep, D], mask [B, L] float32, ids_restore [B, L] int64).");
  m.def("patchify_random_masking", &patchify_random_masking<S, double>, py::arg("imgs").noconvert(),
        py::arg("p"), py::arg("noise").noconvert(), py::arg("len_keep"));
  m.def("gather_tokens", &gather_tokens<S>, py::arg("x").noconvert(), py::arg("ids_keep").noconvert(),
        "x [B, L, D], ids_keep [B, K] -> [B, K, D].");
  m.def("restore_tokens", &restore_tokens<S>, py::arg("x_vis").noconvert(),
        py::arg("ids_restore").noconvert(), py::arg("mask_token").noconvert(),
        "x_vis [B, K, D], ids_restore [B, L], mask_token [D] -> [B, L, D].");
  m.def("patch_occupancy", &patch_occupancy<S>, py::arg("imgs").noconvert(), py::arg("p"),
        "-> (occupied [B, L] bool, counts [B] int64): patches with a non-zero pixel.");
}

#ifdef E2E_WITH_CUDA
using Ptr = std::uintptr_t;

template <typename T = void>
T* as_ptr(Ptr v, const char* name, bool needed) {
  if (needed && v == 0) throw std::invalid_argument(std::string(name) + " is a null device pointer");
  return reinterpret_cast<T*>(v);
}

void def_cuda(py::module_& m) {
  m.def(
      "patchify_cuda",
      [](Ptr imgs, Ptr out, int itemsize, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p, Ptr stream) {
        const auto g = e2e::make_patch_grid(B, C, H, W, p);
        const bool any = B > 0;
        const void* src = as_ptr(imgs, "imgs", any);
        void* dst = as_ptr(out, "out", any);
        py::gil_scoped_release release;
        e2e::cuda::patchify(src, dst, itemsize, g, stream);
      },
      py::arg("imgs"), py::arg("out"), py::arg("itemsize"), py::arg("B"), py::arg("C"), py::arg("H"),
      py::arg("W"), py::arg("p"), py::arg("stream"), "Device pointers as integers; out [B, L, D].");
  m.def(
      "unpatchify_cuda",
      [](Ptr x, Ptr out, int itemsize, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p, Ptr stream) {
        const auto g = e2e::make_patch_grid(B, C, H, W, p);
        const bool any = B > 0;
        const void* src = as_ptr(x, "x", any);
        void* dst = as_ptr(out, "out", any);
        py::gil_scoped_release release;
        e2e::cuda::unpatchify(src, dst, itemsize, g, stream);
      },
      py::arg("x"), py::arg("out"), py::arg("itemsize"), py::arg("B"), py::arg("C"), py::arg("H"),
      py::arg("W"), py::arg("p"), py::arg("stream"), "Device pointers as integers; out [B, C, H, W].");
  m.def(
      "patchify_random_masking_cuda",
      [](Ptr imgs, int itemsize, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p, Ptr noise,
         int noise_itemsize, int64_t len_keep, Ptr out, Ptr mask, Ptr ids_restore, Ptr ids_keep, Ptr stream) {
        const auto g = e2e::make_patch_grid(B, C, H, W, p);
        const bool any = B > 0;
        const void* src = as_ptr(imgs, "imgs", any);
        const void* z = as_ptr(noise, "noise", any);
        void* dst = as_ptr(out, "out", any && len_keep > 0);
        auto* mk = as_ptr<float>(mask, "mask", any);
        auto* r = as_ptr<int64_t>(ids_restore, "ids_restore", any);
        auto* k = as_ptr<int64_t>(ids_keep, "ids_keep", any && len_keep > 0);
        py::gil_scoped_release release;
        e2e::cuda::patchify_random_masking(src, itemsize, g, z, noise_itemsize, len_keep, dst, mk, r, k,
                                           stream);
      },
      py::arg("imgs"), py::arg("itemsize"), py::arg("B"), py::arg("C"), py::arg("H"), py::arg("W"),
      py::arg("p"), py::arg("noise"), py::arg("noise_itemsize"), py::arg("len_keep"), py::arg("out"),
      py::arg("mask"), py::arg("ids_restore"), py::arg("ids_keep"), py::arg("stream"));
  m.def(
      "random_masking_ids_cuda",
      [](Ptr noise, int noise_itemsize, int64_t B, int64_t L, int64_t len_keep, Ptr ids_keep, Ptr mask,
         Ptr ids_restore, Ptr stream) {
        const bool any = B > 0 && L > 0;
        const void* z = as_ptr(noise, "noise", any);
        auto* k = as_ptr<int64_t>(ids_keep, "ids_keep", any && len_keep > 0);
        auto* mk = as_ptr<float>(mask, "mask", any);
        auto* r = as_ptr<int64_t>(ids_restore, "ids_restore", any);
        py::gil_scoped_release release;
        e2e::cuda::random_masking_ids(z, noise_itemsize, B, L, len_keep, k, mk, r, stream);
      },
      py::arg("noise"), py::arg("noise_itemsize"), py::arg("B"), py::arg("L"), py::arg("len_keep"),
      py::arg("ids_keep"), py::arg("mask"), py::arg("ids_restore"), py::arg("stream"));
  m.def(
      "gather_tokens_cuda",
      [](Ptr x, int itemsize, int64_t B, int64_t L, int64_t D, Ptr ids, int64_t K, Ptr out, Ptr stream) {
        const bool any = B > 0 && K > 0 && D > 0;
        const void* src = as_ptr(x, "x", any);
        const auto* i = as_ptr<const int64_t>(ids, "ids_keep", any);
        void* dst = as_ptr(out, "out", any);
        py::gil_scoped_release release;
        e2e::cuda::gather_tokens(src, itemsize, B, L, D, i, K, dst, stream);
      },
      py::arg("x"), py::arg("itemsize"), py::arg("B"), py::arg("L"), py::arg("D"), py::arg("ids_keep"),
      py::arg("K"), py::arg("out"), py::arg("stream"));
  m.def(
      "restore_tokens_cuda",
      [](Ptr x_vis, int itemsize, int64_t B, int64_t K, int64_t D, Ptr ids, int64_t L, Ptr mask_token,
         Ptr out, Ptr stream) {
        const bool any = B > 0 && L > 0 && D > 0;
        const void* src = as_ptr(x_vis, "x_vis", any && K > 0);
        const auto* i = as_ptr<const int64_t>(ids, "ids_restore", any);
        const void* tok = as_ptr(mask_token, "mask_token", any);
        void* dst = as_ptr(out, "out", any);
        py::gil_scoped_release release;
        e2e::cuda::restore_tokens(src, itemsize, B, K, D, i, L, tok, dst, stream);
      },
      py::arg("x_vis"), py::arg("itemsize"), py::arg("B"), py::arg("K"), py::arg("D"), py::arg("ids_restore"),
      py::arg("L"), py::arg("mask_token"), py::arg("out"), py::arg("stream"));
  m.def(
      "patch_occupancy_cuda",
      [](Ptr imgs, int itemsize, int64_t B, int64_t C, int64_t H, int64_t W, int64_t p, Ptr occ, Ptr counts,
         Ptr stream) {
        const auto g = e2e::make_patch_grid(B, C, H, W, p);
        const bool any = B > 0;
        const void* src = as_ptr(imgs, "imgs", any);
        auto* o = as_ptr<bool>(occ, "occ", any);
        auto* c = as_ptr<int64_t>(counts, "counts", any);
        py::gil_scoped_release release;
        e2e::cuda::patch_occupancy(src, itemsize, g, o, c, stream);
      },
      py::arg("imgs"), py::arg("itemsize"), py::arg("B"), py::arg("C"), py::arg("H"), py::arg("W"),
      py::arg("p"), py::arg("occ"), py::arg("counts"), py::arg("stream"));
}
#endif

}  // namespace

void bind_patch(py::module_& m) {
  def_for_width<int16_t>(m);
  def_for_width<int32_t>(m);
  def_for_width<int64_t>(m);
  m.def("random_masking_ids", &random_masking_ids<float>, py::arg("noise").noconvert(), py::arg("len_keep"),
        "noise [B, L] -> (ids_keep [B, len_keep], mask [B, L] float32, ids_restore [B, L]); stable order.");
  m.def("random_masking_ids", &random_masking_ids<double>, py::arg("noise").noconvert(), py::arg("len_keep"));
#ifdef E2E_WITH_CUDA
  def_cuda(m);
#endif
}
