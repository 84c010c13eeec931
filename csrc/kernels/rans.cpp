// SPDX-License-Identifier: BSD-3-Clause
#include "kernels/rans.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <queue>
#include <string>
#include <type_traits>
#include <utility>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define E2E_RANS_AVX2 1
#endif

namespace e2e {
namespace {

constexpr uint32_t kL = 1u << 16;  // lower bound of the coder state
constexpr uint8_t kStreamVersion = 1;
constexpr uint8_t kTableVersion = 1;
constexpr uint8_t kTableMagic[4] = {'E', '2', 'R', 'T'};

std::string str(uint64_t v) { return std::to_string(v); }

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

// Bounds-checked reader over untrusted bytes; every failure is a DecodeError naming `what`.
class Reader {
 public:
  Reader(const uint8_t* p, std::size_t n, const char* what) : p_(p), end_(p + n), what_(what) {}

  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  const uint8_t* pos() const { return p_; }

  uint8_t u8() {
    need(1);
    return *p_++;
  }

  uint32_t u32() {
    need(4);
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= static_cast<uint32_t>(p_[k]) << (8 * k);
    p_ += 4;
    return v;
  }

  // Minimal unsigned LEB128 of at most 64 bits.
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const uint8_t b = u8();
      const uint64_t bits = b & 0x7Fu;
      if (shift == 63 && bits > 1) fail("varint overflows 64 bits");
      v |= bits << shift;
      if (!(b & 0x80u)) {
        if (b == 0 && shift > 0) fail("non-minimal varint");
        return v;
      }
    }
    fail("varint longer than 10 bytes");
  }

  [[noreturn]] void fail(const std::string& msg) const { throw DecodeError(std::string(what_) + ": " + msg); }

 private:
  void need(std::size_t k) const {
    if (left() < k) fail("truncated");
  }
  const uint8_t* p_;
  const uint8_t* end_;
  const char* what_;
};

