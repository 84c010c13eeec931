// SPDX-License-Identifier: BSD-3-Clause
#include "kernels/ctxcode.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/bincoder.h"
#include "kernels/rans.h"  // e2e::DecodeError

namespace e2e {
namespace {

constexpr uint8_t kVersion = 1;
constexpr uint8_t kFlagContext = 1;

// Context features.
constexpr int kRadial = 16;   // radial buckets
constexpr int kLevels = 4;    // context plane values 0..3
constexpr int kNeighbours = 16;
constexpr int kStates = 8;    // block state of a cell: 0 = seen an occupied cell, else 1 + min(log2(left), 6)
constexpr int64_t kEdges[kRadial - 1] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192};

constexpr uint32_t kSeedCount = 8;  // a context seen first starts as if seen this often (see below)

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

// ---------------------------------------------------------------------------------------------------------
// Plane geometry and scratch space, shared by all planes of a call.

uint8_t radial_bucket(int64_t d2) {  // d2 = (2 r)^2
  uint8_t b = 0;
  for (const int64_t e : kEdges) b = static_cast<uint8_t>(b + (d2 >= 4 * e * e ? 1 : 0));
  return b;
}

int64_t twice_offset(std::size_t lo, std::size_t hi, std::size_t size) {  // 2 * (centre of [lo, hi) - centre)
  return static_cast<int64_t>(lo + hi) - static_cast<int64_t>(size);
}

struct Layout {
  std::size_t h, w, k, gh, gw;
  std::size_t stride;              // of the padded cell buffer: w + 2
  std::vector<uint8_t> rad_cell;   // [h * w]
  std::vector<uint8_t> rad_block;  // [gh * gw]
  std::array<uint8_t, kCtxMaxBlock * kCtxMaxBlock + 1> state{};  // cells left in a block -> state 1..7

