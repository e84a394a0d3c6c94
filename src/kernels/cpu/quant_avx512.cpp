// AVX-512 (F + BW + VL) kernels, with and without VNNI (this file is compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c; see CMakeLists.txt).
// The plain variant must not execute a VNNI instruction: the 512-bit kernels are templates on
// kVnni and only kVnni = true instantiations (and the *_vnni kernels) use vpdpbusd / vpdpwssd.
// Nothing here may run before the dispatcher (isa.cpp) has checked the CPU; apply_avx512_kernels
// is the only entry point.
//
// The dispatcher lays these over the AVX2 row (an AVX-512 CPU has AVX2), so the activation
// quantisers other than Q8_0's and any type not handled here keep their AVX2 kernels.
//
// Integer sums inside a block are exactly the scalar reference's; only the order of the float
// additions differs. The float accumulation of Q8_0/Q4_0/Q4_K/Q5_K is kept in 8 lanes exactly as
// the AVX2 kernels (and ggml's AVX2 build, which produced the reference logits) do it: per block,
// 8 int32 lanes -> f32, one fused multiply-add into the same accumulator. A different order moved
// the tiny test models' logits by ~1e-2 rms (through flipped activation-rounding decisions).
#include "kernels/cpu/quant_isa.h"

#ifdef BRISK_X86_KERNELS
// GCC 12's AVX-512 intrinsics self-initialise their "undefined" results (`__m512 __Y = __Y;`),
// which its own -Wuninitialized then reports once inlined; the values are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_isa_helpers.h"

namespace brisk::kernels {
namespace {

// Only internal-linkage helpers (quant_isa_helpers.h) and always-inline intrinsics are called
// from this file; see that header for why.
inline float f16(uint16_t h) {
  return _cvtsh_ss(h);
}

inline __m512i load512(const void* p) {
  return _mm512_loadu_si512(p);
}
inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m512i concat(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// acc + sum over pairs of (c * y pair sums, int16) * scale (int16): the k-quant sub-block scaling.
template <bool kVnni>
inline __m512i dot_scaled_acc(__m512i acc, __m512i c, __m512i y, __m512i scale16) {
  const __m512i p16 = _mm512_maddubs_epi16(c, y);
  if constexpr (kVnni) {
    return _mm512_dpwssd_epi32(acc, p16, scale16);
  } else {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(p16, scale16));
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// acc + float(p) * d over 8 lanes (the AVX2 kernels' per-block step).
inline __m256 fma_block(__m256i p, float d, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d), acc);
}

// ---- 256-bit VNNI kernels ----------------------------------------------------------------------
// Measured on the development Xeon, 512-bit versions of the 32-byte-block kernels (two Q8_0/Q4_0
// blocks or two k-quant sub-blocks per register, then split for the per-block float step) were
// 1.3-2x slower than AVX2, probably because the lane inserts/extracts that pair blocks all go to
// port 5, the only shuffle port, while 512-bit uops also shut port 1's vector unit. So
// these use 256-bit registers and gain from VNNI alone (vpdpbusd replaces maddubs + madd,
// vpdpwssd fuses the scale multiply with the accumulate). Without VNNI they would be the AVX2
// kernels, which the avx512 variant keeps.

// w is n/32 Q8_0 blocks, a is n/32 Q8_0 blocks. Signs move from x to y (|x| is the u8 operand);
// exact while no code is -128 (quantisers produce [-127, 127]).
float q8_0_vec_dot_vnni(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q8_0, n, kQK, "vec_dot");
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i xv = load256(x[i].qs);
    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(xv, xv),
                                          _mm256_sign_epi8(load256(y[i].qs), xv));
    acc = fma_block(p, f16(x[i].d) * f16(y[i].d), acc);
  }
  return hsum(acc);
}

// w is n/32 Q4_0 blocks, a is n/32 Q8_0 blocks. Codes c in [0, 15] are the u8 operand as they
// are: sum (c - 8) y = sum c y - sum 8 y, both exact.
float q4_0_vec_dot_vnni(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q4_0, n, kQK, "vec_dot");
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs));
    // elements 0-15 (low nibbles) in the low lane, 16-31 (high nibbles) in the high lane
    const __m256i c = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low4);
    const __m256i yv = load256(y[i].qs);
    const __m256i p = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), c, yv),
                                       _mm256_dpbusd_epi32(_mm256_setzero_si256(), eight, yv));
    acc = fma_block(p, f16(x[i].d) * f16(y[i].d), acc);
  }
  return hsum(acc);
}

