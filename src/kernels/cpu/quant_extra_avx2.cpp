// AVX2 + FMA + F16C kernels for the storage types quant_avx2.cpp does not cover: the dots of
// Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, BF16 and F32, and the Q8_1 activation quantiser. Compiled with
// -mavx2 -mfma -mf16c (see CMakeLists.txt); apply_avx2_extra_kernels is the only entry point and
// the dispatcher calls it only after cpu_supports(Isa::Avx2).
//
// As in quant_avx2.cpp: integer sums inside a block are exactly the scalar reference's
// (quant_legacy.cpp, quant_kquants.cpp), only the order of the float additions differs, and
// Q8_1 blocks are byte-identical to the scalar quantiser's. Codes that are non-negative go into
// maddubs (u8 x s8) as they are; signed ones use |x| and sign(y, x), exact as no code is -128.
#include "kernels/cpu/quant_isa.h"

#ifdef BRISK_X86_KERNELS
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/quant_avx2_helpers.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_isa_helpers.h"

namespace brisk::kernels {
namespace {

// Only internal-linkage helpers (quant_isa_helpers.h, quant_avx2_helpers.h) and always-inline
// intrinsics are called from this file; see quant_isa_helpers.h for why.

// ---- legacy -----------------------------------------------------------------------------------

// w is n/32 Q4_1 blocks, a is n/32 Q8_1 blocks. Codes c in [0, 15]: sum (c dx + mx)(q dy) =
// dx dy sum c q + mx sy.
float q4_1_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q4_1, n, kQK, "vec_dot");
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  const __m256i ones = _mm256_set1_epi16(1);
  Acc1 a0{}, a1{};
  two_chains(n / kQK, a0, a1, [&](int64_t i, Acc1& acc) {
    const __m256i p16 = _mm256_maddubs_epi16(nibbles(x[i].qs), load256(y[i].qs));
    add_block_x1(_mm256_madd_epi16(p16, ones), scale_product(&x[i].d, &y[i].d), acc);
  });
  return finish_x1(a0, a1);
}

// w is n/32 Q5_1 blocks, a is n/32 Q8_1 blocks. Codes c = nibble | fifth bit << 4 in [0, 31].
float q5_1_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q5_1, n, kQK, "vec_dot");
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  const __m256i ones = _mm256_set1_epi16(1), bit4 = _mm256_set1_epi8(0x10);
  Acc1 a0{}, a1{};
  two_chains(n / kQK, a0, a1, [&](int64_t i, Acc1& acc) {
    const __m256i c =
        _mm256_or_si256(nibbles(x[i].qs), _mm256_and_si256(fifth_bits(x[i].qh), bit4));
    const __m256i p16 = _mm256_maddubs_epi16(c, load256(y[i].qs));
    add_block_x1(_mm256_madd_epi16(p16, ones), scale_product(&x[i].d, &y[i].d), acc);
  });
  return finish_x1(a0, a1);
}

// w is n/32 Q5_0 blocks, a is n/32 Q8_0 blocks. The value (nibble | fifth bit << 4) - 16 is the
// nibble itself where the fifth bit is set and nibble - 16 = nibble | 0xF0 (as int8) where it is
// clear, so one andnot and one or give the signed codes in [-16, 15].
float q5_0_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q5_0, n, kQK, "vec_dot");
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  const __m256i high4 = _mm256_set1_epi8(static_cast<char>(0xF0));
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  two_chains(n / kQK, a0, a1, [&](int64_t i, __m256& acc) {
    const __m256i c =
        _mm256_or_si256(nibbles(x[i].qs), _mm256_andnot_si256(fifth_bits(x[i].qh), high4));
    const __m256i p = dot_i8(c, load256(y[i].qs));
    const __m256 d = _mm256_broadcastss_ps(scale_product(&x[i].d, &y[i].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, acc);
  });
  return hsum(_mm256_add_ps(a0, a1));
}

// Q8_1 as the scalar q8_1_from_float: the Q8_0 codes and d, plus s = f16(d * sum of the codes).
void q8_1_from_float_avx2(const float* src, void* dst, int64_t n) {
  check_blocks(DType::Q8_1, n, kQK, "from_float");
  BlockQ8_1* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    __m256i sums;
    const float d = quantize_q8_block(src, b[i].qs, &sums);
    b[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);  // RNE, as f32_to_f16
    b[i].s = _cvtss_sh(static_cast<float>(hsum_i32(sums)) * d, _MM_FROUND_TO_NEAREST_INT);
  }
}

