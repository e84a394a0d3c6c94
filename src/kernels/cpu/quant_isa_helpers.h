// Helpers shared by the per-ISA kernel files (*_avx2.cpp, *_avx512.cpp).
//
// Only functions with internal linkage (and the always-inline intrinsics) are called from those
// files: a shared inline function with external linkage (check_block_multiple, f32_to_f16,
// std::fabs, ...) compiled there could be the out-of-line copy the linker keeps for every caller
// (at -O0, say), and would carry AVX instructions into code that runs on any CPU. Everything here
// is therefore in an anonymous namespace: each ISA file that includes it gets its own private copy.
// Include this header only from the ISA files.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant_blocks.h"

namespace brisk::kernels {
namespace {

inline void check_blocks(DType t, int64_t n, int64_t block, const char* what) {
  if (n < 0 || n % block != 0) [[unlikely]]
    fail_block_multiple(t, n, what);
}

// Q4_K / Q5_K 6-bit scales and mins (see get_scale_min_k4), four bytes at a time: bytes 0-3 keep
// sc[0..3], bytes 4-7 mn[0..3] in their low 6 bits; bytes 8-11 keep the low nibbles of sc[4..7]
// (low) and mn[4..7] (high), whose top 2 bits are the top bits of bytes 0-3 and 4-7.
inline void scale_min_k4(const uint8_t* q, uint8_t sc[8], uint8_t mn[8]) {
  uint32_t u0, u1, u2;
  std::memcpy(&u0, q, 4);
  std::memcpy(&u1, q + 4, 4);
  std::memcpy(&u2, q + 8, 4);
  const uint32_t s_lo = u0 & 0x3F3F3F3Fu, m_lo = u1 & 0x3F3F3F3Fu;
  const uint32_t s_hi = (u2 & 0x0F0F0F0Fu) | (((u0 >> 6) & 0x03030303u) << 4);
  const uint32_t m_hi = ((u2 >> 4) & 0x0F0F0F0Fu) | (((u1 >> 6) & 0x03030303u) << 4);
  std::memcpy(sc, &s_lo, 4);
  std::memcpy(sc + 4, &s_hi, 4);
  std::memcpy(mn, &m_lo, 4);
  std::memcpy(mn + 4, &m_hi, 4);
}

}  // namespace
}  // namespace brisk::kernels
