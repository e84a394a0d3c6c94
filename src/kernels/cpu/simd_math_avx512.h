// Vector math for the AVX-512 kernel files (include only from *_avx512.cpp; internal linkage, see
// quant_isa_helpers.h for why).
#pragma once
#include <immintrin.h>

namespace brisk::kernels {
namespace {

// e^x for 16 floats, relative error ~1.5e-7 over the float range. x = n ln2 + r with
// |r| <= ln2 / 2 (ln2 split in two so n ln2 is exact), e^r by its degree-6 Taylor polynomial
// (truncation error r^7 / 7! < 1.2e-7), then scaled by 2^n with vscalefps, which also turns
// overflow into inf and underflow into 0 without integer exponent tricks. NaN stays NaN.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));  // below this e^x is 0 in float
  x = _mm512_min_ps(x, _mm512_set1_ps(89.0f));    // above this e^x is inf in float
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace
}  // namespace brisk::kernels