// ---- k-quants ---------------------------------------------------------------------------------

// pshufb indices that make 16 int16 of byte 0 of the source lane in the low 128-bit lane and of
// byte 1 in the high lane (0x80 zeroes the high bytes). Adding b to every byte moves them to
// bytes b and b + 1 and keeps the 0x80 entries zeroing (b < 16).
inline __m256i pair_bytes_to_i16() {
  return _mm256_setr_epi64x(
      static_cast<int64_t>(0x8000800080008000), static_cast<int64_t>(0x8000800080008000),
      static_cast<int64_t>(0x8001800180018001), static_cast<int64_t>(0x8001800180018001));
}

// w is n/256 Q2_K blocks, a is n/256 Q8_K blocks. In half h one 32-byte load of qs holds, at bit
// pair k, the codes (in [0, 3]) of elements 128 h + 32 k + [0, 32): sub-block 8 h + 2 k in the low
// 128-bit lane, 8 h + 2 k + 1 in the high lane. Each sub-block's maddubs pair sums are scaled by
// its 4-bit scale (a pshufb of the broadcast scale bytes) in madd; the mins go through the bsums.
float q2_k_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q2_K, n, kQK_K, "vec_dot");
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low2 = _mm256_set1_epi8(0x03), low4 = _mm256_set1_epi8(0x0F);
  const __m256i pick = pair_bytes_to_i16();
  __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    const __m256i sc = _mm256_and_si256(_mm256_broadcastsi128_si256(raw), low4);
    // sum_j min_j * bsums_j in 8 int32 lanes
    const __m256i mn =
        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
    const __m256i mins = _mm256_madd_epi16(mn, load256(y[i].bsums));
    __m256i isum = _mm256_setzero_si256();
    unroll<2>([&](auto h) {
      const __m256i q = load256(x[i].qs + 32 * h);
      unroll<4>([&](auto k) {
        const __m256i c = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), low2);
        const __m256i p16 = _mm256_maddubs_epi16(c, load256(y[i].qs + 128 * h + 32 * k));
        const __m256i s16 =
            _mm256_shuffle_epi8(sc, _mm256_add_epi8(pick, _mm256_set1_epi8(8 * h + 2 * k)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p16, s16));
      });
    });
    const float d = y[i].d * f16(x[i].d), dmin = y[i].d * f16(x[i].dmin);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    acc_min = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(mins), acc_min);
  }
  return hsum(_mm256_sub_ps(acc, acc_min));
}

// Q3_K's high bit of element 32 k + l (bit k of hmask[l]) moved to bit 2 of byte l, other bits 0.
// 16-bit shifts are safe: bit 2 of each byte comes from bit k of the same byte.
template <int k>
inline __m256i q3_k_high_bit(__m256i hm) {
  const __m256i bit2 = _mm256_set1_epi8(0x04);
  if constexpr (k < 2) return _mm256_and_si256(_mm256_slli_epi16(hm, 2 - k), bit2);
  if constexpr (k == 2) return _mm256_and_si256(hm, bit2);
  if constexpr (k > 2) return _mm256_and_si256(_mm256_srli_epi16(hm, k - 2), bit2);
}

