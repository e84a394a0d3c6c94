// Packed int8 GEMM / GEMV for AVX-512 VNNI (compiled with -mavx512f/bw/vl/vnni; see gemm.h for
// the idea and the common layout). 16 rows per group: lane r of every 512-bit vector is row r.
// Nothing here runs before the dispatcher (gemm.cpp) has checked the CPU for AVX-512 VNNI;
// packed_gemm_avx512vnni is the only entry point.
//
// Products use vpdpbusd (u8 x s8, four products summed into each int32 lane): weight codes are the
// unsigned operand (4-/6-bit codes as they are, Q8_0 codes offset by +128), activation codes the
// signed one, broadcast four at a time. The weight offsets (-8 for Q4_0, -128 for the shifted Q8_0,
// -32 for Q6_K) are taken out exactly in integers by starting each block's accumulator at
// -offset * sum(activation codes), precomputed per token by prep(). Integer sums per block are
// therefore exactly the scalar reference's; only float rounding of the per-block scaling and the
// order of the float additions differ.
#include "kernels/cpu/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's AVX-512 intrinsics self-initialise their "undefined" results, which -Wuninitialized
// then reports once inlined; the values are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_isa_helpers.h"

namespace brisk::kernels {
namespace {

// Only internal-linkage helpers and always-inline intrinsics are called from this file (see
// quant_isa_helpers.h).
constexpr int kRows = 16;

inline __m512i load(const void* p) {
  return _mm512_loadu_si512(p);
}
// Four int8 activation codes broadcast to every lane (folds into vpdpbusd's {1to16} operand).
inline __m512i bcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m512 f16x16(const void* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
}
inline __m512i dp(__m512i acc, __m512i w, const void* y) {
  return _mm512_dpbusd_epi32(acc, w, bcast4(y));
}
inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float load_f32(const void* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float f16_to_f32(uint16_t h) {
  return _cvtsh_ss(h);
}

// Copies 4-byte word `word` of each of the n_valid source rows (row r at src + r * row_stride)
// into lane r of the 64-byte vector at dst; missing rows get `fill` (the zero weight's code).
inline void transpose_words(const uint8_t* src, size_t row_stride, int64_t n_valid, int word,
                            uint8_t fill, uint8_t* dst) {
  for (int r = 0; r < kRows; ++r) {
    if (r < n_valid)
      std::memcpy(dst + 4 * r, src + static_cast<size_t>(r) * row_stride + 4 * word, 4);
    else
      std::memset(dst + 4 * r, fill, 4);
  }
}

inline void store_rows(float* out, __m512 v, __mmask16 mask) {
  _mm512_mask_storeu_ps(out, mask, v);
}

// Runs Kernel::tile<NT>(args, group, t0, mask) over every group and token tile. Tokens are taken
// in chunks whose activations fit in about 1 MiB (the per-core L2), so the weights of a group are
// reused from L1/L2 across a chunk while the activations stay in L2.
template <class Kernel>
void drive(const GemmArgs& a) {
  const int64_t chunk = std::max<int64_t>(
      kTokenTile, static_cast<int64_t>((1u << 20) / std::max<size_t>(a.act_stride, 1)));
  const size_t gb = Kernel::group_bytes(a.n_in);
  for (int64_t c0 = 0; c0 < a.T; c0 += chunk) {
    const int64_t c1 = std::min(a.T, c0 + chunk);
    for (int64_t g = 0; g < a.n_groups; ++g) {
      const int64_t left = a.n_rows - g * kRows;
      const __mmask16 mask = left >= kRows ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
      const uint8_t* w = a.w + static_cast<size_t>(g) * gb;
      float* out = a.out + g * kRows;
      int64_t t = c0;
      for (; t + kTokenTile <= c1; t += kTokenTile)
        Kernel::template tile<kTokenTile>(a, w, t, out, mask);
      switch (c1 - t) {
        case 7:
          Kernel::template tile<7>(a, w, t, out, mask);
          break;
        case 6:
          Kernel::template tile<6>(a, w, t, out, mask);
          break;
        case 5:
          Kernel::template tile<5>(a, w, t, out, mask);
          break;
        case 4:
          Kernel::template tile<4>(a, w, t, out, mask);
          break;
        case 3:
          Kernel::template tile<3>(a, w, t, out, mask);
          break;
        case 2:
          Kernel::template tile<2>(a, w, t, out, mask);
          break;
        case 1:
          Kernel::template tile<1>(a, w, t, out, mask);
          break;
        default:
          break;
      }
    }
  }
}

// ---- Q4_0 and Q8_0 (activations: Q8_0 blocks) -------------------------------------------------
// Side data per activation block: {float d (the block's f16 scale as f32), int32 corr}.

// Group block (288 bytes): d[16] f16, then 4 vectors; vector m, lane r = qs[4m .. 4m + 3] of row r,
// i.e. low nibbles are elements 4m + i, high nibbles elements 16 + 4m + i.
struct Q4_0 {
  static constexpr size_t kBlock = 32 + 4 * 64;
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in / kQK) * kBlock; }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in / kQK) * sizeof(BlockQ4_0);
    for (int64_t b = 0; b < n_in / kQK; ++b, dst += kBlock) {
      const uint8_t* blk = src + static_cast<size_t>(b) * sizeof(BlockQ4_0);
      for (int r = 0; r < kRows; ++r) {
        const uint16_t d = r < n_valid ? reinterpret_cast<const BlockQ4_0*>(blk + r * rs)->d : 0;
        std::memcpy(dst + 2 * r, &d, 2);
      }
      for (int m = 0; m < 4; ++m)
        transpose_words(blk + offsetof(BlockQ4_0, qs), rs, n_valid, m, 0x88, dst + 32 + 64 * m);
    }
  }
  template <int NT>
  static void tile(const GemmArgs& a, const uint8_t* w, int64_t t0, float* out, __mmask16 mask) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[NT];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    const uint8_t* act = a.act + static_cast<size_t>(t0) * a.act_stride;
    const uint8_t* side = a.side + static_cast<size_t>(t0) * a.side_stride;
    for (int64_t b = 0; b < a.n_in / kQK; ++b, w += kBlock) {
      const __m512 dw = f16x16(w);
      __m512i q[8];
#pragma GCC unroll 16
      for (int m = 0; m < 4; ++m) {
        const __m512i v = load(w + 32 + 64 * m);
        q[m] = _mm512_and_si512(v, m4);
        q[m + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      }
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const uint8_t* y = act + t * a.act_stride + b * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs);
        const uint8_t* s = side + t * a.side_stride + b * 8;
        __m512i sum = _mm512_set1_epi32(load_i32(s + 4));
#pragma GCC unroll 16
        for (int j = 0; j < 8; ++j) sum = dp(sum, q[j], y + 4 * j);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum),
                                 _mm512_mul_ps(dw, _mm512_set1_ps(load_f32(s))), acc[t]);
      }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) store_rows(out + (t0 + t) * a.ldo, acc[t], mask);
  }
};