void check_shape(std::size_t D, std::size_t K, int prob_bits) {
  if (prob_bits < 1 || prob_bits > kRansMaxProbBits)
    throw std::invalid_argument("prob_bits must be in [1, 16], got " + std::to_string(prob_bits));
  if (D < 1) throw std::invalid_argument("a table needs at least one dimension");
  if (K < 1 || K > kRansMaxSymbols)
    throw std::invalid_argument("the number of symbols must be in [1, 65536], got " + str(K));
  if (D > (kRansMaxSlots >> prob_bits) || D * K > kRansMaxSlots)
    throw std::invalid_argument("table too large: dims * 2^prob_bits and dims * n_symbols must be <= 2^24, "
                                "got " + str(D) + " dims, " + str(K) + " symbols, prob_bits " +
                                std::to_string(prob_bits));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Frequency tables

std::vector<uint32_t> rans_build_freqs(const int64_t* counts, std::size_t D, std::size_t K, int prob_bits) {
  check_shape(D, K, prob_bits);
  const uint32_t total = 1u << prob_bits;
  if (K > total)
    throw std::invalid_argument(str(K) + " symbols do not fit in 2^" + std::to_string(prob_bits) +
                                " slots with frequency >= 1 each");
  const uint32_t spare = total - static_cast<uint32_t>(K);
  std::vector<uint32_t> freqs(D * K);
  std::vector<uint64_t> c(K);
  using Item = std::pair<double, std::size_t>;  // (gain of one more slot, symbol); ties: lower symbol
  auto worse = [](const Item& a, const Item& b) {
    return a.first < b.first || (a.first == b.first && a.second > b.second);
  };

  for (std::size_t d = 0; d < D; ++d) {
    const int64_t* row = counts + d * K;
    int64_t largest = 0;
    for (std::size_t s = 0; s < K; ++s) {
      if (row[s] < 0)
        throw std::invalid_argument("counts must be >= 0 (dim " + str(d) + ", symbol " + str(s) + ")");
      largest = std::max(largest, row[s]);
    }
    // Keep sum < 2^47 so that c * spare fits 64 bits: counts beyond ~2^31 per symbol are scaled down.
    int scale = 0;
    while ((static_cast<uint64_t>(largest) >> scale) * K >= (uint64_t{1} << 47)) ++scale;
    uint64_t sum = 0;
    for (std::size_t s = 0; s < K; ++s) {
      c[s] = static_cast<uint64_t>(row[s]) >> scale;
      sum += c[s];
    }
    if (sum == 0) {  // nothing seen: uniform
      std::fill(c.begin(), c.end(), 1);
      sum = K;
    }
    // Start from a lower bound of the optimum, max(1, floor(c * spare / sum)): every unit it holds has a
    // marginal gain above the final greedy threshold. Then hand out the rest by largest gain c*log(1+1/f).
    uint32_t* f = freqs.data() + d * K;
    uint32_t used = 0;
    for (std::size_t s = 0; s < K; ++s) {
      const auto share = static_cast<uint32_t>(c[s] * spare / sum);
      f[s] = std::max(1u, share);
      used += f[s];
    }
    std::priority_queue<Item, std::vector<Item>, decltype(worse)> heap(worse);
    auto gain = [&](std::size_t s) { return static_cast<double>(c[s]) * std::log1p(1.0 / f[s]); };
    for (std::size_t s = 0; s < K; ++s) heap.emplace(gain(s), s);
    for (; used < total; ++used) {
      const std::size_t s = heap.top().second;
      heap.pop();
      ++f[s];
      heap.emplace(gain(s), s);
    }
  }
  return freqs;
}

RansTable::RansTable(const uint32_t* freqs, std::size_t D, std::size_t K, int prob_bits)
    : D_(D), K_(K), M_(prob_bits) {
  check_shape(D, K, prob_bits);
  const uint32_t total = 1u << prob_bits;
  freq_.assign(freqs, freqs + D * K);
  sym_.resize(D * K);
  packed_.resize(D * K);
  if (narrow())
    slot8_.resize((D << prob_bits) + 3);
  else
    slot16_.resize((D << prob_bits) + 1);
  for (std::size_t d = 0; d < D; ++d) {
    uint64_t cum = 0;
    for (std::size_t s = 0; s < K; ++s) {
      const uint32_t f = freq_[d * K + s];
      if (f > total || cum + f > total)
        throw std::invalid_argument("frequencies of dim " + str(d) + " sum to more than 2^" +
                                    std::to_string(prob_bits));
      sym_[d * K + s] = {f, static_cast<uint32_t>(cum)};
      packed_[d * K + s] = f ? (f - 1) << 16 | static_cast<uint32_t>(cum) : 0u;
      const std::size_t base = (d << prob_bits) + cum;
      if (narrow())
        std::fill_n(slot8_.begin() + static_cast<std::ptrdiff_t>(base), f, static_cast<uint8_t>(s));
      else
        std::fill_n(slot16_.begin() + static_cast<std::ptrdiff_t>(base), f, static_cast<uint16_t>(s));
      cum += f;
    }
    if (cum != total)
      throw std::invalid_argument("frequencies of dim " + str(d) + " sum to " + str(cum) + ", not 2^" +
                                  std::to_string(prob_bits));
  }
}

std::vector<uint8_t> RansTable::to_bytes() const {
  std::vector<uint8_t> out(std::begin(kTableMagic), std::end(kTableMagic));
  out.push_back(kTableVersion);
  out.push_back(static_cast<uint8_t>(M_));
  put_varint(out, D_);
  put_varint(out, K_);
  for (const uint32_t f : freq_) put_varint(out, f);
  return out;
}

RansTable RansTable::from_bytes(const uint8_t* data, std::size_t n) {
  Reader r(data, n, "rANS table");
  for (const uint8_t m : kTableMagic)
    if (r.u8() != m) r.fail("bad magic (not a serialized RansTable)");
  if (const uint8_t v = r.u8(); v != kTableVersion) r.fail("unsupported version " + str(v));
  const int M = r.u8();
  const uint64_t D = r.varint();
  const uint64_t K = r.varint();
  if (M < 1 || M > kRansMaxProbBits) r.fail("prob_bits " + str(static_cast<uint64_t>(M)) + " out of range");
  if (D < 1 || K < 1 || K > kRansMaxSymbols || D > (kRansMaxSlots >> M) || D * K > kRansMaxSlots)
    r.fail("bad sizes dims=" + str(D) + " n_symbols=" + str(K));
  if (D * K > r.left()) r.fail("truncated");  // each frequency takes at least one byte
  const uint32_t total = 1u << M;
  std::vector<uint32_t> freqs(D * K);
  for (uint64_t d = 0; d < D; ++d) {
    uint64_t sum = 0;
    for (uint64_t s = 0; s < K; ++s) {
      const uint64_t f = r.varint();
      if (f > total) r.fail("frequency " + str(f) + " exceeds 2^prob_bits");
      freqs[d * K + s] = static_cast<uint32_t>(f);
      sum += f;
    }
    if (sum != total) r.fail("frequencies of dim " + str(d) + " sum to " + str(sum) + ", not 2^prob_bits");
  }
  if (r.left() != 0) r.fail(str(r.left()) + " trailing bytes");
  return RansTable(freqs.data(), D, K, M);
}

template <typename T>
std::vector<uint16_t> rans_check_symbols(const T* symbols, std::size_t n_rows, const RansTable& table) {
  const std::size_t D = table.dims();
  const std::size_t K = table.n_symbols();
  std::vector<uint16_t> out(n_rows * D);
  std::size_t i = 0;
  for (std::size_t row = 0; row < n_rows; ++row) {
    for (std::size_t d = 0; d < D; ++d, ++i) {
      const T v = symbols[i];
      bool in_range = static_cast<uint64_t>(v) < K;
      if constexpr (std::is_signed_v<T>) in_range = in_range && v >= 0;
      if (!in_range || table.info(d)[static_cast<std::size_t>(v)].freq == 0) {
        const std::string vs = std::is_signed_v<T> ? std::to_string(static_cast<int64_t>(v))
                                                   : std::to_string(static_cast<uint64_t>(v));
        throw std::invalid_argument("symbol " + vs + " at row " + str(row) + ", dim " + str(d) +
                                    (in_range ? " has frequency 0" : " is outside [0, " + str(K) + ")"));
      }
      out[i] = static_cast<uint16_t>(v);
    }
  }
  return out;
}

#define E2E_RANS_CHECK(T) \
  template std::vector<uint16_t> rans_check_symbols<T>(const T*, std::size_t, const RansTable&);
E2E_RANS_CHECK(int8_t)
E2E_RANS_CHECK(uint8_t)
E2E_RANS_CHECK(int16_t)
E2E_RANS_CHECK(uint16_t)
E2E_RANS_CHECK(int32_t)
E2E_RANS_CHECK(uint32_t)
E2E_RANS_CHECK(int64_t)
E2E_RANS_CHECK(uint64_t)
#undef E2E_RANS_CHECK

// ---------------------------------------------------------------------------------------------------------
// Encoder

namespace {

template <int S>
std::vector<uint8_t> encode_states(const uint16_t* symbols, std::size_t n, const RansTable& table) {
  const std::size_t D = table.dims();
  const int M = table.prob_bits();
  std::vector<uint16_t> words(n);  // at most one word per symbol, filled from the back
  uint16_t* w = words.data() + n;
  uint32_t x[S];
  for (auto& s : x) s = kL;
  std::size_t d = n ? (n - 1) % D : 0;
  for (std::size_t i = n; i-- > 0;) {
    const RansTable::Sym e = table.info(d)[symbols[i]];
    uint32_t& xs = x[i % S];
    if (xs >= (static_cast<uint64_t>(e.freq) << (32 - M))) {
      *--w = static_cast<uint16_t>(xs);
      xs >>= 16;
    }
    xs = ((xs / e.freq) << M) + xs % e.freq + e.cum;
    d = d ? d - 1 : D - 1;
  }
  const auto n_words = static_cast<std::size_t>(words.data() + n - w);

  std::vector<uint8_t> out;
  out.reserve(3 + 20 + 4 * S + 2 * n_words);
  out.push_back(kStreamVersion);
  out.push_back(static_cast<uint8_t>(S));
  out.push_back(static_cast<uint8_t>(M));
  put_varint(out, n / D);
  put_varint(out, D);
  for (const uint32_t s : x)
    for (int k = 0; k < 4; ++k) out.push_back(static_cast<uint8_t>(s >> (8 * k)));
  for (const uint16_t* p = w; p != words.data() + n; ++p) {
    out.push_back(static_cast<uint8_t>(*p));
    out.push_back(static_cast<uint8_t>(*p >> 8));
  }
  return out;
}

}  // namespace

int rans_auto_states(std::size_t n_symbols) {
  int s = 1;
  while (s < 64 && std::size_t{2048} * static_cast<std::size_t>(2 * s) <= n_symbols) s *= 2;
  return s;
}

std::vector<uint8_t> rans_encode(const uint16_t* symbols, std::size_t n_rows, const RansTable& table,
                                 int n_states) {
  const std::size_t n = n_rows * table.dims();
  switch (n_states ? n_states : rans_auto_states(n)) {
    case 1: return encode_states<1>(symbols, n, table);
    case 2: return encode_states<2>(symbols, n, table);
    case 4: return encode_states<4>(symbols, n, table);
    case 8: return encode_states<8>(symbols, n, table);
    case 16: return encode_states<16>(symbols, n, table);
    case 32: return encode_states<32>(symbols, n, table);
    case 64: return encode_states<64>(symbols, n, table);
    default:
      throw std::invalid_argument("n_states must be 0 (auto), 1, 2, 4, 8, 16, 32 or 64, got " +
                                  std::to_string(n_states));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Decoder

RansHeader rans_read_header(const uint8_t* data, std::size_t n) {
  Reader r(data, n, "rANS stream");
  RansHeader h{};
  h.version = r.u8();
  if (h.version != kStreamVersion) r.fail("unsupported version " + std::to_string(h.version));
  h.n_states = r.u8();
  if (h.n_states < 1 || h.n_states > 64 || (h.n_states & (h.n_states - 1)))
    r.fail("bad number of states " + std::to_string(h.n_states));
  h.prob_bits = r.u8();
  if (h.prob_bits < 1 || h.prob_bits > kRansMaxProbBits)
    r.fail("prob_bits " + std::to_string(h.prob_bits) + " out of range");
  h.n_rows = r.varint();
  h.dims = r.varint();
  h.size = static_cast<std::size_t>(r.pos() - data) + 4 * static_cast<std::size_t>(h.n_states);
  if (n < h.size) r.fail("truncated");
  return h;
}

RansHeader rans_check_stream(const uint8_t* data, std::size_t n, const RansTable& table, std::size_t n_rows) {
  if (n_rows > SIZE_MAX / 4 / table.dims()) throw std::invalid_argument("n_rows * dims is too large");
  const RansHeader h = rans_read_header(data, n);
  auto fail = [](const std::string& msg) { throw DecodeError("rANS stream: " + msg); };
  if (h.prob_bits != table.prob_bits())
    fail("coded with prob_bits " + std::to_string(h.prob_bits) + ", the table has " +
         std::to_string(table.prob_bits()));
  if (h.dims != table.dims()) fail("has " + str(h.dims) + " dims, the table has " + str(table.dims()));
  if (h.n_rows != n_rows) fail("has " + str(h.n_rows) + " rows, expected " + str(n_rows));
  const std::size_t payload = n - h.size;
  if (payload % 2) fail("odd payload length");
  if (payload / 2 > n_rows * table.dims()) fail("more words than symbols");
  return h;
}

namespace {

std::atomic<bool> g_simd{true};

// Decoder position shared by the SIMD and scalar loops: next symbol i (of n), its dim d, next word p.
struct Cursor {
  const uint8_t* p;
  const uint8_t* end;
  std::size_t i;
  std::size_t d;
};

#ifdef E2E_RANS_AVX2
// For a mask of lanes that need a word, lane j takes word number popcount(mask & ((1 << j) - 1)).
struct WordPerm {
  alignas(32) uint32_t idx[256][8];
  WordPerm() {
    for (uint32_t m = 0; m < 256; ++m) {
      uint32_t k = 0;
      for (uint32_t j = 0; j < 8; ++j) idx[m][j] = (m >> j & 1u) ? k++ : 0u;
    }
  }
};
const WordPerm kWordPerm;

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}

// A gather into a zeroed register. The plain intrinsic lets GCC gather into any register, e.g. one holding
// the previous vector's result: a false dependency that serializes the vectors (~2x slower).
template <int Scale>
__attribute__((target("avx2"))) inline __m256i gather(const int* base, __m256i idx) {
  __m256i all = _mm256_set1_epi32(-1);
  asm("" : "+x"(all));  // hide the constant mask so GCC keeps the zero pass-through operand
  return _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), base, idx, all, Scale);
}

// Steps V vectors of 8 states (S = 8V) per group while a whole group of symbols and S words remain, so loads
// need no checks: vector v loads 8 words at most 8v words past the group's first word. Lane dims only move
// when S % D != 0 (Advance).
template <int V, typename T, bool Advance>
__attribute__((target("avx2,popcnt"))) void decode_avx2(Cursor& c, uint32_t* x, const RansTable& t,
                                                       std::size_t n, int32_t* out) {
  constexpr std::size_t S = 8 * V;
  const std::size_t D = t.dims();
  const int M = t.prob_bits();
  const auto* slot_sym = reinterpret_cast<const int*>(t.slot_symbols<T>());
  const auto* packed = reinterpret_cast<const int*>(t.packed());
  const std::size_t K = t.n_symbols();
  const __m128i shift = _mm_cvtsi32_si128(M);
  const __m256i slot_mask = _mm256_set1_epi32((1 << M) - 1);
  const __m256i low16 = _mm256_set1_epi32(0xFFFF);
  const __m256i sym_mask = _mm256_set1_epi32(sizeof(T) == 1 ? 0xFF : 0xFFFF);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  // Per lane: its dim d as ds = d << M (slot table row) and dk = d * K (packed row); each group moves every
  // lane S % D dims on, wrapping at D.
  const std::size_t step = S % D;
  const __m256i ds_step = _mm256_set1_epi32(static_cast<int>(step << M));
  const __m256i ds_last = _mm256_set1_epi32(static_cast<int>((D - 1) << M));
  const __m256i ds_wrap = _mm256_set1_epi32(static_cast<int>(D << M));
  const __m256i dk_step = _mm256_set1_epi32(static_cast<int>(step * K));
  const __m256i dk_wrap = _mm256_set1_epi32(static_cast<int>(D * K));
  __m256i xv[V];
  __m256i ds[V];
  __m256i dk[V];
  for (int v = 0; v < V; ++v) {
    xv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8 * v));
    alignas(32) int lane_ds[8];
    alignas(32) int lane_dk[8];
    for (int j = 0; j < 8; ++j) {
      const std::size_t d = (c.d + static_cast<std::size_t>(8 * v + j)) % D;
      lane_ds[j] = static_cast<int>(d << M);
      lane_dk[j] = static_cast<int>(d * K);
    }
    ds[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_ds));
    dk[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_dk));
  }
  const uint8_t* p = c.p;
  std::size_t i = c.i;
  while (n - i >= S && static_cast<std::size_t>(c.end - p) >= 2 * S) {
    for (int v = 0; v < V; ++v) {
      const __m256i slot = _mm256_and_si256(xv[v], slot_mask);
      const __m256i idx = _mm256_add_epi32(ds[v], slot);
      const __m256i s = _mm256_and_si256(gather<sizeof(T)>(slot_sym, idx), sym_mask);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 8 * static_cast<std::size_t>(v)), s);
      const __m256i e = gather<4>(packed, _mm256_add_epi32(dk[v], s));
      const __m256i freq = _mm256_add_epi32(_mm256_srli_epi32(e, 16), one);
      const __m256i bias = _mm256_sub_epi32(slot, _mm256_and_si256(e, low16));
      const __m256i xs = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srl_epi32(xv[v], shift)), bias);
      const __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(xs, 16), zero);
      const auto mask = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(need)));
      const __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kWordPerm.idx[mask]));
      const __m256i word = _mm256_permutevar8x32_epi32(words, perm);
      xv[v] = _mm256_blendv_epi8(xs, _mm256_or_si256(_mm256_slli_epi32(xs, 16), word), need);
      p += 2 * static_cast<unsigned>(_mm_popcnt_u32(mask));
      if constexpr (Advance) {
        const __m256i next = _mm256_add_epi32(ds[v], ds_step);
        const __m256i wrap = _mm256_cmpgt_epi32(next, ds_last);
        ds[v] = _mm256_sub_epi32(next, _mm256_and_si256(wrap, ds_wrap));
        dk[v] = _mm256_sub_epi32(_mm256_add_epi32(dk[v], dk_step), _mm256_and_si256(wrap, dk_wrap));
      }
    }
    i += S;
  }
  for (int v = 0; v < V; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8 * v), xv[v]);
  c.d = (c.d + (i - c.i)) % D;
  c.i = i;
  c.p = p;
}
#endif

