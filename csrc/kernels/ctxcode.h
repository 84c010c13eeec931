// SPDX-License-Identifier: BSD-3-Clause
// Context-modelled, adaptive binary coding of occupancy planes (which cells of a mostly-empty image are set).
//
// Input: n planes of h x w cells, each 0 (empty) or not (occupied), and optionally a context plane of the
// same shape (uint8; the caller's summary of other, already decoded channels, e.g. 0 = nothing there,
// 1 = something next to this cell, 2 = something at it; values above 3 count as 3).
//
// Order of the coded decisions, per plane:
//   1. whether the plane has any occupied cell;
//   2. for a non-empty plane, one flag per k x k block (k = block size, blocks at multiples of k from the
//      top-left corner, clipped at the right and bottom edges) in raster order: whether the block has any
//      occupied cell (the last flag is implied when no earlier one was set);
//   3. the cells of the occupied blocks only, in raster order of the whole plane (so every cell above and to
//      the left is known, and cells of empty blocks are known to be 0). In a block that has no occupied
//      cell yet, the last cell is implied.
// Each decision is coded with an adaptive probability picked by a context of integer features:
//   - cells: left, up, up-left and up-right neighbours (outside the plane: 0); a radial bucket of the cell's
//     distance from the plane centre (the jet axis is assumed to sit at the image centre); the context plane
//     value (0..3); the block state (an occupied cell already seen in this block, else log2 of the cells
//     left in it, as the block must still hold one);
//   - block flags: the same four neighbours on the block grid, the radial bucket of the block centre, and
//     the largest context value in the block;
//   - plane flags: whether the previous plane was empty.
// The radial buckets have fixed edges in cells (1, 2, 3, 4, 6, 8, 12, ... 192), so any plane size works.
// With a context plane, a context seen for the first time starts from the probability of the same context
// without the context-plane value (learnt from all levels), as if seen 8 times: the extra split then
// costs little learning.
// Probabilities are 22-bit integers with a count: after each decision p += (bit - p) / (count + 2)
// (a reciprocal table; the count saturates at 1023, after which the rate is fixed), so the model is exact
// integer arithmetic and encoder and decoder agree bit for bit on every machine. Everything starts from
// p = 1/2 at each call: a call codes a stream of planes that shares one adaptive model. Measured on
// generated jets, block sizes 5 to 8 code equally well (4 costs ~0.5% more); 5 is the default.
//
// Entropy coder: a binary range coder (32-bit range, byte-wise renormalization with carry propagation,
// 16-bit probabilities). The encoder flushes the low end of its final interval exactly, so after a valid
// stream the decoder has read every byte and its code value is exactly 0. Short streams decoded from
// corrupt bytes can still pass that test, so a 32-bit hash of the occupied cells' flat indices (in order)
// follows; the decoder checks all three.
//
// Stream: u8 version (=1) | u8 flags (bit 0: a context plane was used) | u8 block size k (1..64)
//         | varint n | varint h | varint w (minimal unsigned LEB128) | range coder bytes (>= 4)
//         | u32 check (little-endian).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace e2e {

constexpr int kCtxDefaultBlock = 5;
constexpr int kCtxMaxBlock = 64;

// occ [n, h, w] (non-zero = occupied); context [n, h, w] or nullptr. Returns the stream.
// Throws std::invalid_argument for a bad block size or sizes whose product overflows.
std::vector<uint8_t> ctx_encode(const uint8_t* occ, const uint8_t* context, std::size_t n, std::size_t h,
                                std::size_t w, int block = kCtxDefaultBlock);

struct CtxHeader {
  bool has_context;
  int block;
  uint64_t n, h, w;
  std::size_t size;  // header bytes
};

// Parses and checks the header alone; throws DecodeError (kernels/rans.h).
CtxHeader ctx_read_header(const uint8_t* data, std::size_t size);

// Decodes a stream of n planes of h x w cells into out [n, h, w] (0/1); throws DecodeError (kernels/rans.h)
// if the stream is corrupt, truncated, or was made for other sizes or with(out) a context plane. `context`
// must be the same context the encoder saw (or nullptr when it saw none).
void ctx_decode(const uint8_t* data, std::size_t size, const uint8_t* context, std::size_t n, std::size_t h,
                std::size_t w, uint8_t* out);

}  // namespace e2e
