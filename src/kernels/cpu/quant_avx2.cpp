// AVX2 + FMA + F16C kernels (this file is compiled with -mavx2 -mfma -mf16c; see CMakeLists.txt).
// Nothing here may run before the dispatcher (isa.cpp) has checked the CPU: apply_avx2_kernels is
// the only entry point and it is called from the lazily built ISA tables.
//
// Integer sums inside a block are exactly the scalar reference's (quant_legacy.cpp,
// quant_kquants.cpp); only the order of the float additions across blocks and lanes differs.
// The int8 x int8 products use maddubs (u8 x s8 -> pairs summed in s16) on |x| and sign(y, x);
// that is exact while no code is -128, which no quantiser here produces (codes are in
// [-127, 127]); 4-/6-bit codes are non-negative and go into maddubs directly.
// The activation quantisers produce byte-identical blocks to the scalar ones.
#include "kernels/cpu/quant_isa.h"

#ifdef BRISK_X86_KERNELS
#include <immintrin.h>

#include <cstring>

#include "core/half.h"
#include "kernels/cpu/quant_avx2_helpers.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_isa_helpers.h"

namespace brisk::kernels {
namespace {

// Only internal-linkage helpers (quant_isa_helpers.h, quant_avx2_helpers.h) and always-inline
// intrinsics are called from this file; see quant_isa_helpers.h for why.

// Q4_0 codes of one block in element order, as signed values q - 8: low nibbles (elements 0-15)
// in the low 128-bit lane, high nibbles (16-31) in the high lane.
inline __m256i q4_0_codes(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
  return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0F)), _mm256_set1_epi8(8));
}

// ---- legacy -----------------------------------------------------------------------------------

// w is n/32 Q4_0 blocks, a is n/32 Q8_0 blocks.
float q4_0_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q4_0, n, kQK, "vec_dot");
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i p = dot_i8(q4_0_codes(x[i].qs), load256(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16(x[i].d) * f16(y[i].d)), acc);
  }
  return hsum(acc);
}

// w and a are n/32 Q8_0 blocks.
float q8_0_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q8_0, n, kQK, "vec_dot");
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i p = dot_i8(load256(x[i].qs), load256(y[i].qs));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16(x[i].d) * f16(y[i].d)), acc);
  }
  return hsum(acc);
}

// Same arithmetic as the scalar quantize_q8 (see quantize_q8_block).
void q8_0_from_float_avx2(const float* src, void* dst, int64_t n) {
  check_blocks(DType::Q8_0, n, kQK, "from_float");
  BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    __m256i sums;
    const float d = quantize_q8_block(src, b[i].qs, &sums);
    b[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);  // RNE, as f32_to_f16
  }
}

// ---- k-quants ---------------------------------------------------------------------------------

// As the scalar reference: mx is the first element of largest magnitude, iscale = -127 / mx,
// q = min(127, round-to-nearest-even(iscale * x)) (cvtps rounds to even under the default MXCSR).
void q8_k_from_float_avx2(const float* src, void* dst, int64_t n) {
  check_blocks(DType::Q8_K, n, kQK_K, "from_float");
  BlockQ8_K* b = static_cast<BlockQ8_K*>(dst);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < n / kQK_K; ++i, src += kQK_K) {
    // Four independent max chains (one would serialise 32 maxes on their latency).
    __m256 m[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    for (int j = 0; j < kQK_K; j += 32)
      for (int k = 0; k < 4; ++k)  // NaNs skipped: max returns its second operand on NaN
        m[k] = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(src + j + 8 * k), abs_mask), m[k]);
    const float amax = hmax(_mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])));
    if (amax == 0) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The first element of largest magnitude (its sign sets the scale's), 8 at a time.
    int first = 0;
    const __m256 am = _mm256_set1_ps(amax);
    for (int j = 0; j < kQK_K; j += 8) {
      const int hit = _mm256_movemask_ps(
          _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(src + j), abs_mask), am, _CMP_EQ_OQ));
      if (hit) {
        first = j + __builtin_ctz(static_cast<unsigned>(hit));
        break;
      }
    }
    const float iscale = -127.0f / src[first];
    const __m256 is = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127);
    for (int j = 0; j < kQK_K; j += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k)
        q[k] = _mm256_min_epi32(
            _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(src + j + 8 * k))), cap);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs + j),
                          pack_i32_to_i8(q[0], q[1], q[2], q[3]));
    }
    for (int j = 0; j < 16; ++j) {
      // Sum of 16 codes: maddubs by ones pairs them, madd by ones makes 4-sums, two hadds finish.
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs + 16 * j));
      const __m128i s4 = _mm_madd_epi16(_mm_maddubs_epi16(_mm_set1_epi8(1), q), _mm_set1_epi16(1));
      const __m128i s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
      const __m128i s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, _MM_SHUFFLE(2, 3, 0, 1)));
      b[i].bsums[j] = static_cast<int16_t>(_mm_cvtsi128_si32(s1));
    }
    b[i].d = 1.0f / iscale;
  }
}