template <int S, typename T>
void decode_states(Cursor& c, uint32_t* x, const RansTable& t, std::size_t n, int32_t* out) {
#ifdef E2E_RANS_AVX2
  if constexpr (S >= 8) {
    if (rans_simd_enabled()) {
      if (S % t.dims())
        decode_avx2<S / 8, T, true>(c, x, t, n, out);
      else
        decode_avx2<S / 8, T, false>(c, x, t, n, out);
    }
  }
#endif
  const std::size_t D = t.dims();
  const int M = t.prob_bits();
  const uint32_t mask = (1u << M) - 1;
  const std::size_t K = t.n_symbols();
  const T* slot_sym = t.slot_symbols<T>();
  const uint32_t* packed = t.packed();
  uint32_t xs[S];
  std::copy(x, x + S, xs);
  const uint8_t* p = c.p;
  std::size_t i = c.i;
  std::size_t d = c.d;
  // One decode step; `refill` is only called when the state dropped below L.
  auto step = [&](uint32_t& st, auto&& refill) {
    const uint32_t slot = st & mask;
    const uint32_t s = slot_sym[(d << M) + slot];
    const uint32_t e = packed[d * K + s];
    out[i++] = static_cast<int32_t>(s);
    st = ((e >> 16) + 1) * (st >> M) + slot - (e & 0xFFFFu);
    d = d + 1 == D ? 0 : d + 1;
    refill(st);
  };
  // Whole groups of S symbols while S words remain: the word is loaded unconditionally and kept only when
  // needed (no unpredictable branch).
  auto blind = [&p](uint32_t& st) {
    const uint32_t word = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8;
    const uint32_t low = st < kL;
    st = low ? (st << 16) | word : st;
    p += 2 * low;
  };
  constexpr auto kS = static_cast<std::size_t>(S);
  if (i % kS == 0)
    while (n - i >= kS && static_cast<std::size_t>(c.end - p) >= 2 * kS)
      for (std::size_t j = 0; j < kS; ++j) step(xs[j], blind);
  // The rest, with checked reads.
  auto checked = [&p, end = c.end](uint32_t& st) {
    if (st >= kL) return;
    if (end - p < 2) throw DecodeError("rANS stream: truncated (ran out of words)");
    st = (st << 16) | static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8;
    p += 2;
  };
  while (i < n) step(xs[i % kS], checked);

  if (p != c.end)
    throw DecodeError("rANS stream: " + str(static_cast<uint64_t>(c.end - p) / 2) +
                      " words left after the last symbol");
  for (const uint32_t st : xs)
    if (st != kL) throw DecodeError("rANS stream: corrupt (final coder state mismatch)");
}

