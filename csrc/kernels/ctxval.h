// SPDX-License-Identifier: BSD-3-Clause
// Context-modelled, adaptive binary coding of the VALUES of a sparse image's occupied cells.
//
// Input: n integer values at occupied cells (plane, index = y * w + x), sorted by (plane, index), in
// planes of h x w cells. The cell list is known to the decoder beforehand (occupancy is coded first), so
// the model may use the occupancy of every neighbour, including those right of and below the cell; of
// the values it uses only the causal neighbours in the same plane (left, up, up-left, up-right).
//
// Two kinds of values:
//   - quantized: signed integers Q (bounded-error mode: Q = round(x / step)), usually small and positive.
//     Binarized as: zero flag; sign; bit length k of |Q| as a unary prefix (k > 1? k > 2? ...), one
//     adaptive probability per prefix position; the top 3 bits below the leading one through a binary tree
//     of adaptive probabilities; the remaining low bits raw (probability 1/2).
//   - float32bits: int32 bit patterns of float32 values (lossless mode). Sign bit; the exponent field as a
//     signed difference d from a reference exponent (that of the largest causal neighbour, else 127), with
//     the same zero / sign / unary binarization; the top 3 mantissa bits through a context tree; the other
//     20 mantissa bits raw.
// Contexts (integer features of the cell, all known to the decoder at that point):
//   - m: the largest feature of the four causal neighbours (0 = none occupied); the feature of a cell is
//     1 + the bit length of |Q| (quantized, capped) or 1 + the exponent field (float32bits). A neighbour
//     of a large value tends to be a fraction of it (lateral shower spread), so m predicts the bit length;
//   - occ: the number of occupied cells among the 8 neighbours (0, 1, 2, 3, 4+), known non-causally. An
//     isolated cell is mostly noise just above the zero-suppression threshold;
//   - radial: a bucket of the cell's distance from the plane centre (edges 2, 4, 8, 16 cells). This
//     assumes the jet axis sits at the image centre; for other images it just carries less information.
// Probabilities are 22-bit integers with a count (rate 1 / (count + 2), saturating at count 1023), as in
// kernels/ctxcode.h; all arithmetic is integer, so encoder and decoder agree bit for bit everywhere. Every
// call starts from p = 1/2: the model adapts within one stream (typically a chunk of 512 jets).
//
// Measured on 2000 generated jets (chunks of 512; benchmarks/bench_ctxval.py) against the best of the
// direct / runs predictors with static rANS tables: -12.4 % bounded (max error 0.01), -12.5 % lossless.
// Tried and not kept (each within +-0.2 % in total): half-octave instead of bit-length features, mantissa
// contexts by the neighbour feature, separate counts of occupied neighbours before / after the cell.
// Without the radial bucket ECAL gains 0.7 % but Tracks lose 3 %.
//
// Entropy coder: the binary range coder of kernels/ctxcode.h (32-bit range, carry propagation, exact
// flush), with raw bits coded by splitting the range evenly. A 32-bit hash of (plane, index, value) of
// every cell follows the coded bytes; the decoder checks that every byte was used, the final code value
// and the hash, so a stream decoded against another cell list, or corrupted, raises DecodeError.
//
// Stream: u8 version (=1) | u8 kind (0 quantized, 1 float32bits) | varint n (minimal unsigned LEB128)
//         | range coder bytes (>= 4) | u32 check (little-endian).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace e2e {

enum class ValueKind : uint8_t { kQuantized = 0, kFloat32Bits = 1 };

// Throws std::invalid_argument unless every plane id is >= 0, every index is in [0, h * w), and the cells
// are strictly increasing by (plane, index); also if h x w planes are too large for the scratch buffers.
void ctxval_check_cells(const int64_t* plane, const int64_t* index, std::size_t n, std::size_t h,
                        std::size_t w);

// Throws std::invalid_argument for a float32bits value outside the int32 range.
void ctxval_check_values(const int64_t* values, std::size_t n, ValueKind kind);

// Codes values [n] at the cells (checked first: the functions above). Returns the stream.
std::vector<uint8_t> ctxval_encode(const int64_t* values, const int64_t* plane, const int64_t* index,
                                   std::size_t n, std::size_t h, std::size_t w, ValueKind kind);

struct CtxValHeader {
  ValueKind kind;
  uint64_t n;
  std::size_t size;  // header bytes
};

// Parses and checks the header alone; throws DecodeError (kernels/rans.h).
CtxValHeader ctxval_read_header(const uint8_t* data, std::size_t size);

// Decodes the values of n cells into out [n]; the cells must pass ctxval_check_cells (std::invalid_argument
// otherwise). Throws DecodeError if the stream is corrupt, truncated, of another kind, or was coded for
// other cells.
void ctxval_decode(const uint8_t* data, std::size_t size, const int64_t* plane, const int64_t* index,
                   std::size_t n, std::size_t h, std::size_t w, ValueKind kind, int64_t* out);

}  // namespace e2e
