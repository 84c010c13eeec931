// SPDX-License-Identifier: BSD-3-Clause
#pragma once
#include <cstddef>
#include <cstdint>

namespace e2e {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and our chunk checksums.
// `crc` is the running value returned by a previous call (0 to start).
uint32_t crc32c(const uint8_t* data, std::size_t n, uint32_t crc = 0) noexcept;

}  // namespace e2e