// w is n/256 Q3_K blocks, a is n/256 Q8_K blocks. Codes c = low2 | high bit << 2 in [0, 7] are
// laid out as Q2_K's (half h, bit pair k: sub-blocks 8 h + 2 k and 8 h + 2 k + 1 in the two
// 128-bit lanes); the value is c - 4, so sum_j sc_j sum (c - 4) y = sum_j sc_j sum c y -
// 4 sum_j sc_j bsums_j, the same integer. The signed 6-bit scales are sign-extended to int16 once
// per block, each 128-bit lane's half broadcast to both lanes, and picked per sub-block by pshufb.
float q3_k_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q3_K, n, kQK_K, "vec_dot");
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low2 = _mm256_set1_epi8(0x03);
  // int16 j of the low lane, j + 1 of the high lane, after adding 2 j to every byte
  const __m256i pick = _mm256_setr_epi64x(0x0100010001000100, 0x0100010001000100,
                                          0x0302030203020302, 0x0302030203020302);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const __m256i s16 = _mm256_cvtepi8_epi16(q3_k_scales(x[i].scales));  // 0-7 | 8-15
    const __m256i offset = _mm256_madd_epi16(s16, load256(y[i].bsums));
    const __m256i s_half[2] = {_mm256_permute4x64_epi64(s16, 0x44),
                               _mm256_permute4x64_epi64(s16, 0xEE)};
    const __m256i hm = load256(x[i].hmask);
    __m256i isum = _mm256_setzero_si256();
    unroll<2>([&](auto h) {
      const __m256i q = load256(x[i].qs + 32 * h);
      unroll<4>([&](auto k) {
        const __m256i c =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), low2),
                            q3_k_high_bit<4 * decltype(h)::value + decltype(k)::value>(hm));
        const __m256i p16 = _mm256_maddubs_epi16(c, load256(y[i].qs + 128 * h + 32 * k));
        const __m256i sc =
            _mm256_shuffle_epi8(s_half[h], _mm256_add_epi8(pick, _mm256_set1_epi8(4 * k)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p16, sc));
      });
    });
    isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(offset, 2));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

// ---- f32 / bf16 -------------------------------------------------------------------------------

// Mask of the first r (< 8) int32 lanes, for maskload.
inline __m256i first_lanes(int64_t r) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// w and a are n floats. Four chains of 8 lanes of fused multiply-adds (the scalar reference has
// 16 lanes of separate multiply and add), the last n % 8 elements through masked loads.
float f32_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::F32, n, 1, "vec_dot");
  const float* x = static_cast<const float*>(w);
  const float* y = static_cast<const float*>(a);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    unroll<4>([&](auto k) {
      acc[k] =
          _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * k), _mm256_loadu_ps(y + i + 8 * k), acc[k]);
    });
  for (; i + 8 <= n; i += 8)
    acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc[0]);
  if (i < n) {
    const __m256i m = first_lanes(n - i);
    acc[1] = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m), acc[1]);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

// 8 bf16 -> 8 f32: bf16 is the top half of an f32, so zero-extend to 32 bits and shift up.
inline __m256 bf16x8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// w is n bf16 values, a is n floats (BF16's vec_dot_type is F32, see quant_float.cpp). As the f32
// dot; the last n % 8 weights are copied into a zeroed buffer, their activations masked.
float bf16_vec_dot_avx2(int64_t n, const void* w, const void* a) {
  check_blocks(DType::BF16, n, 1, "vec_dot");
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const float* y = static_cast<const float*>(a);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    unroll<4>([&](auto k) {
      acc[k] = _mm256_fmadd_ps(bf16x8(x + i + 8 * k), _mm256_loadu_ps(y + i + 8 * k), acc[k]);
    });
  for (; i + 8 <= n; i += 8)
    acc[0] = _mm256_fmadd_ps(bf16x8(x + i), _mm256_loadu_ps(y + i), acc[0]);
  if (i < n) {
    uint16_t tail[8] = {};
    std::memcpy(tail, x + i, static_cast<size_t>(n - i) * sizeof(uint16_t));
    acc[1] = _mm256_fmadd_ps(bf16x8(tail), _mm256_maskload_ps(y + i, first_lanes(n - i)), acc[1]);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

}  // namespace

void apply_avx2_extra_kernels(QuantKernels& row) {
  switch (row.type) {
    case DType::F32:
      row.vec_dot = f32_vec_dot_avx2;
      break;
    case DType::BF16:
      row.vec_dot = bf16_vec_dot_avx2;
      break;
    case DType::Q4_1:
      row.vec_dot = q4_1_vec_dot_avx2;
      break;
    case DType::Q5_0:
      row.vec_dot = q5_0_vec_dot_avx2;
      break;
    case DType::Q5_1:
      row.vec_dot = q5_1_vec_dot_avx2;
      break;
    case DType::Q8_1:
      row.from_float = q8_1_from_float_avx2;
      break;
    case DType::Q2_K:
      row.vec_dot = q2_k_vec_dot_avx2;
      break;
    case DType::Q3_K:
      row.vec_dot = q3_k_vec_dot_avx2;
      break;
    default:
      break;
  }
}

}  // namespace brisk::kernels

#endif  // BRISK_X86_KERNELS