// Q4_K / Q5_K: the min term sum_j mn[j] * (bsums[2j] + bsums[2j + 1]), and the scales.
inline int k4_scales_and_mins(const uint8_t* scales, const int16_t* bsums, uint8_t sc[8]) {
  int summs = 0;
  uint8_t mn[8];
  scale_min_k4(scales, sc, mn);
  for (int j = 0; j < 8; ++j) summs += mn[j] * (bsums[2 * j] + bsums[2 * j + 1]);
  return summs;
}

// w is n/256 Q4_K (kFive = false) or Q5_K blocks, a is n/256 Q8_K blocks. Per 64 elements p one
// 32-byte load of qs gives sub-block 2p (low nibbles) and 2p + 1 (high nibbles), codes in
// [0, 15]; Q5_K adds bit 2p / 2p + 1 of qh[l] as bit 4. Lanes and float order as the AVX2 kernel.
template <bool kFive>
float k4_vec_dot_vnni(int64_t n, const void* w, const void* a) {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  check_blocks(kFive ? DType::Q5_K : DType::Q4_K, n, kQK_K, "vec_dot");
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    uint8_t sc[8];
    const int summs = k4_scales_and_mins(x[i].scales, y[i].bsums, sc);
    __m256i qh;
    if constexpr (kFive) qh = load256(x[i].qh);
    __m256i isum = _mm256_setzero_si256();
    for (int p = 0; p < 4; ++p) {
      const __m256i q = load256(x[i].qs + 32 * p);
      __m256i lo = _mm256_and_si256(q, low4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      if constexpr (kFive) {
        lo = _mm256_or_si256(
            lo, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * p), 4), bit4));
        hi = _mm256_or_si256(
            hi, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * p + 1), 4), bit4));
      }
      const __m256i plo = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * p));
      const __m256i phi = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * p + 32));
      isum = _mm256_dpwssd_epi32(isum, plo, _mm256_set1_epi16(sc[2 * p]));
      isum = _mm256_dpwssd_epi32(isum, phi, _mm256_set1_epi16(sc[2 * p + 1]));
    }
    const float d = f16(x[i].d) * y[i].d, dmin = f16(x[i].dmin) * y[i].d;
    acc = fma_block(isum, d, acc);
    mins += dmin * static_cast<float>(summs);
  }
  return hsum(acc) - mins;
}

// ---- 512-bit kernels --------------------------------------------------------------------------

// w is n/256 Q6_K blocks, a is n/256 Q8_K blocks. Codes c in [0, 63] (value c - 32); as in the
// AVX2 kernel the -32 is applied once per block through the bsums. In half h, register 0 holds
// elements 128h + [0, 64) (ql[0..63] low nibbles, qh bit pairs 0 and 1), register 1 elements
// 128h + [64, 128) (high nibbles, bit pairs 2 and 3); each 128-bit lane is one 16-element
// sub-block.
template <bool kVnni>
float q6_k_vec_dot_avx512(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q6_K, n, kQK_K, "vec_dot");
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m512i low4 = _mm512_set1_epi8(0x0F), low2 = _mm512_set1_epi8(0x03);
  // Index vectors broadcasting scale g * 4 + lane to each 128-bit lane (8 int16).
  const __m512i lane_idx =
      _mm512_set_epi64(0x0003000300030003, 0x0003000300030003, 0x0002000200020002,
                       0x0002000200020002, 0x0001000100010001, 0x0001000100010001, 0, 0);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const int8_t* s = x[i].scales;
    int offset = 0;
    for (int j = 0; j < 16; ++j) offset += s[j] * y[i].bsums[j];
    const __m512i s16 = _mm512_castsi256_si512(
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s))));
    __m512i isum = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = load512(x[i].ql + 64 * h);
      const __m256i qh = load256(x[i].qh + 32 * h);
      const __m512i qh01 = concat(qh, _mm256_srli_epi16(qh, 2));
      const __m512i qh23 = concat(_mm256_srli_epi16(qh, 4), _mm256_srli_epi16(qh, 6));
      const __m512i c0 = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                         _mm512_slli_epi16(_mm512_and_si512(qh01, low2), 4));
      const __m512i c1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                         _mm512_slli_epi16(_mm512_and_si512(qh23, low2), 4));
      const __m512i sc0 = _mm512_permutexvar_epi16(
          _mm512_add_epi16(lane_idx, _mm512_set1_epi16(static_cast<int16_t>(8 * h))), s16);
      const __m512i sc1 = _mm512_permutexvar_epi16(
          _mm512_add_epi16(lane_idx, _mm512_set1_epi16(static_cast<int16_t>(8 * h + 4))), s16);
      isum = dot_scaled_acc<kVnni>(isum, c0, load512(y[i].qs + 128 * h), sc0);
      isum = dot_scaled_acc<kVnni>(isum, c1, load512(y[i].qs + 128 * h + 64), sc1);
    }
    sum += f16(x[i].d) * y[i].d * static_cast<float>(_mm512_reduce_add_epi32(isum) - 32 * offset);
  }
  return sum;
}