// Q4_K / Q5_K sub-block scales and the min term sum_j mn[j] * (bsums[2j] + bsums[2j + 1]).
inline int k4_scales_and_mins(const uint8_t* scales, const int16_t* bsums, uint8_t sc[8]) {
  int summs = 0;
  uint8_t mn[8];
  scale_min_k4(scales, sc, mn);
  for (int j = 0; j < 8; ++j) summs += mn[j] * (bsums[2 * j] + bsums[2 * j + 1]);
  return summs;
}

// w is n/256 Q4_K blocks, a is n/256 Q8_K blocks. Per 64 elements p: one 32-byte load of qs gives
// sub-block 2p (low nibbles) and 2p + 1 (high nibbles); codes are in [0, 15].
float q4_k_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q4_K, n, kQK_K, "vec_dot");
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    uint8_t sc[8];
    const int summs = k4_scales_and_mins(x[i].scales, y[i].bsums, sc);
    __m256i isum = _mm256_setzero_si256();
    for (int p = 0; p < 4; ++p) {
      const __m256i q = load256(x[i].qs + 32 * p);
      const __m256i lo = _mm256_and_si256(q, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      const __m256i plo = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * p));
      const __m256i phi = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * p + 32));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * p])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * p + 1])));
    }
    const float d = f16(x[i].d) * y[i].d, dmin = f16(x[i].dmin) * y[i].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    mins += dmin * static_cast<float>(summs);
  }
  return hsum(acc) - mins;
}

// Q5_K: Q4_K's nibbles plus bit 2p (low half) / 2p + 1 (high half) of qh[l] as bit 4.
float q5_k_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q5_K, n, kQK_K, "vec_dot");
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    uint8_t sc[8];
    const int summs = k4_scales_and_mins(x[i].scales, y[i].bsums, sc);
    const __m256i qh = load256(x[i].qh);
    __m256i isum = _mm256_setzero_si256();
    for (int p = 0; p < 4; ++p) {
      const __m256i q = load256(x[i].qs + 32 * p);
      // Move bit 2p (resp. 2p + 1) of each qh byte to bit 4; 16-bit shifts are safe after masking.
      const __m256i hlo =
          _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * p), 4), bit4);
      const __m256i hhi =
          _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(qh, 2 * p + 1), 4), bit4);
      const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, low4), hlo);
      const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), hhi);
      const __m256i plo = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * p));
      const __m256i phi = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * p + 32));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * p])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * p + 1])));
    }
    const float d = f16(x[i].d) * y[i].d, dmin = f16(x[i].dmin) * y[i].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    mins += dmin * static_cast<float>(summs);
  }
  return hsum(acc) - mins;
}

