// SPDX-License-Identifier: BSD-3-Clause
// Static-table rANS (range asymmetric numeral systems, Duda 2013) for quantized latents.
//
// Symbols are coded in row-major order from an [N, D] array; symbol i uses table (i % D) and coder state
// (i % S), with S in {1, 2, 4, 8, 16, 32, 64} interleaved states: independent dependency chains for the CPU,
// and for S >= 8 an AVX2 decoder that steps 8 states per instruction (chosen at run time; same bitstream).
// Many states hide the latency of the table lookups: on a Xeon with D = 32, M = 14 the AVX2 decoder runs
// ~0.2 / 0.65 / 0.8 Gsymbol/s with S = 8 / 32 / 64 (scalar: ~0.17).
//
// Coder: 32-bit state x kept in [L, 2^32) with L = 2^16, renormalized in 16-bit words, so one symbol emits or
// consumes at most one word and renormalization is a single branch-free step (scalar or SIMD). With
// frequencies summing to 2^M (M = prob_bits, 1..16) the coding loss against sum(-log2(f / 2^M)) is ~0.01%
// at M <= 14 and ~0.2% at M = 16 (byte-wise renormalization is tighter at M = 16 but needs a read loop).
//   encode s:  if x >= f_s * 2^(32-M): emit x & 0xFFFF, x >>= 16;   x = (x / f_s) * 2^M + x % f_s + c_s
//   decode:    slot = x % 2^M; s = sym[slot]; x = f_s * (x >> M) + slot - c_s; if x < L: x = x << 16 | word
// Encoding runs backwards over the symbols so that decoding runs forwards; within each group of S symbols the
// states that renormalize read consecutive words in state order. Every state starts at L; the decoder checks
// that every state is back to L and every word was read, which rejects most corruption.
//
// Stream (integers little-endian; varint = minimal unsigned LEB128):
//   u8 version (=1) | u8 S | u8 M | varint n_rows | varint D | S x u32 final encoder states | u16 words...
//
// Table serialization (canonical: one byte string per table, so its SHA-256 identifies it):
//   "E2RT" | u8 version (=1) | u8 M | varint D | varint K | D*K varint frequencies (row-major)
// Every row sums to 2^M; frequency 0 marks a symbol that cannot be coded (e.g. padding when dims have
// different alphabets); rans_build_freqs gives every symbol at least 1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace e2e {

// A corrupt or truncated stream (or serialized table); the bindings map it to e2ecompress.errors.DecodeError.
struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kRansMaxProbBits = 16;
constexpr uint32_t kRansMaxSymbols = 65536;     // symbols are uint16 in the decode tables
constexpr std::size_t kRansMaxSlots = 1u << 24;  // caps dims * 2^prob_bits and dims * n_symbols

// Optimal integer frequencies for counts [D, K]: each row sums to 2^prob_bits, every symbol gets >= 1, and
// sum(count * log2(freq)) is maximal (greedy allocation by marginal gain, exact for this separable concave
// objective). An all-zero row gives a (near) uniform table; rows with counts * K >= 2^47 are first scaled
// down by a power of two. Throws std::invalid_argument on bad input.
std::vector<uint32_t> rans_build_freqs(const int64_t* counts, std::size_t D, std::size_t K, int prob_bits);

class RansTable {
 public:
  // freqs [D, K] row-major; throws std::invalid_argument unless every row sums to 2^prob_bits.
  RansTable(const uint32_t* freqs, std::size_t D, std::size_t K, int prob_bits);

  std::size_t dims() const { return D_; }
  std::size_t n_symbols() const { return K_; }
  int prob_bits() const { return M_; }
  const std::vector<uint32_t>& freqs() const { return freq_; }

  std::vector<uint8_t> to_bytes() const;
  // Validates everything (magic, version, sizes, varints, row sums, no trailing bytes); throws DecodeError.
  static RansTable from_bytes(const uint8_t* data, std::size_t n);

  bool operator==(const RansTable& o) const {
    return M_ == o.M_ && D_ == o.D_ && K_ == o.K_ && freq_ == o.freq_;
  }

  // Encoder: info(d)[s] = {freq, cum}.
  struct Sym {
    uint32_t freq;
    uint32_t cum;
  };
  const Sym* info(std::size_t d) const { return sym_.data() + d * K_; }
  // Decoder: slot_symbols<T>()[(d << M) + slot] = symbol, as uint8 when K <= 256 (narrow()), else uint16
  // (padded so that a 32-bit gather of the last one stays in bounds); then packed()[d * K + s] =
  // (freq - 1) << 16 | cum. Two small dependent lookups: 1-2 bytes per slot keep the tables in cache.
  bool narrow() const { return K_ <= 256; }
  template <typename T>
  const T* slot_symbols() const {
    if constexpr (sizeof(T) == 1) return slot8_.data();
    else return slot16_.data();
  }
  const uint32_t* packed() const { return packed_.data(); }

 private:
  std::size_t D_;
  std::size_t K_;
  int M_;
  std::vector<uint32_t> freq_;
  std::vector<Sym> sym_;
  std::vector<uint8_t> slot8_;
  std::vector<uint16_t> slot16_;
  std::vector<uint32_t> packed_;
};

// Checks symbols [n_rows, D] against the table (0 <= s < K and freq > 0) and narrows them to uint16.
// T is any integer type. Throws std::invalid_argument naming the first bad row/dim/value.
template <typename T>
std::vector<uint16_t> rans_check_symbols(const T* symbols, std::size_t n_rows, const RansTable& table);

// The number of states used for n_states = 0: more states for longer streams (each costs a 4-byte state):
// the largest S <= 64 with 2048 * S <= n_symbols (1 below 4 Ki symbols, 64 from 128 Ki on).
int rans_auto_states(std::size_t n_symbols);

// Encodes checked symbols [n_rows, D] with n_states in {0 (auto), 1, 2, ..., 64}; returns the stream.
std::vector<uint8_t> rans_encode(const uint16_t* symbols, std::size_t n_rows, const RansTable& table,
                                 int n_states);

// Stream header fields, parsed and checked against nothing but the stream itself.
struct RansHeader {
  int version;
  int n_states;
  int prob_bits;
  uint64_t n_rows;
  uint64_t dims;
  std::size_t size;  // header bytes, including the final states
};
RansHeader rans_read_header(const uint8_t* data, std::size_t n);  // throws DecodeError

// Reads the header and checks it against the table and n_rows, and the payload size; throws DecodeError.
RansHeader rans_check_stream(const uint8_t* data, std::size_t n, const RansTable& table, std::size_t n_rows);

// Decodes a stream of exactly n_rows rows into out [n_rows, D]; throws DecodeError on any inconsistency
// (out is then partly written).
void rans_decode(const uint8_t* data, std::size_t n, const RansTable& table, std::size_t n_rows,
                 int32_t* out);

// Whether the AVX2 decoder is available on this CPU, and a switch to turn it off (for tests/benchmarks).
bool rans_simd_available();
bool rans_simd_enabled();
void rans_set_simd(bool enabled);

}  // namespace e2e