// ---- f16 --------------------------------------------------------------------------------------

// w and a are n f16 values; 32 f32 lanes with fused multiply-adds, tail in double as the scalar.
float f16_vec_dot_avx512(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const uint16_t* y = static_cast<const uint16_t*>(a);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  const int64_t nv = n - n % 32;
  for (int64_t i = 0; i < nv; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(load256(x + i)), _mm512_cvtph_ps(load256(y + i)), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(load256(x + i + 16)),
                           _mm512_cvtph_ps(load256(y + i + 16)), acc1);
  }
  double sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (int64_t i = nv; i < n; ++i) sum += static_cast<double>(f16(x[i]) * f16(y[i]));
  return static_cast<float>(sum);
}

// ---- activation quantiser --------------------------------------------------------------------

// Q8_0 blocks from floats, byte-identical to the scalar q8_0_from_float (and the AVX2 kernel): d =
// max |x| / 127 (NaNs skipped, as std::max with the running max first), q = x / d rounded half
// away from zero, saturated to int8. One block per step in two 16-float registers; AVX-512's
// mask arithmetic and saturating vpmovsdb replace AVX2's compare/blend and pack/permute shuffles.
void q8_0_from_float_avx512(const float* src, void* dst, int64_t n) {
  check_blocks(DType::Q8_0, n, kQK, "from_float");
  BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
  const __m512 half = _mm512_set1_ps(0.5f), neg_half = _mm512_set1_ps(-0.5f);
  const __m512i one = _mm512_set1_epi32(1);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    const __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
    // maxps returns its second operand when either is NaN: a NaN lane keeps the running max.
    const __m512 m =
        _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
    const float d = _mm512_reduce_max_ps(m) / 127.0f;
    const __m512 id = _mm512_set1_ps(d != 0 ? 1.0f / d : 0.0f);
    __m128i q8[2];
    for (int k = 0; k < 2; ++k) {
      const __m512 x = _mm512_mul_ps(k ? v1 : v0, id);
      __m512i q = _mm512_cvttps_epi32(x);
      const __m512 frac = _mm512_sub_ps(x, _mm512_cvtepi32_ps(q));
      q = _mm512_mask_add_epi32(q, _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ), q, one);
      q = _mm512_mask_sub_epi32(q, _mm512_cmp_ps_mask(frac, neg_half, _CMP_LE_OQ), q, one);
      q8[k] = _mm512_cvtsepi32_epi8(q);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b[i].qs), q8[0]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b[i].qs + 16), q8[1]);
    b[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);  // RNE, as f32_to_f16
  }
}

template <bool kVnni>
void apply(QuantKernels& row) {
  switch (row.type) {
    case DType::F16:
      row.vec_dot = f16_vec_dot_avx512;
      break;
    case DType::Q6_K:
      row.vec_dot = q6_k_vec_dot_avx512<kVnni>;
      break;
    case DType::Q4_0:
      if (kVnni) row.vec_dot = q4_0_vec_dot_vnni;
      break;
    case DType::Q8_0:
      if (kVnni) row.vec_dot = q8_0_vec_dot_vnni;
      row.from_float = q8_0_from_float_avx512;
      break;
    case DType::Q4_K:
      if (kVnni) row.vec_dot = k4_vec_dot_vnni<false>;
      break;
    case DType::Q5_K:
      if (kVnni) row.vec_dot = k4_vec_dot_vnni<true>;
      break;
    default:
      break;
  }
}

}  // namespace

void apply_avx512_kernels(QuantKernels& row, bool vnni) {
  if (vnni)
    apply<true>(row);
  else
    apply<false>(row);
}

}  // namespace brisk::kernels

#endif  // BRISK_X86_KERNELS
