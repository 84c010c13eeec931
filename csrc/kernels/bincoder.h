// SPDX-License-Identifier: BSD-3-Clause
// The adaptive binary range coder shared by the context-modelled coders (ctxcode: occupancy, ctxval:
// values). Integer arithmetic only, so encoder and decoder agree bit for bit on every machine.
//
// Probabilities: a state s = p << kCountBits | count, p = P(bit = 1) in units of 2^-kPBits. After each
// decision p += (bit - p) / (count + 2) (a reciprocal table), the count saturating at kLimit, after which
// the rate is fixed. Coded with 16-bit probabilities clamped to [kPMin, 2^16 - kPMin].
//
// Range coder: 32-bit range, byte-wise renormalization with carry propagation; P(1) takes the low part
// [0, bound) of the range. raw() codes 1..16 equiprobable bits. The encoder flushes the low end of its
// final interval exactly, so after a valid stream the decoder has read every byte and its code value is 0
// (Decoder::finish checks both).
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/rans.h"  // e2e::DecodeError

namespace e2e::bincode {

constexpr int kCountBits = 10;
constexpr int kPBits = 32 - kCountBits;
constexpr uint32_t kOne = 1u << kPBits;
constexpr uint32_t kCountMask = (1u << kCountBits) - 1;
constexpr uint32_t kLimit = 1023;  // count saturation: the rate settles at 1 / (kLimit + 2)
constexpr uint32_t kPMin = 16;
constexpr uint32_t kInit = (kOne / 2) << kCountBits;  // p = 1/2, count 0

struct Rates {
  std::array<uint32_t, kLimit + 1> r{};
  Rates() {
    for (uint32_t n = 0; n <= kLimit; ++n) r[n] = (65536u + (n + 2) / 2) / (n + 2);
  }
};
inline const Rates kRates;

inline uint32_t prob16(uint32_t s) {
  const uint32_t p = s >> 16;
  return std::min(std::max(p, kPMin), 65536u - kPMin);
}

inline void update(uint32_t& s, int bit) {
  const uint32_t n = s & kCountMask;
  uint64_t p = s >> kCountBits;
  const uint64_t r = kRates.r[n];
  if (bit) p += ((kOne - p) * r) >> 16;
  else p -= (p * r) >> 16;
  s = static_cast<uint32_t>(p << kCountBits) | (n + (n < kLimit ? 1u : 0u));
}

class Encoder {
 public:
  explicit Encoder(std::vector<uint8_t>& out) : out_(out) {}

  int code(uint32_t& s, int bit) {
    const uint32_t bound = (range_ >> 16) * prob16(s);
    if (bit) {
      range_ = bound;
    } else {
      low_ += bound;
      range_ -= bound;
    }
    normalize();
    update(s, bit);
    return bit;
  }

  // nb (1..16) equiprobable bits v.
  uint32_t raw(uint32_t v, int nb) {
    const uint32_t r = range_ >> nb;
    low_ += uint64_t{v} * r;
    range_ = r;
    normalize();
    return v;
  }

  void finish() {
    for (int i = 0; i < 5; ++i) shift_low();
  }

 private:
  void normalize() {
    while (range_ < (1u << 24)) {
      range_ <<= 8;
      shift_low();
    }
  }

  // Moves the top byte of low out; a byte 0xFF may still receive a carry, so runs of them wait in pending_.
  void shift_low() {
    if (low_ < 0xFF000000u || low_ >= (uint64_t{1} << 32)) {
      const auto carry = static_cast<uint8_t>(low_ >> 32);
      if (started_) out_.push_back(static_cast<uint8_t>(cache_ + carry));  // the very first byte is always 0
      started_ = true;
      for (; pending_; --pending_) out_.push_back(static_cast<uint8_t>(0xFF + carry));
      cache_ = static_cast<uint8_t>(low_ >> 24);
    } else {
      ++pending_;
    }
    low_ = (low_ & 0x00FFFFFFu) << 8;
  }

