// SPDX-License-Identifier: BSD-3-Clause
#include "kernels/ctxval.h"

#include <algorithm>
#include <array>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/bincoder.h"
#include "kernels/rans.h"  // e2e::DecodeError

namespace e2e {
namespace {

constexpr uint8_t kVersion = 1;

using bincode::Decoder;
using bincode::Encoder;
using bincode::kCountMask;
using bincode::kInit;
using bincode::kMix;
using bincode::put_check;
using bincode::verify_check;
using bincode::put_varint;
using bincode::read_varint;
using bincode::update;

// Codes the low nb (0..64) bits of a raw, most significant first; returns them (decoded when decoding).
template <bool kEnc, class Coder>
uint64_t code_raw(Coder& c, uint64_t a, int nb) {
  uint64_t r = 0;
  while (nb > 0) {
    const int k = std::min(nb, 16);
    nb -= k;
    const uint32_t part = kEnc ? static_cast<uint32_t>((a >> nb) & ((uint64_t{1} << k) - 1)) : 0;
    r = (r << k) | c.raw(part, k);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Model

constexpr int kOcc = 5;      // occupied 8-neighbours: 0, 1, 2, 3, 4+
constexpr int kRad = 5;      // radial buckets: r < 2, 4, 8, 16, more (cells)
constexpr int kPrefix = 24;  // unary prefix positions with a probability of their own (later ones share)
constexpr int kTree = 3;     // mantissa bits below the leading one coded through a context tree
constexpr int kQFeat = 16;   // quantized features 0..15: 0 empty, else 1 + min(bit length, 14)
constexpr int kFFeat = 34;   // float32bits neighbour buckets: 0 none, else 1 + clamp(exp - 112, 0, 32)
constexpr int kLenCtx = 25;  // bit lengths with mantissa contexts of their own (1..24, longer share)
constexpr int kDiffCtx = 6;  // float32bits mantissa context: exponent - reference in -2..2, or no reference

constexpr int kQCtx = kQFeat * kOcc * kRad;
constexpr int kFCtx = kFFeat * kOcc * kRad;

struct Models {
  std::vector<uint32_t> zero, sign, dsign, len, man;
  explicit Models(ValueKind kind) {
    const std::size_t nc = kind == ValueKind::kQuantized ? kQCtx : kFCtx;
    const std::size_t nm = kind == ValueKind::kQuantized ? kLenCtx * 2 : kDiffCtx * 2;
    zero.assign(nc, kInit);
    sign.assign(nc, kInit);
    dsign.assign(nc, kInit);
    len.assign(nc * kPrefix, kInit);
    man.assign(nm * (std::size_t{1} << kTree), kInit);
  }
};

inline int bit_length(uint64_t a) {
  int k = 0;
  while (a) {
    ++k;
    a >>= 1;
  }
  return k;
}

// Unary code of mag >= 1 with a bound (mag <= limit): bits (mag > j) for j = 1 .. limit - 1.
template <bool kEnc, class Coder>
uint64_t code_unary(Coder& c, uint32_t* probs, uint64_t mag, uint64_t limit) {
  uint64_t j = 1;
  while (j < limit) {
    const std::size_t at = static_cast<std::size_t>(std::min<uint64_t>(j - 1, kPrefix - 1));
    if (!c.code(probs[at], kEnc ? (mag > j ? 1 : 0) : 0)) break;
    ++j;
  }
  return j;
}

// Top kTree bits below the leading one of a (bit length k) through the tree `probs` [2^kTree]; appends
// them to r (which holds the leading one) and returns it.
template <bool kEnc, class Coder>
uint64_t code_tree(Coder& c, uint32_t* probs, uint64_t a, int k, int t) {
  uint64_t r = 1;
  unsigned node = 1;
  for (int i = 0; i < t; ++i) {
    const int bit = c.code(probs[node], kEnc ? static_cast<int>((a >> (k - 2 - i)) & 1u) : 0);
    node = node * 2 + static_cast<unsigned>(bit);
    r = r * 2 + static_cast<uint64_t>(bit);
  }
  return r;
}

struct Cell {
  std::size_t ctx;  // (feature bucket * kOcc + occupied neighbours) * kRad + radial
  unsigned occ0;    // 1 if no neighbour is occupied
  unsigned m;       // largest causal neighbour feature
};

template <bool kEnc, class Coder>
int64_t code_quantized(Coder& c, Models& md, const Cell& cell, int64_t v) {
  const bool neg_in = kEnc && v < 0;
  const uint64_t a = kEnc ? (neg_in ? uint64_t{0} - static_cast<uint64_t>(v) : static_cast<uint64_t>(v)) : 0;
  if (c.code(md.zero[cell.ctx], kEnc ? (a == 0 ? 1 : 0) : 0)) return 0;
  const bool neg = c.code(md.sign[cell.ctx], neg_in ? 1 : 0) != 0;
  const int k = static_cast<int>(
      code_unary<kEnc>(c, &md.len[cell.ctx * kPrefix], static_cast<uint64_t>(bit_length(a)), 64));
  const int t = std::min(k - 1, kTree);
  uint32_t* tree = &md.man[(static_cast<std::size_t>(std::min(k, kLenCtx - 1)) * 2 + cell.occ0) << kTree];
  uint64_t r = code_tree<kEnc>(c, tree, a, k, t);
  const int rest = k - 1 - t;
  r = (r << rest) | code_raw<kEnc>(c, a, rest);
  if constexpr (kEnc) {
    return v;
  } else {
    constexpr uint64_t kTop = uint64_t{1} << 63;
    if (neg && r == kTop) return std::numeric_limits<int64_t>::min();
    if (r >= kTop) throw DecodeError("value stream: corrupt (value out of range)");
    return neg ? -static_cast<int64_t>(r) : static_cast<int64_t>(r);
  }
}

template <bool kEnc, class Coder>
int64_t code_float32(Coder& c, Models& md, const Cell& cell, int64_t v) {
  const uint32_t u = kEnc ? static_cast<uint32_t>(static_cast<int32_t>(v)) : 0;
  const uint32_t s = static_cast<uint32_t>(c.code(md.sign[cell.ctx], static_cast<int>(u >> 31)));
  const int64_t e_in = static_cast<int64_t>((u >> 23) & 0xFFu);
  const int64_t ref = cell.m ? static_cast<int64_t>(cell.m) - 1 : 127;
  const int64_t d_in = e_in - ref;
  int64_t d = 0;
  if (!c.code(md.zero[cell.ctx], kEnc ? (d_in == 0 ? 1 : 0) : 0)) {
    const bool neg = c.code(md.dsign[cell.ctx], d_in < 0 ? 1 : 0) != 0;
    const uint64_t limit = static_cast<uint64_t>(neg ? ref : 255 - ref);
    if (limit == 0) throw DecodeError("value stream: corrupt (exponent out of range)");  // decoder only
    const auto mag_in = static_cast<uint64_t>(neg ? -d_in : d_in);
    const uint64_t mag = code_unary<kEnc>(c, &md.len[cell.ctx * kPrefix], mag_in, limit);
    d = neg ? -static_cast<int64_t>(mag) : static_cast<int64_t>(mag);
  }
  const auto e = static_cast<uint32_t>(ref + d);
  const std::size_t dc = cell.m ? static_cast<std::size_t>(std::clamp<int64_t>(d, -2, 2) + 2) : kDiffCtx - 1;
  uint32_t* tree = &md.man[(dc * 2 + cell.occ0) << kTree];
  const uint32_t mant_in = u & 0x7FFFFFu;
  const uint64_t top = code_tree<kEnc>(c, tree, mant_in, 24, kTree) & ((1u << kTree) - 1);
  const uint64_t low = code_raw<kEnc>(c, mant_in, 23 - kTree);
  const auto mant = static_cast<uint32_t>(top << (23 - kTree) | low);
  const uint32_t out = s << 31 | e << 23 | mant;
  return static_cast<int64_t>(static_cast<int32_t>(out));
}

inline uint64_t mix_cell(uint64_t h, int64_t plane, int64_t index, int64_t v) {
  h = (h + static_cast<uint64_t>(plane) * 0x100000001B3ull + static_cast<uint64_t>(index) + 1) * kMix;
  return (h ^ static_cast<uint64_t>(v)) * kMix;
}

inline unsigned radial(int64_t y, int64_t x, int64_t h, int64_t w) {
  const int64_t dy = 2 * y + 1 - h, dx = 2 * x + 1 - w;
  const int64_t d2 = dy * dy + dx * dx;  // (2 r)^2
  return static_cast<unsigned>((d2 >= 16) + (d2 >= 64) + (d2 >= 256) + (d2 >= 1024));
}

constexpr std::size_t kMaxPadded = std::size_t{1} << 26;  // scratch cells (h + 2) * (w + 2)

// Codes (kEnc: values) or decodes (into out) all cells; returns the running hash.
template <bool kEnc, class Coder>
uint64_t code_all(Coder& c, const int64_t* values, const int64_t* plane, const int64_t* index, std::size_t n,
                  std::size_t h, std::size_t w, ValueKind kind, int64_t* out) {
  uint64_t check = 0;
  if (!n) return check;
  const std::size_t s = w + 2;
  std::vector<uint8_t> occ((h + 2) * s, 0);
  std::vector<uint16_t> feat((h + 2) * s, 0);
  std::vector<uint32_t> pos(n);
  std::vector<uint8_t> rad(n);
  const auto wi = static_cast<int64_t>(w), hi = static_cast<int64_t>(h);
  for (std::size_t i = 0; i < n; ++i) {
    const int64_t y = index[i] / wi, x = index[i] % wi;
    pos[i] = static_cast<uint32_t>(static_cast<std::size_t>(y + 1) * s + static_cast<std::size_t>(x + 1));
    rad[i] = static_cast<uint8_t>(radial(y, x, hi, wi));
  }
  Models md(kind);
  const bool quantized = kind == ValueKind::kQuantized;
  const uint8_t* o = occ.data();
  const uint16_t* f = feat.data();
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i + 1;
    while (j < n && plane[j] == plane[i]) ++j;
    for (std::size_t k = i; k < j; ++k) occ[pos[k]] = 1;
    for (std::size_t k = i; k < j; ++k) {
      const std::size_t p = pos[k];
      const auto cnt = static_cast<unsigned>(o[p - 1] + o[p + 1] + o[p - s - 1] + o[p - s] + o[p - s + 1] +
                                             o[p + s - 1] + o[p + s] + o[p + s + 1]);
      const unsigned m = std::max(std::max(f[p - 1], f[p - s]), std::max(f[p - s - 1], f[p - s + 1]));
      unsigned bucket = m;
      if (!quantized && m)
        bucket = 1 + static_cast<unsigned>(std::clamp<int>(static_cast<int>(m) - 113, 0, kFFeat - 2));
      Cell cell;
      cell.m = m;
      cell.occ0 = cnt == 0 ? 1u : 0u;
      cell.ctx = (static_cast<std::size_t>(bucket) * kOcc + std::min(cnt, 4u)) * kRad + rad[k];
      const int64_t vin = kEnc ? values[k] : 0;
      const int64_t v =
          quantized ? code_quantized<kEnc>(c, md, cell, vin) : code_float32<kEnc>(c, md, cell, vin);
      if constexpr (!kEnc) out[k] = v;
      uint16_t ft;
      if (quantized) {
        const uint64_t a = v < 0 ? uint64_t{0} - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
        ft = static_cast<uint16_t>(1 + std::min(bit_length(a), kQFeat - 2));
      } else {
        ft = static_cast<uint16_t>(1 + ((static_cast<uint64_t>(v) >> 23) & 0xFFu));
      }
      feat[p] = ft;
      check = mix_cell(check, plane[k], index[k], v);
    }
    for (std::size_t k = i; k < j; ++k) {
      occ[pos[k]] = 0;
      feat[pos[k]] = 0;
    }
    i = j;
  }
  return check;
}

}  // namespace

void ctxval_check_cells(const int64_t* plane, const int64_t* index, std::size_t n, std::size_t h,
                        std::size_t w) {
  if (!n) return;
  if (h == 0 || w == 0 || h > kMaxPadded || w > kMaxPadded || (h + 2) > kMaxPadded / (w + 2))
    throw std::invalid_argument("plane size " + std::to_string(h) + " x " + std::to_string(w) +
                                " out of range for occupied cells");
  const auto cells = static_cast<int64_t>(h * w);
  for (std::size_t i = 0; i < n; ++i) {
    if (plane[i] < 0) throw std::invalid_argument("plane ids must be >= 0");
    if (index[i] < 0 || index[i] >= cells)
      throw std::invalid_argument("cell index " + std::to_string(index[i]) + " outside [0, " +
                                  std::to_string(cells) + ")");
    if (i && (plane[i] < plane[i - 1] || (plane[i] == plane[i - 1] && index[i] <= index[i - 1])))
      throw std::invalid_argument("cells must be strictly increasing by (plane, index)");
  }
}

void ctxval_check_values(const int64_t* values, std::size_t n, ValueKind kind) {
  if (kind != ValueKind::kFloat32Bits) return;
  for (std::size_t i = 0; i < n; ++i)
    if (values[i] < std::numeric_limits<int32_t>::min() || values[i] > std::numeric_limits<int32_t>::max())
      throw std::invalid_argument("float32bits values must be int32 bit patterns, got " +
                                  std::to_string(values[i]));
}

std::vector<uint8_t> ctxval_encode(const int64_t* values, const int64_t* plane, const int64_t* index,
                                   std::size_t n, std::size_t h, std::size_t w, ValueKind kind) {
  ctxval_check_cells(plane, index, n, h, w);
  ctxval_check_values(values, n, kind);
  std::vector<uint8_t> out;
  out.reserve(16 + n);
  out.push_back(kVersion);
  out.push_back(static_cast<uint8_t>(kind));
  put_varint(out, n);
  Encoder enc(out);
  const uint64_t check = code_all<true>(enc, values, plane, index, n, h, w, kind, nullptr);
  enc.finish();
  put_check(out, check);
  return out;
}

CtxValHeader ctxval_read_header(const uint8_t* data, std::size_t size) {
  if (size < 2) throw DecodeError("value stream: truncated header");
  if (data[0] != kVersion) throw DecodeError("value stream: unknown version " + std::to_string(data[0]));
  if (data[1] > 1) throw DecodeError("value stream: unknown kind " + std::to_string(data[1]));
  CtxValHeader hdr{};
  hdr.kind = static_cast<ValueKind>(data[1]);
  std::size_t pos = 2;
  hdr.n = read_varint(data, size, pos, "value stream");
  hdr.size = pos;
  return hdr;
}

void ctxval_decode(const uint8_t* data, std::size_t size, const int64_t* plane, const int64_t* index,
                   std::size_t n, std::size_t h, std::size_t w, ValueKind kind, int64_t* out) {
  ctxval_check_cells(plane, index, n, h, w);
  const CtxValHeader hdr = ctxval_read_header(data, size);
  if (hdr.n != n)
    throw DecodeError("value stream holds " + std::to_string(hdr.n) + " values, expected " +
                      std::to_string(n));
  if (hdr.kind != kind) throw DecodeError("value stream is of another kind");
  if (size - hdr.size < 8) throw DecodeError("value stream: truncated");
  const std::size_t end = size - 4;
  Decoder dec(data + hdr.size, end - hdr.size, "value stream");
  const uint64_t check = code_all<false>(dec, nullptr, plane, index, n, h, w, kind, out);
  dec.finish();
  verify_check(data + end, check, "value stream");
}

}  // namespace e2e