  Layout(std::size_t h_, std::size_t w_, std::size_t k_)
      : h(h_), w(w_), k(k_), gh((h_ + k_ - 1) / k_), gw((w_ + k_ - 1) / k_), stride(w_ + 2) {
    std::vector<int64_t> dx2(w);
    for (std::size_t x = 0; x < w; ++x) {
      const int64_t d = twice_offset(x, x + 1, w);
      dx2[x] = d * d;
    }
    rad_cell.resize(h * w);
    for (std::size_t y = 0; y < h; ++y) {
      const int64_t d = twice_offset(y, y + 1, h);
      for (std::size_t x = 0; x < w; ++x) rad_cell[y * w + x] = radial_bucket(d * d + dx2[x]);
    }
    rad_block.resize(gh * gw);
    for (std::size_t by = 0; by < gh; ++by) {
      const int64_t dy = twice_offset(by * k, std::min(h, by * k + k), h);
      for (std::size_t bx = 0; bx < gw; ++bx) {
        const int64_t dx = twice_offset(bx * k, std::min(w, bx * k + k), w);
        rad_block[by * gw + bx] = radial_bucket(dy * dy + dx * dx);
      }
    }
    for (std::size_t left = 1; left < state.size(); ++left) {
      int lg = 0;
      while ((std::size_t{2} << lg) <= left) ++lg;
      state[left] = static_cast<uint8_t>(1 + std::min(lg, kStates - 2));
    }
  }
};

// Probabilities by context. With a context plane, `block` and `cell` are indexed by level too, and the
// `*_any` models (the same contexts without the level) seed each one at its first use.
struct Models {
  std::array<uint32_t, 2> plane;
  std::vector<uint32_t> block = std::vector<uint32_t>(kLevels * kRadial * kNeighbours, kInit);
  std::vector<uint32_t> cell = std::vector<uint32_t>(kStates * kLevels * kRadial * kNeighbours, kInit);
  std::vector<uint32_t> block_any = std::vector<uint32_t>(kRadial * kNeighbours, kInit);
  std::vector<uint32_t> cell_any = std::vector<uint32_t>(kStates * kRadial * kNeighbours, kInit);
  Models() { plane.fill(kInit); }
};

// Codes a decision under model st; with a context plane, st starts from `any` (as if seen kSeedCount times)
// and `any` learns from every decision as well.
template <class Coder>
inline int code_seeded(Coder& coder, uint32_t& st, uint32_t* any, int bit) {
  if (!any) return coder.code(st, bit);
  if ((st & kCountMask) == 0) st = (*any & ~kCountMask) | std::min(*any & kCountMask, kSeedCount);
  bit = coder.code(st, bit);
  update(*any, bit);
  return bit;
}

struct Scratch {
  std::vector<uint8_t> cells;   // [(h + 1) x (w + 2)]: row 0 and columns 0, w + 1 stay 0
  std::vector<uint8_t> flags;   // [(gh + 1) x (gw + 2)] block flags, padded the same way
  std::vector<uint8_t> levels;  // [gh * gw] largest context value per block
  std::vector<uint32_t> cols;   // occupied block columns of the current block row
  std::vector<uint32_t> prev;   // ... and of the previous block row with any
  std::vector<uint8_t> seen;    // [gw] whether the block has an occupied cell so far
  std::size_t base = 0;         // flat index of the current plane's first cell in the stack
  uint64_t check = 0;           // running hash of the flat indices of the occupied cells, in order
  explicit Scratch(const Layout& g)
      : cells((g.h + 1) * g.stride, 0), flags((g.gh + 1) * (g.gw + 2), 0), levels(g.gh * g.gw, 0),
        seen(g.gw, 0) {
    cols.reserve(g.gw);
    prev.reserve(g.gw);
  }
};

inline uint8_t level(uint8_t v) { return v > 3 ? uint8_t{3} : v; }

void pool_levels(const Layout& g, const uint8_t* ctx, Scratch& s) {
  std::fill(s.levels.begin(), s.levels.end(), uint8_t{0});
  for (std::size_t y = 0; y < g.h; ++y) {
    const uint8_t* row = ctx + y * g.w;
    uint8_t acc = 0;
    for (std::size_t x = 0; x < g.w; ++x) acc |= row[x];
    if (!acc) continue;
    uint8_t* lv = s.levels.data() + (y / g.k) * g.gw;
    for (std::size_t bx = 0; bx < g.gw; ++bx) {
      const std::size_t x1 = std::min(g.w, bx * g.k + g.k);
      uint8_t m = lv[bx];
      for (std::size_t x = bx * g.k; x < x1; ++x) m = std::max(m, row[x]);
      lv[bx] = level(m);
    }
  }
}

// Encoder only: block flags of a plane into s.flags; returns whether any is set.
bool find_blocks(const Layout& g, const uint8_t* occ, Scratch& s) {
  const std::size_t fs = g.gw + 2;
  bool any = false;
  for (std::size_t y = 0; y < g.h; ++y) {
    const uint8_t* row = occ + y * g.w;
    uint8_t acc = 0;
    for (std::size_t x = 0; x < g.w; ++x) acc |= row[x];
    if (!acc) continue;
    any = true;
    uint8_t* f = s.flags.data() + (y / g.k + 1) * fs + 1;
    for (std::size_t bx = 0; bx < g.gw; ++bx) {
      if (f[bx]) continue;
      const std::size_t x1 = std::min(g.w, bx * g.k + g.k);
      uint8_t a = 0;
      for (std::size_t x = bx * g.k; x < x1; ++x) a |= row[x];
      f[bx] = a ? 1 : 0;
    }
  }
  return any;
}

// Copies the cells of block row `by`, occupied block columns s.prev, to out (decoder), hashes the
// occupied ones (in raster order of the plane) and clears them.
template <bool kEnc>
void flush_cells(const Layout& g, Scratch& s, std::size_t by, uint8_t* out) {
  const std::size_t y0 = by * g.k, y1 = std::min(g.h, y0 + g.k);
  for (std::size_t y = y0; y < y1; ++y) {
    uint8_t* row = s.cells.data() + (y + 1) * g.stride + 1;
    for (const uint32_t bx : s.prev) {
      const std::size_t x0 = bx * g.k, x1 = std::min(g.w, x0 + g.k);
      for (std::size_t x = x0; x < x1; ++x)
        if (row[x]) s.check = (s.check + s.base + y * g.w + x + 1) * kMix;
      if constexpr (!kEnc) std::memcpy(out + y * g.w + x0, row + x0, x1 - x0);
      std::memset(row + x0, 0, x1 - x0);
    }
  }
  s.prev.clear();
}

// Codes (kEnc) or decodes one plane. Encoding reads occ; decoding writes the cells into out (all zero on
// entry). `ctx` may be null. s.flags and s.cells are all zero on entry and on return.
template <bool kEnc, class Coder>
void code_plane(Coder& coder, Models& m, const Layout& g, Scratch& s, const uint8_t* occ, const uint8_t* ctx,
                uint8_t* out, bool& prev_empty) {
  const std::size_t fs = g.gw + 2;
  bool any = false;
  if constexpr (kEnc) any = find_blocks(g, occ, s);
  any = coder.code(m.plane[prev_empty ? 1 : 0], any ? 1 : 0) != 0;
  prev_empty = !any;
  if (!any) return;
  if (ctx) pool_levels(g, ctx, s);

  // Block flags.
  const std::size_t n_blocks = g.gh * g.gw;
  std::size_t seen_blocks = 0;
  for (std::size_t by = 0; by < g.gh; ++by) {
    uint8_t* f = s.flags.data() + (by + 1) * fs + 1;
    const uint8_t* up = f - fs;
    const uint8_t* lv = s.levels.data() + by * g.gw;
    const uint8_t* rad = g.rad_block.data() + by * g.gw;
    for (std::size_t bx = 0; bx < g.gw; ++bx) {
      int bit = 1;
      if (seen_blocks || by * g.gw + bx + 1 < n_blocks) {
        const unsigned nb =
            static_cast<unsigned>(f[bx - 1] | up[bx] << 1 | up[bx - 1] << 2 | up[bx + 1] << 3);
        const std::size_t c = static_cast<std::size_t>(rad[bx]) * kNeighbours + nb;
        uint32_t* seed = ctx ? &m.block_any[c] : nullptr;
        bit = code_seeded(coder, m.block[lv[bx] * kRadial * kNeighbours + c], seed, kEnc ? f[bx] : 0);
      }
      f[bx] = static_cast<uint8_t>(bit);
      seen_blocks += static_cast<std::size_t>(bit);
    }
  }

  // Cells of the occupied blocks, in raster order of the plane. A block row's cells stay in s.cells until
  // the next block row is done (its first row looks up), then they go out (decoder) and are cleared.
  s.prev.clear();
  std::size_t prev_by = 0;
  for (std::size_t by = 0; by < g.gh; ++by) {
    uint8_t* f = s.flags.data() + (by + 1) * fs + 1;
    s.cols.clear();
    for (std::size_t bx = 0; bx < g.gw; ++bx)
      if (f[bx]) s.cols.push_back(static_cast<uint32_t>(bx));
    if (s.cols.empty()) continue;
    for (const uint32_t bx : s.cols) s.seen[bx] = 0;
    const std::size_t y0 = by * g.k, y1 = std::min(g.h, y0 + g.k);
    for (std::size_t y = y0; y < y1; ++y) {
      uint8_t* row = s.cells.data() + (y + 1) * g.stride + 1;
      const uint8_t* up = row - g.stride;
      const uint8_t* rad = g.rad_cell.data() + y * g.w;
      const uint8_t* src = kEnc ? occ + y * g.w : nullptr;
      const uint8_t* cv = ctx ? ctx + y * g.w : nullptr;
      const std::size_t rows_left = y1 - 1 - y;
      for (const uint32_t bx : s.cols) {
        const std::size_t x0 = bx * g.k, x1 = std::min(g.w, x0 + g.k);
        const std::size_t bw = x1 - x0;
        uint8_t seen = s.seen[bx];
        for (std::size_t x = x0; x < x1; ++x) {
          int bit = 1;
          const std::size_t left = rows_left * bw + (x1 - x);
          if (seen || left > 1) {
            const unsigned nb =
                static_cast<unsigned>(row[x - 1] | up[x] << 1 | up[x - 1] << 2 | up[x + 1] << 3);
            const std::size_t state = seen ? 0 : g.state[left];
            const std::size_t lvl = cv ? level(cv[x]) : 0;
            const std::size_t c = static_cast<std::size_t>(rad[x]) * kNeighbours + nb;
            uint32_t* seed = cv ? &m.cell_any[state * kRadial * kNeighbours + c] : nullptr;
            uint32_t& st = m.cell[(state * kLevels + lvl) * kRadial * kNeighbours + c];
            bit = code_seeded(coder, st, seed, kEnc ? (src[x] ? 1 : 0) : 0);
          }
          row[x] = static_cast<uint8_t>(bit);
          seen = static_cast<uint8_t>(seen | bit);
        }
        s.seen[bx] = seen;
      }
    }
    flush_cells<kEnc>(g, s, prev_by, out);
    s.prev.swap(s.cols);
    prev_by = by;
  }
  flush_cells<kEnc>(g, s, prev_by, out);
  std::fill(s.flags.begin(), s.flags.end(), uint8_t{0});
}

// Checks that n * (h + 1) * (w + 2) and the other buffer sizes cannot overflow.
void check_sizes(std::size_t n, std::size_t h, std::size_t w) {
  constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max() / 4;
  const std::size_t side = std::max(h, w) + 2;
  if (h >= kMax || w >= kMax || side > kMax / side || (h && w && n > kMax / (h * w)))
    throw std::invalid_argument("plane sizes too large: " + std::to_string(n) + " x " + std::to_string(h) +
                                " x " + std::to_string(w));
}

}  // namespace

