// AVX2 + FMA row kernels (vec_ops.h). Compiled with AVX2 flags; entered only through
// apply_vec_ops_avx2 after the dispatcher checked the CPU. Tails fall back to scalar loops.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "kernels/cpu/simd_math_avx2.h"
#include "kernels/cpu/vec_ops.h"

namespace brisk::kernels {
namespace {

double sum_sq_avx2(const float* x, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    a0 = _mm256_fmadd_pd(lo, lo, a0);
    a1 = _mm256_fmadd_pd(hi, hi, a1);
  }
  const __m256d a = _mm256_add_pd(a0, a1);
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  double s = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale_mul_avx2(const float* x, float scale, const float* w, float* out, int64_t n) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(
        out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s), _mm256_loadu_ps(w + i)));
  for (; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void silu_mul_avx2(const float* g, const float* u, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    _mm256_storeu_ps(
        out + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
  }
  for (; i < n; ++i) out[i] = g[i] / (1.0f + __builtin_expf(-g[i])) * u[i];
}

void add_avx2(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

// As rope_avx512 with 4 pairs (adjacent) or 8 elements (NeoX) per vector.
void rope_avx2(float* x, int n_heads, int head_dim, int n_dims, bool adjacent, const float* cs,
               const float* sn) {
  const int half = n_dims / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    int i = 0;
    if (adjacent) {
      for (; i + 4 <= half; i += 4) {
        const __m128 c4 = _mm_loadu_ps(cs + i), s4 = _mm_loadu_ps(sn + i);
        const __m256 c = _mm256_set_m128(_mm_unpackhi_ps(c4, c4), _mm_unpacklo_ps(c4, c4));
        const __m256 s = _mm256_set_m128(_mm_unpackhi_ps(s4, s4), _mm_unpacklo_ps(s4, s4));
        const __m256 xv = _mm256_loadu_ps(v + 2 * i);
        const __m256 sw = _mm256_permute_ps(xv, 0xB1);
        _mm256_storeu_ps(v + 2 * i, _mm256_fmaddsub_ps(xv, c, _mm256_mul_ps(sw, s)));
      }
    } else {
      for (; i + 8 <= half; i += 8) {
        const __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
        const __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + half + i);
        _mm256_storeu_ps(v + i, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
        _mm256_storeu_ps(v + half + i, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
      }
    }
    for (; i < half; ++i) {
      const int a = adjacent ? 2 * i : i;
      const int b = adjacent ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

// Four 256-bit accumulators (256 bytes per stream and step).
uint64_t sum_words_avx2(const uint64_t* p, int64_t n, int streams) {
  const int64_t per = streams > 0 ? n / streams / 32 * 32 : 0;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  auto ld = [](const uint64_t* q) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  };
  for (int64_t i = 0; i < per; i += 32)
    for (int s = 0; s < streams; ++s) {
      const uint64_t* q = p + s * per + i;
      a0 = _mm256_add_epi64(a0, _mm256_add_epi64(ld(q), ld(q + 16)));
      a1 = _mm256_add_epi64(a1, _mm256_add_epi64(ld(q + 4), ld(q + 20)));
      a2 = _mm256_add_epi64(a2, _mm256_add_epi64(ld(q + 8), ld(q + 24)));
      a3 = _mm256_add_epi64(a3, _mm256_add_epi64(ld(q + 12), ld(q + 28)));
    }
  const __m256i a = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a);
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (int64_t i = per * streams; i < n; ++i) s += p[i];
  return s;
}

// As the AVX-512 peaks: 12 independent chains of vpmaddubsw (32 u8 x s8 products) or FMA.
uint64_t int8_peak_avx2(int64_t iters, int64_t* sink) {
  __m256i a[12];
  for (int j = 0; j < 12; ++j) a[j] = _mm256_set1_epi32(j);
  __m256i x = _mm256_set1_epi8(1), y = _mm256_set1_epi8(2);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm256_add_epi16(a[j], _mm256_maddubs_epi16(x, y));
    __asm__ volatile("" : "+x"(x), "+x"(y));
  }
  __m256i s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_epi32(s, a[j]);
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  // Widened sum: the lanes wrap around by design (the loop only has to keep the units busy).
  *sink = static_cast<int64_t>(lanes[0]) + lanes[7];
  return static_cast<uint64_t>(iters) * 12 * 32;
}

uint64_t f32_peak_avx2(int64_t iters, int64_t* sink) {
  __m256 a[12];
  for (int j = 0; j < 12; ++j) a[j] = _mm256_set1_ps(static_cast<float>(j));
  __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm256_fmadd_ps(a[j], m, c);
    __asm__ volatile("" : "+x"(m), "+x"(c));
  }
  alignas(32) float lanes[8];
  __m256 s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, a[j]);
  _mm256_store_ps(lanes, s);
  *sink = static_cast<int64_t>(lanes[0]);
  return static_cast<uint64_t>(iters) * 12 * 8;
}

}  // namespace

void apply_vec_ops_avx2(VecOps& ops) {
  ops.int8_peak = int8_peak_avx2;
  ops.f32_peak = f32_peak_avx2;
  ops.sum_sq = sum_sq_avx2;
  ops.scale_mul = scale_mul_avx2;
  ops.silu_mul = silu_mul_avx2;
  ops.add = add_avx2;
  ops.rope = rope_avx2;
  ops.sum_words = sum_words_avx2;
}

}  // namespace brisk::kernels
#endif
