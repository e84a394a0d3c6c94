// AVX-512 row kernels (vec_ops.h). Compiled with AVX-512 flags; entered only through
// apply_vec_ops_avx512 after the dispatcher checked the CPU.
#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/cpu/simd_math_avx512.h"
#include "kernels/cpu/vec_ops.h"

namespace brisk::kernels {
namespace {

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}

double sum_sq_avx512(const float* x, int64_t n) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi =
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    a0 = _mm512_fmadd_pd(lo, lo, a0);
    a1 = _mm512_fmadd_pd(hi, hi, a1);
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale_mul_avx512(const float* x, float scale, const float* w, float* out, int64_t n) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(out + i, m,
                          _mm512_mul_ps(_mm512_mul_ps(v, s), _mm512_maskz_loadu_ps(m, w + i)));
  }
}

void silu_mul_avx512(const float* g, const float* u, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 sig =
        _mm512_div_ps(gv, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(sig, _mm512_maskz_loadu_ps(m, u + i)));
  }
}

void add_avx512(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(
        y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i)));
  }
}

// Adjacent pairs: 8 pairs per vector; cos/sin of pair i duplicated into lanes 2i, 2i + 1, and
// vfmaddsub gives x0 c - x1 s in even lanes and x1 c + x0 s in odd lanes (x1 s / x0 s come from
// the pair-swapped vector). NeoX: halves a = x[i], b = x[i + half] rotate as whole vectors.
void rope_avx512(float* x, int n_heads, int head_dim, int n_dims, bool adjacent, const float* cs,
                 const float* sn) {
  const int half = n_dims / 2;
  const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    if (adjacent) {
      for (int i = 0; i < half; i += 8) {
        const int left = half - i;
        const __mmask8 m8 = left >= 8 ? __mmask8(0xFF) : __mmask8((1u << left) - 1);
        const __mmask16 m16 = left >= 8 ? __mmask16(0xFFFF) : __mmask16((1u << (2 * left)) - 1);
        const __m512 c =
            _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(m8, cs + i)));
        const __m512 s =
            _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(m8, sn + i)));
        const __m512 xv = _mm512_maskz_loadu_ps(m16, v + 2 * i);
        const __m512 sw = _mm512_permute_ps(xv, 0xB1);  // (x1, x0) per pair
        _mm512_mask_storeu_ps(v + 2 * i, m16, _mm512_fmaddsub_ps(xv, c, _mm512_mul_ps(sw, s)));
      }
    } else {
      for (int i = 0; i < half; i += 16) {
        const __mmask16 m = tail_mask(half - i);
        const __m512 c = _mm512_maskz_loadu_ps(m, cs + i), s = _mm512_maskz_loadu_ps(m, sn + i);
        const __m512 a = _mm512_maskz_loadu_ps(m, v + i),
                     b = _mm512_maskz_loadu_ps(m, v + half + i);
        _mm512_mask_storeu_ps(v + i, m, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
        _mm512_mask_storeu_ps(v + half + i, m, _mm512_fmadd_ps(a, s, _mm512_mul_ps(b, c)));
      }
    }
  }
}

// Four 512-bit accumulators (256 bytes per stream and step).
uint64_t sum_words_avx512(const uint64_t* p, int64_t n, int streams) {
  const int64_t per = streams > 0 ? n / streams / 32 * 32 : 0;
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < per; i += 32)
    for (int s = 0; s < streams; ++s) {
      const uint64_t* q = p + s * per + i;
      a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(q));
      a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(q + 8));
      a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(q + 16));
      a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(q + 24));
    }
  uint64_t s = static_cast<uint64_t>(_mm512_reduce_add_epi64(
      _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
  for (int64_t i = per * streams; i < n; ++i) s += p[i];
  return s;
}

// 12 independent accumulator chains, so latency never limits throughput. The operands are
// re-read through an empty asm each round so the compiler cannot hoist or fold the work.
template <bool kVnni>
uint64_t int8_peak_avx512(int64_t iters, int64_t* sink) {
  __m512i a[12];
  for (int j = 0; j < 12; ++j) a[j] = _mm512_set1_epi32(j);
  __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(2);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) {
      if constexpr (kVnni) {
        a[j] = _mm512_dpbusd_epi32(a[j], x, y);
      } else {
        a[j] = _mm512_add_epi16(a[j], _mm512_maddubs_epi16(x, y));
      }
    }
    __asm__ volatile("" : "+v"(x), "+v"(y));
  }
  __m512i s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_epi32(s, a[j]);
  // Not _mm512_reduce_add_epi32: GCC implements it with signed int additions, and these lanes
  // wrap around by design (UBSan flags the overflow).
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, s);
  int64_t total = 0;
  for (int32_t l : lanes) total += l;
  *sink = total;
  return static_cast<uint64_t>(iters) * 12 * 64;
}

uint64_t f32_peak_avx512(int64_t iters, int64_t* sink) {
  __m512 a[12];
  for (int j = 0; j < 12; ++j) a[j] = _mm512_set1_ps(static_cast<float>(j));
  __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) a[j] = _mm512_fmadd_ps(a[j], m, c);
    __asm__ volatile("" : "+v"(m), "+v"(c));
  }
  __m512 s = a[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, a[j]);
  *sink = static_cast<int64_t>(_mm512_reduce_add_ps(s));
  return static_cast<uint64_t>(iters) * 12 * 16;
}

}  // namespace

void apply_vec_ops_avx512_vnni(VecOps& ops) {
  ops.int8_peak = int8_peak_avx512<true>;
}

void apply_vec_ops_avx512(VecOps& ops) {
  ops.int8_peak = int8_peak_avx512<false>;
  ops.f32_peak = f32_peak_avx512;
  ops.sum_sq = sum_sq_avx512;
  ops.scale_mul = scale_mul_avx512;
  ops.silu_mul = silu_mul_avx512;
  ops.add = add_avx512;
  ops.rope = rope_avx512;
  ops.sum_words = sum_words_avx512;
}

}  // namespace brisk::kernels
#endif
