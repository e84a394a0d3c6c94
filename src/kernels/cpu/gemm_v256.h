// The 256-bit vector traits of the packed GEMM kernels (gemm_impl.h), 8 rows per group, for the
// AVX2 file (products by vpmaddubsw + vpmaddwd) and the AVX-VNNI file (kVnni: VEX-encoded 256-bit
// vpdpbusd / vpdpwssd, the only VNNI instructions those CPUs have). A 4-token register tile: with
// 16 vector registers, 8 unpacked weight vectors plus the accumulators is what fits. Include only
// from gemm_avx2.cpp / gemm_avxvnni.cpp (internal linkage, see quant_isa_helpers.h).
#pragma once
#include <immintrin.h>

#include "kernels/cpu/gemm_float_impl.h"

namespace brisk::kernels {
namespace {

template <bool kVnniT>
struct V256 {
  static constexpr int kRows = 8, kTile = 4, kStreamTile = 1;
  static constexpr bool kVnni = kVnniT;
  static constexpr bool kInterleave = false;  // 16 registers: interleaved chains spill
  using I = __m256i;
  using F = __m256;
  static I load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static I zero() { return _mm256_setzero_si256(); }
  static I and_(I a, I b) { return _mm256_and_si256(a, b); }
  static I or_(I a, I b) { return _mm256_or_si256(a, b); }
  static I or_and(I a, I b, I c) { return _mm256_or_si256(a, _mm256_and_si256(b, c)); }
  static I set1_8(int v) { return _mm256_set1_epi8(static_cast<char>(v)); }
  static I set1_32(int32_t v) { return _mm256_set1_epi32(v); }
  static I shl16(I v, int n) { return _mm256_slli_epi16(v, n); }
  static I shr16(I v, int n) { return _mm256_srli_epi16(v, n); }
  static I shl32(I v, int n) { return _mm256_slli_epi32(v, n); }
  static I shr32(I v, int n) { return _mm256_srli_epi32(v, n); }
  static I bcast4(const void* p) { return _mm256_set1_epi32(load_i32(p)); }
  static I dp_u8(I acc, I w, const void* y4) {
    if constexpr (kVnni) {
      return _mm256_dpbusd_avx_epi32(acc, w, bcast4(y4));
    } else {
      const I p = _mm256_maddubs_epi16(w, bcast4(y4));  // w <= 63: pair sums fit in int16
      return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    }
  }
  static I dp_s8(I acc, I w, const void* y4) {
    const I ws = _mm256_sign_epi8(w, w), ys = _mm256_sign_epi8(bcast4(y4), w);
    if constexpr (kVnni) {
      return _mm256_dpbusd_avx_epi32(acc, ws, ys);
    } else {
      const I p = _mm256_maddubs_epi16(ws, ys);
      return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    }
  }
  static I dp_s16(I acc, I a, const void* p) {
    if constexpr (kVnni) {
      return _mm256_dpwssd_avx_epi32(acc, a, bcast4(p));
    } else {
      return _mm256_add_epi32(acc, _mm256_madd_epi16(a, bcast4(p)));
    }
  }
  static F cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F set1f(float v) { return _mm256_set1_ps(v); }
  static F zerof() { return _mm256_setzero_ps(); }
  static F loadf(const float* p) { return _mm256_loadu_ps(p); }
  static void storef(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F f16(const void* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p)));
  }
  static F bf16(const void* p) {  // bfloat16 is the top half of a float
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))), 16));
  }
  static I s8to32(const void* p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p)));
  }
  static void store(float* out, F v, int n, bool add) {
    if (n >= 8) {
      _mm256_storeu_ps(out, add ? _mm256_add_ps(v, _mm256_loadu_ps(out)) : v);
      return;
    }
    const I lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const I m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    if (add) v = _mm256_add_ps(v, _mm256_maskload_ps(out, m));
    _mm256_maskstore_ps(out, m, v);
  }
};

}  // namespace
}  // namespace brisk::kernels
