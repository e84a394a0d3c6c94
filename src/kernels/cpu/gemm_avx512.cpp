// Packed int8 GEMM / GEMV for AVX-512 (compiled with -mavx512f/bw/vl/vnni): the kernels of
// gemm_impl.h over 512-bit vectors, 16 rows per group, in two variants: VNNI (vpdpbusd: four
// u8 x s8 products summed into each int32 lane in one instruction) and plain AVX-512BW (vpmaddubsw
// + vpmaddwd). The plain variant never executes a VNNI instruction. Nothing here runs before the
// dispatcher (gemm.cpp) has checked the CPU; the two functions at the bottom are the entry points.
#include "kernels/cpu/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's AVX-512 intrinsics self-initialise their "undefined" results, which -Wuninitialized
// then reports once inlined; the values are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/cpu/gemm_float_impl.h"

namespace brisk::kernels {
namespace {

template <bool kVnniT>
struct V512 {
  static constexpr int kRows = 16, kTile = 8, kStreamTile = 4;
  static constexpr bool kVnni = kVnniT;
  // Interleaved token chains (gemm_impl.h), in cache, one thread: Q4_0 175 -> 178 GMAC/s, Q4_K
  // 168 -> 179; 64 MiB streamed, 128 tokens: Q4_0 163 -> 169, Q4_K 149 -> 163.
  static constexpr bool kInterleave = true;
  using I = __m512i;
  using F = __m512;
  static I load(const void* p) { return _mm512_loadu_si512(p); }
  static I zero() { return _mm512_setzero_si512(); }
  static I and_(I a, I b) { return _mm512_and_si512(a, b); }
  static I or_(I a, I b) { return _mm512_or_si512(a, b); }
  static I or_and(I a, I b, I c) { return _mm512_ternarylogic_epi32(a, b, c, 0xF8); }
  static I set1_8(int v) { return _mm512_set1_epi8(static_cast<char>(v)); }
  static I set1_32(int32_t v) { return _mm512_set1_epi32(v); }
  static I shl16(I v, int n) { return _mm512_slli_epi16(v, static_cast<unsigned>(n)); }
  static I shr16(I v, int n) { return _mm512_srli_epi16(v, static_cast<unsigned>(n)); }
  static I shl32(I v, int n) { return _mm512_slli_epi32(v, static_cast<unsigned>(n)); }
  static I shr32(I v, int n) { return _mm512_srli_epi32(v, static_cast<unsigned>(n)); }
  // Four activation codes broadcast to every lane (folds into an embedded-broadcast operand).
  static I bcast4(const void* p) { return _mm512_set1_epi32(load_i32(p)); }
  static I dp_u8(I acc, I w, const void* y4) {
    if constexpr (kVnni) {
      return _mm512_dpbusd_epi32(acc, w, bcast4(y4));
    } else {
      const I p = _mm512_maddubs_epi16(w, bcast4(y4));  // w <= 63: pair sums fit in int16
      return _mm512_add_epi32(acc, _mm512_madd_epi16(p, _mm512_set1_epi16(1)));
    }
  }
  // Signed weights: |w| as the unsigned operand and the activation negated where w < 0 (where
  // w == 0 the product is 0 whatever the sign). |w|, |y| <= 127: pair sums fit in int16.
  static I dp_s8(I acc, I w, const void* y4) {
    const I y = bcast4(y4);
    const I ys = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(w), _mm512_setzero_si512(), y);
    if constexpr (kVnni) {
      return _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(w), ys);
    } else {
      const I p = _mm512_maddubs_epi16(_mm512_abs_epi8(w), ys);
      return _mm512_add_epi32(acc, _mm512_madd_epi16(p, _mm512_set1_epi16(1)));
    }
  }
  static I dp_s16(I acc, I a, const void* p) {
    if constexpr (kVnni) {
      return _mm512_dpwssd_epi32(acc, a, bcast4(p));
    } else {
      return _mm512_add_epi32(acc, _mm512_madd_epi16(a, bcast4(p)));
    }
  }
  static F cvt(I v) { return _mm512_cvtepi32_ps(v); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F set1f(float v) { return _mm512_set1_ps(v); }
  static F zerof() { return _mm512_setzero_ps(); }
  static F loadf(const float* p) { return _mm512_loadu_ps(p); }
  static void storef(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F f16(const void* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
  }
  static I s8to32(const void* p) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p)));
  }
  static F bf16(const void* p) {  // bfloat16 is the top half of a float
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(static_cast<const __m256i*>(p))), 16));
  }
  static void store(float* out, F v, int n, bool add) {
    const __mmask16 m = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
    if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, out));
    _mm512_mask_storeu_ps(out, m, v);
  }
};

constexpr GemmTable<V512<true>> kVnniTable{};
constexpr GemmTable<V512<false>> kPlainTable{};

}  // namespace

const PackedGemm* packed_gemm_avx512vnni(DType t) {
  return kVnniTable.find(t);
}

const PackedGemm* packed_gemm_avx512(DType t) {
  return kPlainTable.find(t);
}

}  // namespace brisk::kernels

#endif