std::vector<uint8_t> ctx_encode(const uint8_t* occ, const uint8_t* context, std::size_t n, std::size_t h,
                                std::size_t w, int block) {
  if (block < 1 || block > kCtxMaxBlock)
    throw std::invalid_argument("block size must be in [1, " + std::to_string(kCtxMaxBlock) + "], got " +
                                std::to_string(block));
  check_sizes(n, h, w);
  std::vector<uint8_t> out;
  out.push_back(kVersion);
  out.push_back(context ? kFlagContext : 0);
  out.push_back(static_cast<uint8_t>(block));
  put_varint(out, n);
  put_varint(out, h);
  put_varint(out, w);
  Encoder enc(out);
  uint64_t check = 0;
  if (n && h && w) {
    const Layout g(h, w, static_cast<std::size_t>(block));
    Scratch s(g);
    Models m;
    bool prev_empty = false;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t off = i * h * w;
      s.base = off;
      code_plane<true>(enc, m, g, s, occ + off, context ? context + off : nullptr, nullptr, prev_empty);
    }
    check = s.check;
  }
  enc.finish();
  put_check(out, check);  // a hash of the occupied cells' flat indices
  return out;
}

CtxHeader ctx_read_header(const uint8_t* data, std::size_t size) {
  if (size < 3) throw DecodeError("occupancy stream: truncated header");
  if (data[0] != kVersion) throw DecodeError("occupancy stream: unknown version " + std::to_string(data[0]));
  if (data[1] & ~kFlagContext) throw DecodeError("occupancy stream: unknown flags");
  if (data[2] < 1 || data[2] > kCtxMaxBlock) throw DecodeError("occupancy stream: bad block size");
  CtxHeader hdr{};
  hdr.has_context = (data[1] & kFlagContext) != 0;
  hdr.block = data[2];
  std::size_t pos = 3;
  hdr.n = read_varint(data, size, pos, "occupancy stream");
  hdr.h = read_varint(data, size, pos, "occupancy stream");
  hdr.w = read_varint(data, size, pos, "occupancy stream");
  hdr.size = pos;
  return hdr;
}