template <typename T>
void decode_dispatch(int n_states, Cursor& c, uint32_t* x, const RansTable& t, std::size_t n, int32_t* out) {
  switch (n_states) {
    case 1: return decode_states<1, T>(c, x, t, n, out);
    case 2: return decode_states<2, T>(c, x, t, n, out);
    case 4: return decode_states<4, T>(c, x, t, n, out);
    case 8: return decode_states<8, T>(c, x, t, n, out);
    case 16: return decode_states<16, T>(c, x, t, n, out);
    case 32: return decode_states<32, T>(c, x, t, n, out);
    default: return decode_states<64, T>(c, x, t, n, out);
  }
}

}  // namespace

bool rans_simd_available() {
#ifdef E2E_RANS_AVX2
  static const bool has = cpu_has_avx2();
  return has;
#else
  return false;
#endif
}

bool rans_simd_enabled() { return g_simd.load(std::memory_order_relaxed) && rans_simd_available(); }

void rans_set_simd(bool enabled) { g_simd.store(enabled, std::memory_order_relaxed); }

void rans_decode(const uint8_t* data, std::size_t n, const RansTable& table, std::size_t n_rows,
                 int32_t* out) {
  const RansHeader h = rans_check_stream(data, n, table, n_rows);
  const auto S = static_cast<std::size_t>(h.n_states);
  uint32_t x[64];
  Reader r(data + h.size - 4 * S, 4 * S, "rANS stream");
  for (std::size_t j = 0; j < S; ++j) {
    x[j] = r.u32();
    if (x[j] < kL) r.fail("coder state out of range");
  }
  Cursor c{data + h.size, data + n, 0, 0};
  const std::size_t n_sym = n_rows * table.dims();
  if (table.narrow())
    decode_dispatch<uint8_t>(h.n_states, c, x, table, n_sym, out);
  else
    decode_dispatch<uint16_t>(h.n_states, c, x, table, n_sym, out);
}

}  // namespace e2e