// Group block (544 bytes): d[16] f16, then 8 vectors; vector j, lane r = qs[4j .. 4j + 3] of row r,
// each code + 128 (xor 0x80) so that it is the unsigned operand.
struct Q8_0 {
  static constexpr size_t kBlock = 32 + 8 * 64;
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in / kQK) * kBlock; }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in / kQK) * sizeof(BlockQ8_0);
    for (int64_t b = 0; b < n_in / kQK; ++b, dst += kBlock) {
      const uint8_t* blk = src + static_cast<size_t>(b) * sizeof(BlockQ8_0);
      for (int r = 0; r < kRows; ++r) {
        const uint16_t d = r < n_valid ? reinterpret_cast<const BlockQ8_0*>(blk + r * rs)->d : 0;
        std::memcpy(dst + 2 * r, &d, 2);
      }
      for (int j = 0; j < 8; ++j) {
        uint8_t* v = dst + 32 + 64 * j;
        transpose_words(blk + offsetof(BlockQ8_0, qs), rs, n_valid, j, 0, v);
        for (int i = 0; i < 64; ++i) v[i] ^= 0x80;
      }
    }
  }
  template <int NT>
  static void tile(const GemmArgs& a, const uint8_t* w, int64_t t0, float* out, __mmask16 mask) {
    __m512 acc[NT];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    const uint8_t* act = a.act + static_cast<size_t>(t0) * a.act_stride;
    const uint8_t* side = a.side + static_cast<size_t>(t0) * a.side_stride;
    for (int64_t b = 0; b < a.n_in / kQK; ++b, w += kBlock) {
      const __m512 dw = f16x16(w);
      __m512i q[8];
#pragma GCC unroll 16
      for (int j = 0; j < 8; ++j) q[j] = load(w + 32 + 64 * j);
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const uint8_t* y = act + t * a.act_stride + b * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs);
        const uint8_t* s = side + t * a.side_stride + b * 8;
        __m512i sum = _mm512_set1_epi32(load_i32(s + 4));
#pragma GCC unroll 16
        for (int j = 0; j < 8; ++j) sum = dp(sum, q[j], y + 4 * j);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum),
                                 _mm512_mul_ps(dw, _mm512_set1_ps(load_f32(s))), acc[t]);
      }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) store_rows(out + (t0 + t) * a.ldo, acc[t], mask);
  }
};

