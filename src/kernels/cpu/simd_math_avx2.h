// Vector math for the AVX2 kernel files (include only from *_avx2.cpp; internal linkage, see
// quant_isa_helpers.h for why).
#pragma once
#include <immintrin.h>

namespace brisk::kernels {
namespace {

// e^x for 8 floats, relative error ~1.5e-7: as exp_ps in simd_math_avx512.h, with 2^n built in
// the exponent field. x is clamped to [-87.3, 88] so that n stays a normal exponent (|n| <= 127):
// results below ~1e-38 stay ~1e-38 rather than 0 and above e^88 stay e^88 rather than inf, which
// no caller here (softmax of non-positive scores, silu) can tell apart. NaN stays NaN (max/min
// return their second operand, x, when it is NaN).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

}  // namespace
}  // namespace brisk::kernels