// Q6_K: unsigned codes c in [0, 63] (the value is c - 32). sum sc * (c - 32) * y is computed as
// sum sc * c * y - 32 * sum_j sc[j] * bsums[j], the same integer. Each 32-element group spans
// sub-blocks 2k (low 128-bit lane) and 2k + 1 (high lane).
float q6_k_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q6_K, n, kQK_K, "vec_dot");
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const int8_t* s = x[i].scales;
    int offset = 0;
    for (int j = 0; j < 16; ++j) offset += s[j] * y[i].bsums[j];
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load256(x[i].ql + 64 * h), ql1 = load256(x[i].ql + 64 * h + 32);
      const __m256i qh = load256(x[i].qh + 32 * h);
      __m256i c[4];
      c[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4),
                             _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
      c[1] =
          _mm256_or_si256(_mm256_and_si256(ql1, low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4));
      c[2] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4));
      c[3] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4));
      for (int k = 0; k < 4; ++k) {
        const int sb = 8 * h + 2 * k;  // sub-block of the low lane
        const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(s[sb + 1]), _mm_set1_epi16(s[sb]));
        const __m256i p = _mm256_maddubs_epi16(c[k], load256(y[i].qs + 128 * h + 32 * k));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale));
      }
    }
    sum += f16(x[i].d) * y[i].d * static_cast<float>(hsum_i32(isum) - 32 * offset);
  }
  return sum;
}

// ---- f16 --------------------------------------------------------------------------------------

// w and a are n f16 values. 16 f32 lanes as the scalar reference, but fused multiply-adds; the
// f16 models' parity figures do not depend on this order (ggml's order was tried: no closer).
float f16_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const uint16_t* y = static_cast<const uint16_t*>(a);
  auto load = [](const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  };
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int64_t nv = n - n % 16;
  for (int64_t i = 0; i < nv; i += 16) {
    acc0 = _mm256_fmadd_ps(load(x + i), load(y + i), acc0);
    acc1 = _mm256_fmadd_ps(load(x + i + 8), load(y + i + 8), acc1);
  }
  double sum = hsum(_mm256_add_ps(acc0, acc1));
  for (int64_t i = nv; i < n; ++i) sum += static_cast<double>(f16(x[i]) * f16(y[i]));
  return static_cast<float>(sum);
}

// f16 <-> f32 with F16C, 8 lanes at a time (round to nearest even, as f32_to_f16); the tail
// and NaN payloads go through the scalar code.
void f16_to_float_avx2(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
}
void f16_from_float_avx2(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
      for (int64_t j = i; j < i + 8; ++j) d[j] = f32_to_f16(src[j]);
      continue;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) d[i] = f32_to_f16(src[i]);
}
// bf16 <-> f32: a shift up; down with round to nearest even (x + 0x7fff + lsb) >> 16. Lanes
// holding NaN go through the scalar code (keeps them NaN).
void bf16_to_float_avx2(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(w, 16));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}
void bf16_from_float_avx2(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
      for (int64_t j = i; j < i + 8; ++j) d[j] = f32_to_bf16(src[j]);
      continue;
    }
    const __m256i x = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), one);
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, bias), lsb), 16);
    // 8 x 32-bit -> 8 x 16-bit: pack within 128-bit lanes, then gather the two halves.
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_castsi256_si128(p));
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(src[i]);
}

}  // namespace

void apply_avx2_kernels(QuantKernels& row) {
  switch (row.type) {
    case DType::BF16:
      row.to_float = bf16_to_float_avx2;
      row.from_float = bf16_from_float_avx2;
      break;
    case DType::F16:
      row.vec_dot = f16_vec_dot_avx2;
      row.to_float = f16_to_float_avx2;
      row.from_float = f16_from_float_avx2;
      break;
    case DType::Q4_0:
      row.vec_dot = q4_0_vec_dot_avx2;
      break;
    case DType::Q8_0:
      row.vec_dot = q8_0_vec_dot_avx2;
      row.from_float = q8_0_from_float_avx2;
      break;
    case DType::Q4_K:
      row.vec_dot = q4_k_vec_dot_avx2;
      break;
    case DType::Q5_K:
      row.vec_dot = q5_k_vec_dot_avx2;
      break;
    case DType::Q6_K:
      row.vec_dot = q6_k_vec_dot_avx2;
      break;
    case DType::Q8_K:
      row.from_float = q8_k_from_float_avx2;
      break;
    default:
      break;
  }
}

}  // namespace brisk::kernels

#endif  // BRISK_X86_KERNELS