size_t q8_0_side_bytes(int64_t n_in) {
  return static_cast<size_t>(n_in / kQK) * 8;
}

// {d, -offset * sum(qs)} per Q8_0 block.
template <int kOffset>
void q8_0_prep(const uint8_t* act_row, int64_t n_in, uint8_t* side) {
  const BlockQ8_0* y = reinterpret_cast<const BlockQ8_0*>(act_row);
  for (int64_t b = 0; b < n_in / kQK; ++b) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
    // Sum of 32 signed bytes: |q| summed by sad against zero would lose signs, so widen.
    const __m512i w16 = _mm512_cvtepi8_epi16(q);
    const int32_t s = _mm512_reduce_add_epi32(_mm512_madd_epi16(w16, _mm512_set1_epi16(1)));
    const float d = f16_to_f32(y[b].d);
    const int32_t corr = -kOffset * s;
    std::memcpy(side + 8 * b, &d, 4);
    std::memcpy(side + 8 * b + 4, &corr, 4);
  }
}

// ---- Q4_K (activations: Q8_K blocks) ----------------------------------------------------------
// Side data per super-block: {float d, float ysum[8]} with ysum[j] the sum of the codes of
// sub-block j (32 elements; from the block's bsums).

// Group super-block (2304 bytes): d[16] f16, dmin[16] f16, then the rows' 12 scale bytes as three
// vectors of words (bytes 0-3, 4-7, 8-11 of row r in lane r), then 32 code vectors: vector
// (p, m) at 8p + m, lane r = qs[32p + 4m .. +3] of row r: low nibbles are sub-block 2p elements
// 4m + i, high nibbles sub-block 2p + 1.
struct Q4_K {
  static constexpr size_t kBlock = 64 + 3 * 64 + 32 * 64;
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in / kQK_K) * kBlock; }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in / kQK_K) * sizeof(BlockQ4_K);
    for (int64_t b = 0; b < n_in / kQK_K; ++b, dst += kBlock) {
      const uint8_t* blk = src + static_cast<size_t>(b) * sizeof(BlockQ4_K);
      for (int r = 0; r < kRows; ++r) {
        BlockQ4_K z{};
        const BlockQ4_K& x = r < n_valid ? *reinterpret_cast<const BlockQ4_K*>(blk + r * rs) : z;
        std::memcpy(dst + 2 * r, &x.d, 2);
        std::memcpy(dst + 32 + 2 * r, &x.dmin, 2);
      }
      for (int word = 0; word < 3; ++word)
        transpose_words(blk + offsetof(BlockQ4_K, scales), rs, n_valid, word, 0,
                        dst + 64 + 64 * word);
      for (int v = 0; v < 32; ++v)
        transpose_words(blk + offsetof(BlockQ4_K, qs), rs, n_valid, v, 0, dst + 256 + 64 * v);
    }
  }
  // Float sub-block scales d * sc[j] and mins dmin * mn[j] of the 16 rows, from the packed words
  // (the vector form of scale_min_k4).
  static void scales(const uint8_t* w, __m512 sc[8], __m512 mn[8]) {
    const __m512 dw = f16x16(w), dmw = f16x16(w + 32);
    const __m512i u0 = load(w + 64), u1 = load(w + 128), u2 = load(w + 192);
    const __m512i six = _mm512_set1_epi32(0x3F3F3F3F), four = _mm512_set1_epi32(0x0F0F0F0F),
                  two = _mm512_set1_epi32(0x03030303), byte = _mm512_set1_epi32(0xFF);
    const __m512i s_lo = _mm512_and_si512(u0, six), m_lo = _mm512_and_si512(u1, six);
    const __m512i s_hi =
        _mm512_or_si512(_mm512_and_si512(u2, four),
                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), two), 4));
    const __m512i m_hi =
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), four),
                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), two), 4));