  std::vector<uint8_t>& out_;
  uint64_t low_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
  uint8_t cache_ = 0;
  bool started_ = false;
  std::size_t pending_ = 0;
};

class Decoder {
 public:
  // what: the stream's name in error messages ("occupancy stream").
  Decoder(const uint8_t* p, std::size_t n, const char* what) : p_(p), end_(p + n), what_(what) {
    for (int i = 0; i < 4; ++i) code_ = (code_ << 8) | next();
  }

  int code(uint32_t& s, int /*unused*/) {
    const uint32_t bound = (range_ >> 16) * prob16(s);
    int bit;
    if (code_ < bound) {
      range_ = bound;
      bit = 1;
    } else {
      code_ -= bound;
      range_ -= bound;
      bit = 0;
    }
    normalize();
    update(s, bit);
    return bit;
  }

  uint32_t raw(uint32_t /*unused*/, int nb) {
    const uint32_t r = range_ >> nb;
    const uint32_t v = code_ / r;
    if (v >> nb) throw DecodeError(std::string(what_) + ": corrupt (raw bits out of range)");
    code_ -= v * r;
    range_ = r;
    normalize();
    return v;
  }

  void finish() const {
    if (p_ != end_)
      throw DecodeError(std::string(what_) + ": " + std::to_string(end_ - p_) + " bytes left over");
    if (code_ != 0) throw DecodeError(std::string(what_) + ": corrupt (final check failed)");
  }

 private:
  void normalize() {
    while (range_ < (1u << 24)) {
      range_ <<= 8;
      code_ = (code_ << 8) | next();
    }
  }

  uint32_t next() {
    if (p_ == end_) throw DecodeError(std::string(what_) + ": truncated");
    return *p_++;
  }

  const uint8_t* p_;
  const uint8_t* end_;
  const char* what_;
  uint32_t range_ = 0xFFFFFFFFu;
  uint32_t code_ = 0;
};

// Minimal unsigned LEB128, as the stream headers store sizes.
inline void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

// Reads a minimal LEB128 at data[pos] (advancing pos); what: the stream's name in error messages.
inline uint64_t read_varint(const uint8_t* data, std::size_t size, std::size_t& pos, const char* what) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= size) throw DecodeError(std::string(what) + ": truncated header");
    const uint8_t b = data[pos++];
    const uint64_t bits = b & 0x7Fu;
    if (shift == 63 && bits > 1) throw DecodeError(std::string(what) + ": varint overflows 64 bits");
    v |= bits << shift;
    if (!(b & 0x80u)) {
      if (b == 0 && shift > 0) throw DecodeError(std::string(what) + ": non-minimal varint");
      return v;
    }
  }
  throw DecodeError(std::string(what) + ": varint longer than 10 bytes");
}

// The 32-bit check value closing a stream: the coders hash what they coded into h (multiplying by kMix),
// put_check stores the finalized value little-endian, verify_check compares it on decode.
constexpr uint64_t kMix = 0x9E3779B97F4A7C15ull;

inline uint32_t check_value(uint64_t h) {
  h ^= h >> 31;
  h *= kMix;
  return static_cast<uint32_t>(h >> 32);
}

inline void put_check(std::vector<uint8_t>& out, uint64_t h) {
  const uint32_t c = check_value(h);
  for (int k = 0; k < 4; ++k) out.push_back(static_cast<uint8_t>(c >> (8 * k)));
}

// p: the 4 stored bytes (the caller has checked they are there).
inline void verify_check(const uint8_t* p, uint64_t h, const char* what) {
  uint32_t stored = 0;
  for (std::size_t k = 0; k < 4; ++k) stored |= static_cast<uint32_t>(p[k]) << (8 * k);
  if (stored != check_value(h)) throw DecodeError(std::string(what) + ": corrupt (check value differs)");
}

}  // namespace e2e::bincode
