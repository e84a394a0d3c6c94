// AVX-512 (F + BW + VL) kernels, with and without VNNI, for the types quant_avx512.cpp does not
// cover: the dots of Q4_1, Q5_0, Q5_1, Q2_K, Q3_K and BF16. Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c (see CMakeLists.txt).
// apply_avx512_extra_kernels is the only entry point; the dispatcher calls it only after
// cpu_supports(Isa::Avx512) and lays these over the AVX2 row, so a type not handled here keeps
// its AVX2 kernel. The plain variant must not execute a VNNI instruction: the kernels are
// templates on kVnni and only kVnni = true instantiations use vpdpbusd / vpdpwssd.
//
// A kernel is registered only where the micro-benchmark (bench/kernels, 4096-element rows in
// cache) showed it faster than the AVX2 one on the development Xeon; medians in ns, avx2 ->
// avx512 / avx512vnni: BF16 196 -> 168, Q4_1 160 -> (AVX2) / 147,
// Q5_0 232 -> 214 / 198, Q5_1 225 -> 194 / 178, Q2_K 106 -> (AVX2) / 95, Q3_K 141 -> 131 / 118.
//
// Integer sums inside a block are exactly the scalar reference's; only the order of the float
// additions differs.
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

#include "kernels/cpu/quant_avx2_helpers.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_isa_helpers.h"

namespace brisk::kernels {
namespace {

// Only internal-linkage helpers (quant_isa_helpers.h, quant_avx2_helpers.h) and always-inline
// intrinsics are called from this file; see quant_isa_helpers.h for why.

inline __m512i load512(const void* p) {
  return _mm512_loadu_si512(p);
}

// acc + the 8 int32 lanes of sum over groups of 4 of u * s (u unsigned, s signed int8).
template <bool kVnni>
inline __m256i dot_u8_acc(__m256i acc, __m256i u, __m256i s) {
  if constexpr (kVnni) {
    return _mm256_dpbusd_epi32(acc, u, s);
  } else {
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }
}

// acc + sum over pairs of (c * y pair sums, int16) * scale (int16): k-quant sub-block scaling.
template <bool kVnni>
inline __m512i dot_scaled_acc(__m512i acc, __m512i c, __m512i y, __m512i scale16) {
  const __m512i p16 = _mm512_maddubs_epi16(c, y);
  if constexpr (kVnni) {
    return _mm512_dpwssd_epi32(acc, p16, scale16);
  } else {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(p16, scale16));
  }
}

// Bit j of a Q5_x block's 32-bit qh as bit j of a mask register (a plain 32-bit load).
inline __mmask32 fifth_bits_mask(const uint8_t* qh) {
  uint32_t u;
  std::memcpy(&u, qh, 4);
  return _cvtu32_mask32(u);
}

// ---- legacy: 256-bit registers ----------------------------------------------------------------
// The AVX2 kernels with the fifth bits applied from a mask register (one masked byte add instead
// of a broadcast, shuffle, and, compare and or) and, with VNNI, vpdpbusd for maddubs + madd.
// Register width stays 256: a 32-byte block fills one register (see quant_avx512.cpp on why
// pairing blocks in 512-bit registers lost).

// w is n/32 Q4_1 blocks, a is n/32 Q8_1 blocks; codes in [0, 15]. Registered only with VNNI:
// without it this is the AVX2 kernel.
template <bool kVnni>
float q4_1_vec_dot_avx512(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q4_1, n, kQK, "vec_dot");
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  Acc1 a0{}, a1{};
  two_chains(n / kQK, a0, a1, [&](int64_t i, Acc1& acc) {
    const __m256i p = dot_u8_acc<kVnni>(_mm256_setzero_si256(), nibbles(x[i].qs), load256(y[i].qs));
    add_block_x1(p, scale_product(&x[i].d, &y[i].d), acc);
  });
  return finish_x1(a0, a1);
}

// w is n/32 Q5_1 blocks, a is n/32 Q8_1 blocks; codes nibble + 16 * fifth bit in [0, 31].
template <bool kVnni>
float q5_1_vec_dot_avx512(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q5_1, n, kQK, "vec_dot");
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  const __m256i sixteen = _mm256_set1_epi8(16);
  Acc1 a0{}, a1{};
  two_chains(n / kQK, a0, a1, [&](int64_t i, Acc1& acc) {
    const __m256i nib = nibbles(x[i].qs);
    const __m256i c = _mm256_mask_add_epi8(nib, fifth_bits_mask(x[i].qh), nib, sixteen);
    const __m256i p = dot_u8_acc<kVnni>(_mm256_setzero_si256(), c, load256(y[i].qs));
    add_block_x1(p, scale_product(&x[i].d, &y[i].d), acc);
  });
  return finish_x1(a0, a1);
}