#pragma GCC unroll 16
    for (int j = 0; j < 4; ++j) {
      const __m512i sj = _mm512_and_si512(_mm512_srli_epi32(s_lo, 8 * j), byte);
      const __m512i sk = _mm512_and_si512(_mm512_srli_epi32(s_hi, 8 * j), byte);
      const __m512i mj = _mm512_and_si512(_mm512_srli_epi32(m_lo, 8 * j), byte);
      const __m512i mk = _mm512_and_si512(_mm512_srli_epi32(m_hi, 8 * j), byte);
      sc[j] = _mm512_mul_ps(dw, _mm512_cvtepi32_ps(sj));
      sc[j + 4] = _mm512_mul_ps(dw, _mm512_cvtepi32_ps(sk));
      mn[j] = _mm512_mul_ps(dmw, _mm512_cvtepi32_ps(mj));
      mn[j + 4] = _mm512_mul_ps(dmw, _mm512_cvtepi32_ps(mk));
    }
  }
  template <int NT>
  static void tile(const GemmArgs& a, const uint8_t* w, int64_t t0, float* out, __mmask16 mask) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[NT];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    const uint8_t* act = a.act + static_cast<size_t>(t0) * a.act_stride;
    const uint8_t* side = a.side + static_cast<size_t>(t0) * a.side_stride;
    alignas(64) float scf[8][16], mnf[8][16];
    for (int64_t sb = 0; sb < a.n_in / kQK_K; ++sb, w += kBlock) {
      {
        __m512 sc[8], mn[8];
        scales(w, sc, mn);
#pragma GCC unroll 16
        for (int j = 0; j < 8; ++j) {
          _mm512_store_ps(scf[j], sc[j]);
          _mm512_store_ps(mnf[j], mn[j]);
        }
      }
      __m512 inner[NT];
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) inner[t] = _mm512_setzero_ps();
#pragma GCC unroll 16
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qv = w + 256 + 64 * 8 * (j / 2);
        __m512i q[8];
#pragma GCC unroll 16
        for (int m = 0; m < 8; ++m) {
          const __m512i v = load(qv + 64 * m);
          q[m] = (j & 1) ? _mm512_and_si512(_mm512_srli_epi16(v, 4), m4) : _mm512_and_si512(v, m4);
        }
        const __m512 sc = _mm512_load_ps(scf[j]), mn = _mm512_load_ps(mnf[j]);
#pragma GCC unroll 16
        for (int t = 0; t < NT; ++t) {
          const uint8_t* y =
              act + t * a.act_stride + sb * sizeof(BlockQ8_K) + offsetof(BlockQ8_K, qs) + 32 * j;
          const uint8_t* s = side + t * a.side_stride + sb * 36;
          __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 16
          for (int m = 0; m < 8; ++m) sum = dp(sum, q[m], y + 4 * m);
          inner[t] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(sum), inner[t]);
          inner[t] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(load_f32(s + 4 + 4 * j)), inner[t]);
        }
      }
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const uint8_t* s = side + t * a.side_stride + sb * 36;
        acc[t] = _mm512_fmadd_ps(inner[t], _mm512_set1_ps(load_f32(s)), acc[t]);
      }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) store_rows(out + (t0 + t) * a.ldo, acc[t], mask);
  }
};

size_t q4_k_side_bytes(int64_t n_in) {
  return static_cast<size_t>(n_in / kQK_K) * 36;
}