void ctx_decode(const uint8_t* data, std::size_t size, const uint8_t* context, std::size_t n, std::size_t h,
                std::size_t w, uint8_t* out) {
  const CtxHeader hdr = ctx_read_header(data, size);
  if (hdr.n != n || hdr.h != h || hdr.w != w)
    throw DecodeError("occupancy stream holds " + std::to_string(hdr.n) + " planes of " +
                      std::to_string(hdr.h) + " x " + std::to_string(hdr.w) + ", expected " +
                      std::to_string(n) + " of " + std::to_string(h) + " x " + std::to_string(w));
  if (hdr.has_context != (context != nullptr))
    throw DecodeError(hdr.has_context ? "occupancy stream was coded with a context plane, none given"
                                      : "occupancy stream was coded without a context plane, one given");
  check_sizes(n, h, w);
  if (n && h && w) std::memset(out, 0, n * h * w);
  if (size - hdr.size < 8) throw DecodeError("occupancy stream: truncated");
  const std::size_t end = size - 4;
  Decoder dec(data + hdr.size, end - hdr.size, "occupancy stream");
  uint64_t check = 0;
  if (n && h && w) {
    const Layout g(h, w, static_cast<std::size_t>(hdr.block));
    Scratch s(g);
    Models m;
    bool prev_empty = false;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t off = i * h * w;
      s.base = off;
      code_plane<false>(dec, m, g, s, nullptr, context ? context + off : nullptr, out + off, prev_empty);
    }
    check = s.check;
  }
  dec.finish();
  verify_check(data + end, check, "occupancy stream");
}

}  // namespace e2e
