// AVX2 + FMA + F16C helpers shared by the kernel files (quant_avx2.cpp, quant_extra_avx2.cpp,
// and the 256-bit parts of quant_extra_avx512.cpp). Include this header only from files compiled
// with those instructions enabled (*_avx2.cpp, *_avx512.cpp): every function here is in an
// anonymous namespace for the reason given in quant_isa_helpers.h, so each including file gets its
// own private copy.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

namespace brisk::kernels {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float f16(uint16_t h) {
  return _cvtsh_ss(h);  // exact, like fp16()
}

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// 32 signed int8 pairs -> 8 int32 lanes, each the sum of 4 products (x, y in [-127, 127]).
inline __m256i dot_i8(__m256i x, __m256i y) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// Four vectors of 8 int32 (each in [-128, 127]) -> 32 int8 in order.
inline __m256i pack_i32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // per 128-bit lane: a0-3 b0-3 | a4-7 b4-7
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);  // 4-byte groups: a0 b0 c0 d0 a1 b1 c1 d1
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One 32-float block of the Q8_0 / Q8_1 activation quantiser, with the scalar quantize_q8's
// arithmetic: d = amax / 127, id = 1 / d, q = round half away from zero of x * id, done as trunc
// plus a correction from the exact fraction. Writes the 32 codes to qs and returns d (f32);
// *sums gets the sum of the codes in 8 int32 lanes (Q8_1's s; Q8_0 ignores it).
inline float quantize_q8_block(const float* src, int8_t* qs, __m256i* sums) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 half = _mm256_set1_ps(0.5f), neg_half = _mm256_set1_ps(-0.5f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(src + 8 * k);
    amax = _mm256_max_ps(_mm256_and_ps(v[k], abs_mask), amax);  // NaNs skipped, as std::max
  }
  const float d = hmax(amax) / 127.0f;
  const __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 x = _mm256_mul_ps(v[k], id);
    const __m256i t = _mm256_cvttps_epi32(x);
    const __m256 frac = _mm256_sub_ps(x, _mm256_cvtepi32_ps(t));
    const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(frac, half, _CMP_GE_OQ));
    const __m256i down = _mm256_castps_si256(_mm256_cmp_ps(frac, neg_half, _CMP_LE_OQ));
    q[k] = _mm256_add_epi32(_mm256_sub_epi32(t, up), down);  // masks are -1 where true
  }
  *sums = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
  return d;
}

// f(std::integral_constant<int, 0>{}), ..., f(std::integral_constant<int, N - 1>{}): a loop
// unrolled in the source, so that shift counts and shuffle indices that depend on the index are
// immediates. (-O2 does not unroll a loop whose body would grow the code, and a shift by a
// register count costs an extra uop and a register.)
template <int N, class F>
inline void unroll(F&& f) {
  [&]<int... K>(std::integer_sequence<int, K...>) {
    (f(std::integral_constant<int, K>{}), ...);
  }
  (std::make_integer_sequence<int, N>{});
}

// The 32 4-bit codes of a Q4_x / Q5_x block (qs, 16 bytes) in element order: low nibbles
// (elements 0-15) in the low 128-bit lane, high nibbles (16-31) in the high lane. The 16 bytes are
// broadcast to both lanes straight from memory and the high lane shifted right by 4 with a
// per-qword variable shift, so no shuffle-port uop is needed.
inline __m256i nibbles(const uint8_t* qs) {
  const __m256i q =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi64(q, _mm256_setr_epi64x(0, 0, 4, 4)),
                          _mm256_set1_epi8(0x0F));
}

// Bit j of a Q5_x block's little-endian 32-bit qh as byte j (element order as nibbles()): 0xFF
// where the bit is set, 0 elsewhere. Byte j takes byte j / 8 of the broadcast word and tests it
// against 1 << (j % 8).
inline __m256i fifth_bits(const uint8_t* qh) {
  uint32_t u;
  std::memcpy(&u, qh, 4);
  const __m256i pick = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202,
                                          0x0303030303030303);  // per-lane byte indices
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(u)), pick);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// Q3_K's 16 six-bit scales (see BlockQ3_K) as 16 int8 values in [-32, 31], in sub-block order.
// Dword lanes: scales 0-3 and 8-11 have their low 4 bits in bytes 0-3 (low, high nibbles),
// 4-7 and 12-15 in bytes 4-7; the top 2 bits of scales 4g..4g+3 are bits 2g, 2g+1 of bytes 8-11.
inline __m128i q3_k_scales(const uint8_t* s) {
  int64_t u01;
  int32_t u2;
  std::memcpy(&u01, s, 8);
  std::memcpy(&u2, s + 8, 4);
  const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi64x(u01), _mm_setr_epi32(0, 0, 4, 4)),
                                   _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(u2), _mm_setr_epi32(0, 2, 4, 6)),
                                   _mm_set1_epi8(0x03));
  return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi32(hi, 4)), _mm_set1_epi8(32));
}

// Runs step(i, acc) for every block i, alternating between two accumulators: a 32-element block
// is only ~12 uops, less than the 4-cycle latency of the float chain it feeds, so one chain would
// bound the loop.
template <class Acc, class Step>
inline void two_chains(int64_t nb, Acc& a0, Acc& a1, Step step) {
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    step(i, a0);
    step(i + 1, a1);
  }
  if (i < nb) step(i, a0);
}

// Lane 0: the product of the f16 at x and the f16 at y; lane 1: the same of the f16 that follow
// them (both blocks must have 4 bytes there). A 32-bit load straight into a vector register and
// one conversion per operand, where a scalar f16 load would insert into a register on the shuffle
// port. Q4_1 / Q5_1 blocks start with (d, m) and Q8_1 blocks with (d, s = d * sum q), so for them
// this is {dx * dy, mx * sy}.
inline __m128 scale_product(const void* x, const void* y) {
  int32_t u, v;
  std::memcpy(&u, x, 4);
  std::memcpy(&v, y, 4);
  return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(u)), _mm_cvtph_ps(_mm_cvtsi32_si128(v)));
}

// Float state of a Q4_1 / Q5_1 dot: v accumulates the integer lanes times dx * dy, lane 1 of m
// the offsets mx * sy (lane 0 of m collects the dx * dy, unused).
struct Acc1 {
  __m256 v;
  __m128 m;
};

// Adds the integer lanes p of one block with its scales s (scale_product) into acc.
inline void add_block_x1(__m256i p, __m128 s, Acc1& acc) {
  acc.v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(s), acc.v);
  acc.m = _mm_add_ps(acc.m, s);
}

inline float finish_x1(const Acc1& a0, const Acc1& a1) {
  const __m128 m = _mm_add_ps(a0.m, a1.m);
  return hsum(_mm256_add_ps(a0.v, a1.v)) + _mm_cvtss_f32(_mm_movehdup_ps(m));
}

}  // namespace
}  // namespace brisk::kernels