void q4_k_prep(const uint8_t* act_row, int64_t n_in, uint8_t* side) {
  const BlockQ8_K* y = reinterpret_cast<const BlockQ8_K*>(act_row);
  for (int64_t sb = 0; sb < n_in / kQK_K; ++sb, side += 36) {
    std::memcpy(side, &y[sb].d, 4);
#pragma GCC unroll 16
    for (int j = 0; j < 8; ++j) {
      const float s = static_cast<float>(y[sb].bsums[2 * j] + y[sb].bsums[2 * j + 1]);
      std::memcpy(side + 4 + 4 * j, &s, 4);
    }
  }
}

// ---- Q6_K (activations: Q8_K blocks) ----------------------------------------------------------
// Side data per super-block: {float d, int32 corr[16]}, corr[j] = -32 * (sum of sub-block j's 16
// codes).

// Group super-block (3360 bytes): d[16] f16; scales: sub-block j of row r at byte 32 + 16j + r;
// 32 low-nibble vectors N(h, m) (h < 2, m < 16) at 288 + 64 (16h + m), lane r = ql[64h + 4m .. +3]
// of row r; 16 high-bit vectors H(h, m) (m < 8) at 2336 + 64 (8h + m), lane r = qh[32h + 4m .. +3].
// Elements 128h + 4m + i (m < 16) are the low nibbles of N(h, m) with bits 2(m / 8) of H(h, m % 8)
// as bits 4-5; elements 128h + 64 + 4m + i the high nibbles with bits 4 + 2(m / 8).
struct Q6_K {
  static constexpr size_t kBlock = 32 + 256 + 32 * 64 + 16 * 64;
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in / kQK_K) * kBlock; }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in / kQK_K) * sizeof(BlockQ6_K);
    for (int64_t b = 0; b < n_in / kQK_K; ++b, dst += kBlock) {
      const uint8_t* blk = src + static_cast<size_t>(b) * sizeof(BlockQ6_K);
      for (int r = 0; r < kRows; ++r) {
        BlockQ6_K z{};
        const BlockQ6_K& x = r < n_valid ? *reinterpret_cast<const BlockQ6_K*>(blk + r * rs) : z;
        std::memcpy(dst + 2 * r, &x.d, 2);
        for (int j = 0; j < 16; ++j) dst[32 + 16 * j + r] = static_cast<uint8_t>(x.scales[j]);
      }
      for (int v = 0; v < 32; ++v)
        transpose_words(blk + offsetof(BlockQ6_K, ql), rs, n_valid, v, 0, dst + 288 + 64 * v);
      for (int v = 0; v < 16; ++v)
        transpose_words(blk + offsetof(BlockQ6_K, qh), rs, n_valid, v, 0, dst + 2336 + 64 * v);
    }
  }
  // Codes (0..63) of elements 128h + 64nh + 4m + i of the 16 rows.
  static __m512i codes(const uint8_t* w, int h, int nh, int m) {
    const __m512i n = load(w + 288 + 64 * (16 * h + m));
    const __m512i hb = load(w + 2336 + 64 * (8 * h + m % 8));
    const __m512i lo = nh ? _mm512_and_si512(_mm512_srli_epi16(n, 4), _mm512_set1_epi8(0x0F))
                          : _mm512_and_si512(n, _mm512_set1_epi8(0x0F));
    // Bring bit pair 2(2nh + m / 8) of each qh byte to bits 4-5 (16-bit shifts: bits crossing a
    // byte boundary land outside 4-5 and are masked off).
    const int shift = 2 * (2 * nh + m / 8);
    __m512i hi;
    switch (shift) {
      case 0:
        hi = _mm512_slli_epi16(hb, 4);
        break;
      case 2:
        hi = _mm512_slli_epi16(hb, 2);
        break;
      case 4:
        hi = hb;
        break;
      default:
        hi = _mm512_srli_epi16(hb, 2);
        break;
    }
    return _mm512_or_si512(lo, _mm512_and_si512(hi, _mm512_set1_epi8(0x30)));
  }
  template <int NT>
  static void tile(const GemmArgs& a, const uint8_t* w, int64_t t0, float* out, __mmask16 mask) {
    __m512 acc[NT];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    const uint8_t* act = a.act + static_cast<size_t>(t0) * a.act_stride;
    const uint8_t* side = a.side + static_cast<size_t>(t0) * a.side_stride;
    for (int64_t sb = 0; sb < a.n_in / kQK_K; ++sb, w += kBlock) {
      const __m512 dw = f16x16(w);
      __m512 inner[NT];
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) inner[t] = _mm512_setzero_ps();
#pragma GCC unroll 16
      for (int h = 0; h < 2; ++h)
#pragma GCC unroll 16
        for (int nh = 0; nh < 2; ++nh)
#pragma GCC unroll 16
          for (int qq = 0; qq < 4; ++qq) {
            const int j = 8 * h + 4 * nh + qq;  // sub-block of elements 16j .. 16j + 15
            __m512i q[4];
#pragma GCC unroll 16
            for (int i = 0; i < 4; ++i) q[i] = codes(w, h, nh, 4 * qq + i);
            const __m512 sc = _mm512_mul_ps(
                dw, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 32 + 16 * j)))));
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t) {
              const uint8_t* y = act + t * a.act_stride + sb * sizeof(BlockQ8_K) +
                                 offsetof(BlockQ8_K, qs) + 16 * j;
              const uint8_t* s = side + t * a.side_stride + sb * 68;
              __m512i sum = _mm512_set1_epi32(load_i32(s + 4 + 4 * j));
#pragma GCC unroll 16
              for (int i = 0; i < 4; ++i) sum = dp(sum, q[i], y + 4 * i);
              inner[t] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(sum), inner[t]);
            }
          }
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const uint8_t* s = side + t * a.side_stride + sb * 68;
        acc[t] = _mm512_fmadd_ps(inner[t], _mm512_set1_ps(load_f32(s)), acc[t]);
      }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) store_rows(out + (t0 + t) * a.ldo, acc[t], mask);
  }
};