// w is n/32 Q5_0 blocks, a is n/32 Q8_0 blocks; signed codes nibble - 16 where the fifth bit is
// clear, the nibble where it is set, in [-16, 15]. Signs move to y (|c| is the unsigned operand).
template <bool kVnni>
float q5_0_vec_dot_avx512(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q5_0, n, kQK, "vec_dot");
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  const __m256i sixteen = _mm256_set1_epi8(16);
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  two_chains(n / kQK, a0, a1, [&](int64_t i, __m256& acc) {
    const __m256i nib = nibbles(x[i].qs);
    const __m256i c =
        _mm256_mask_sub_epi8(nib, _knot_mask32(fifth_bits_mask(x[i].qh)), nib, sixteen);
    const __m256i yv = load256(y[i].qs);
    const __m256i p =
        dot_u8_acc<kVnni>(_mm256_setzero_si256(), _mm256_sign_epi8(c, c), _mm256_sign_epi8(yv, c));
    const __m256 d = _mm256_broadcastss_ps(scale_product(&x[i].d, &y[i].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, acc);
  });
  return hsum(_mm256_add_ps(a0, a1));
}

// ---- k-quants: 512-bit registers ---------------------------------------------------------------
// Register m (0-3) holds elements 64m + [0, 64), so the activations are one plain 64-byte load
// and the four 128-bit lanes are sub-blocks 4m + [0, 4). Those elements are, in half h = m / 2,
// bit pairs k = 2 (m % 2) (lanes 0-1) and k + 1 (lanes 2-3) of the 32 qs bytes of that half: the
// 32 bytes are broadcast to both 256-bit halves from memory and shifted by a per-qword count,
// which keeps the shuffle port (the only one for 512-bit shuffles and inserts) for the scales.

// Per-qword shift counts: a in the low 256 bits, b in the high 256 bits.
inline __m512i counts(int a, int b) {
  return _mm512_set_epi64(b, b, b, b, a, a, a, a);
}

inline __m512i broadcast256(const uint8_t* p) {
  return _mm512_broadcast_i64x4(load256(p));
}

// w is n/256 Q2_K blocks, a is n/256 Q8_K blocks. Codes in [0, 3]; the 4-bit scales are picked
// per lane by pshufb from the 16 scale bytes broadcast to every lane; mins through the bsums.
// Registered only with VNNI: without it this measured within noise of the AVX2 kernel (and a
// 256-bit VNNI version the same as this one).
template <bool kVnni>
float q2_k_vec_dot_avx512(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q2_K, n, kQK_K, "vec_dot");
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m512i low2 = _mm512_set1_epi8(0x03), low4 = _mm512_set1_epi8(0x0F);
  // int16 lanes of scale byte L in 128-bit lane L (0x80 zeroes the high byte); + 4m per register
  const __m512i pick = _mm512_set_epi64(
      static_cast<int64_t>(0x8003800380038003), static_cast<int64_t>(0x8003800380038003),
      static_cast<int64_t>(0x8002800280028002), static_cast<int64_t>(0x8002800280028002),
      static_cast<int64_t>(0x8001800180018001), static_cast<int64_t>(0x8001800180018001),
      static_cast<int64_t>(0x8000800080008000), static_cast<int64_t>(0x8000800080008000));
  __m512 acc = _mm512_setzero_ps();
  __m256 acc_min = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    const __m512i sc = _mm512_and_si512(_mm512_broadcast_i32x4(raw), low4);
    const __m256i mn =
        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
    const __m256i mins = _mm256_madd_epi16(mn, load256(y[i].bsums));
    __m512i isum = _mm512_setzero_si512();
    unroll<4>([&](auto m) {
      const int k = 2 * (m % 2);
      const __m512i q = broadcast256(x[i].qs + 32 * (m / 2));
      const __m512i c = _mm512_and_si512(_mm512_srlv_epi64(q, counts(2 * k, 2 * k + 2)), low2);
      const __m512i s16 = _mm512_shuffle_epi8(sc, _mm512_add_epi8(pick, _mm512_set1_epi8(4 * m)));
      isum = dot_scaled_acc<kVnni>(isum, c, load512(y[i].qs + 64 * m), s16);
    });
    const float d = y[i].d * _cvtsh_ss(x[i].d), dmin = y[i].d * _cvtsh_ss(x[i].dmin);
    acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(isum), acc);
    acc_min = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(mins), acc_min);
  }
  return _mm512_reduce_add_ps(acc) - hsum(acc_min);
}

// Q3_K's high bits of register m: bit k = 2m of each hmask byte (low 256 bits) and bit k + 1
// (high 256 bits) moved to bit 2, other bits 0 (64-bit shifts: bit 2 of each byte comes from
// bit k of the same byte).
template <int m>
inline __m512i q3_k_high_bits(__m512i hm) {
  const __m512i bit2 = _mm512_set1_epi8(0x04);
  if constexpr (m == 0) return _mm512_and_si512(_mm512_sllv_epi64(hm, counts(2, 1)), bit2);
  if constexpr (m > 0)
    return _mm512_and_si512(_mm512_srlv_epi64(hm, counts(2 * m - 2, 2 * m - 1)), bit2);
}