size_t q6_k_side_bytes(int64_t n_in) {
  return static_cast<size_t>(n_in / kQK_K) * 68;
}

void q6_k_prep(const uint8_t* act_row, int64_t n_in, uint8_t* side) {
  const BlockQ8_K* y = reinterpret_cast<const BlockQ8_K*>(act_row);
  for (int64_t sb = 0; sb < n_in / kQK_K; ++sb, side += 68) {
    std::memcpy(side, &y[sb].d, 4);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      const int32_t c = -32 * y[sb].bsums[j];
      std::memcpy(side + 4 + 4 * j, &c, 4);
    }
  }
}

template <class K>
void pack_fn(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
  K::pack(src, n_in, n_valid, dst);
}
template <class K>
size_t group_bytes_fn(int64_t n_in) {
  return K::group_bytes(n_in);
}

const PackedGemm kQ4_0{DType::Q4_0,   DType::Q8_0,     kRows,        group_bytes_fn<Q4_0>,
                       pack_fn<Q4_0>, q8_0_side_bytes, q8_0_prep<8>, drive<Q4_0>};
const PackedGemm kQ8_0{DType::Q8_0,   DType::Q8_0,     kRows,          group_bytes_fn<Q8_0>,
                       pack_fn<Q8_0>, q8_0_side_bytes, q8_0_prep<128>, drive<Q8_0>};
const PackedGemm kQ4_K{DType::Q4_K,   DType::Q8_K,     kRows,     group_bytes_fn<Q4_K>,
                       pack_fn<Q4_K>, q4_k_side_bytes, q4_k_prep, drive<Q4_K>};
const PackedGemm kQ6_K{DType::Q6_K,   DType::Q8_K,     kRows,     group_bytes_fn<Q6_K>,
                       pack_fn<Q6_K>, q6_k_side_bytes, q6_k_prep, drive<Q6_K>};

}  // namespace

const PackedGemm* packed_gemm_avx512vnni(DType t) {
  switch (t) {
    case DType::Q4_0:
      return &kQ4_0;
    case DType::Q8_0:
      return &kQ8_0;
    case DType::Q4_K:
      return &kQ4_K;
    case DType::Q6_K:
      return &kQ6_K;
    default:
      return nullptr;
  }
}

}  // namespace brisk::kernels

#endif