// w is n/256 Q3_K blocks, a is n/256 Q8_K blocks. Codes c = low2 | high bit << 2 in [0, 7], value
// c - 4, applied once per block as - 4 sum_j sc_j bsums_j (as the AVX2 kernel). The int16
// scales 0-7 (registers 0-1) and 8-15 (registers 2-3) are broadcast to every lane and pshufb
// picks int16 4 (m % 2) + L for lane L.
template <bool kVnni>
float q3_k_vec_dot_avx512(int64_t n, const void* w, const void* a) {
  check_blocks(DType::Q3_K, n, kQK_K, "vec_dot");
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const __m512i low2 = _mm512_set1_epi8(0x03);
  const __m512i pick = _mm512_set_epi64(0x0706070607060706, 0x0706070607060706,   // lane 3
                                        0x0504050405040504, 0x0504050405040504,   // lane 2
                                        0x0302030203020302, 0x0302030203020302,   // lane 1
                                        0x0100010001000100, 0x0100010001000100);  // lane 0
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const __m256i s16 = _mm256_cvtepi8_epi16(q3_k_scales(x[i].scales));  // 0-7 | 8-15
    const __m256i offset = _mm256_madd_epi16(s16, load256(y[i].bsums));
    const __m512i s_half[2] = {_mm512_broadcast_i32x4(_mm256_castsi256_si128(s16)),
                               _mm512_broadcast_i32x4(_mm256_extracti128_si256(s16, 1))};
    const __m512i hm = broadcast256(x[i].hmask);
    // starts at - 4 sum_j sc_j bsums_j (in the low 8 lanes)
    __m512i isum = _mm512_zextsi256_si512(
        _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 2)));
    unroll<4>([&](auto m) {
      const int k = 2 * (m % 2);
      const __m512i q = broadcast256(x[i].qs + 32 * (m / 2));
      const __m512i c =
          _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi64(q, counts(2 * k, 2 * k + 2)), low2),
                          q3_k_high_bits<decltype(m)::value>(hm));
      const __m512i sc =
          _mm512_shuffle_epi8(s_half[m / 2], _mm512_add_epi8(pick, _mm512_set1_epi8(8 * (m % 2))));
      isum = dot_scaled_acc<kVnni>(isum, c, load512(y[i].qs + 64 * m), sc);
    });
    const float d = _cvtsh_ss(x[i].d) * y[i].d;
    acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(isum), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// ---- bf16: 512-bit registers ------------------------------------------------------------------
// F32 has no kernel here: its 512-bit version (4 chains of 16 lanes) was 1.45x faster than AVX2
// with both rows 64-byte aligned but slower with both at 32 mod 64 (GGUF aligns tensors to 32),
// where each 64-byte load splits a cache line; over the 16 alignments of two 16-byte-aligned rows
// it averaged 153 ns against AVX2's 159. BF16 reads half the weight bytes per lane and won in all
// 16 (mean 162 against 190).

// 16 bf16 (a 256-bit register) -> 16 f32: zero-extend to 32 bits and shift into the top half.
inline __m512 bf16x16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// w is n bf16 values, a is n floats; as the f32 dot, the tail through masked loads.
float bf16_vec_dot_avx512(int64_t n, const void* w, const void* a) {
  check_blocks(DType::BF16, n, 1, "vec_dot");
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const float* y = static_cast<const float*>(a);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    unroll<4>([&](auto k) {
      acc[k] = _mm512_fmadd_ps(bf16x16(load256(x + i + 16 * k)), _mm512_loadu_ps(y + i + 16 * k),
                               acc[k]);
    });
  for (; i + 16 <= n; i += 16)
    acc[0] = _mm512_fmadd_ps(bf16x16(load256(x + i)), _mm512_loadu_ps(y + i), acc[0]);
  if (i < n) {
    const __mmask16 m = _cvtu32_mask16((1u << (n - i)) - 1);
    acc[1] = _mm512_fmadd_ps(bf16x16(_mm256_maskz_loadu_epi16(m, x + i)),
                             _mm512_maskz_loadu_ps(m, y + i), acc[1]);
  }
  return _mm512_reduce_add_ps(
      _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

template <bool kVnni>
void apply(QuantKernels& row) {
  switch (row.type) {
    case DType::BF16:
      row.vec_dot = bf16_vec_dot_avx512;
      break;
    case DType::Q4_1:
      if constexpr (kVnni) row.vec_dot = q4_1_vec_dot_avx512<true>;
      break;
    case DType::Q5_0:
      row.vec_dot = q5_0_vec_dot_avx512<kVnni>;
      break;
    case DType::Q5_1:
      row.vec_dot = q5_1_vec_dot_avx512<kVnni>;
      break;
    case DType::Q2_K:
      if constexpr (kVnni) row.vec_dot = q2_k_vec_dot_avx512<true>;
      break;
    case DType::Q3_K:
      row.vec_dot = q3_k_vec_dot_avx512<kVnni>;
      break;
    default:
      break;
  }
}

}  // namespace

void apply_avx512_extra_kernels(QuantKernels& row, bool vnni) {
  if (vnni)
    apply<true>(row);
  else
    apply<false>(row);
}

}  // namespace brisk::kernels

#endif  // BRISK_X86_KERNELS
