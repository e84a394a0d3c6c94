// Block structs of the ggml/GGUF quantised formats, byte for byte, plus the small helpers the
// scalar kernels share. A row of n elements of a block type is n / block_size consecutive blocks;
// there is no padding anywhere (every struct has only 1- and 2-byte members, except Q8_K whose
// leading float makes its alignment 4 and its size 292, a multiple of 4).
//
// Legacy types (QK = 32) keep one f16 scale per 32 elements. In Q4_0/Q4_1/Q5_x, byte j of qs holds
// element j in its low nibble and element j + 16 in its high nibble; Q5_x keep the fifth bits in a
// little-endian 32-bit word qh whose bit j belongs to element j.
//
// k-quants (QK_K = 256) keep an f16 super-scale (and super-min) per 256 elements and small integer
// scales per 16- or 32-element sub-block; the exact bit positions are documented on each struct.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"

namespace brisk::kernels {

inline constexpr int kQK = 32;          // legacy block size
inline constexpr int kQK_K = 256;       // k-quant super-block size
inline constexpr int kKScaleSize = 12;  // packed 6-bit scales/mins of Q4_K/Q5_K, Q3_K scales

// x[j] = ((qs[j] & 15) - 8) * d, x[j + 16] = ((qs[j] >> 4) - 8) * d for j in [0, 16).
struct BlockQ4_0 {
  uint16_t d;  // f16
  uint8_t qs[kQK / 2];
};
// x = q * d + m with q in [0, 15], same nibble order as Q4_0.
struct BlockQ4_1 {
  uint16_t d;  // f16
  uint16_t m;  // f16
  uint8_t qs[kQK / 2];
};
// x = (q - 16) * d, q = nibble | (bit j of qh) << 4.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = q * d + m with q in [0, 31].
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = q * d, q in [-127, 127].
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// Activation type of Q4_1/Q5_1 dots: like Q8_0 plus s = d * sum(q) (f32 d, stored f16), so a
// weight's offset m contributes m * s without touching the quants.
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};

// Q2_K: 16 sub-blocks of 16. scales[i]: low nibble = scale, high nibble = min of sub-block i.
// x = d * (scales[i] & 15) * q - dmin * (scales[i] >> 4), q in [0, 3].
// Element order: within each 128-element half h, byte qs[32 h + l] holds at bit pair k (shift 2k)
// the element 128 h + 32 k + l, l in [0, 32); sub-block = element / 16.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;     // f16 super-scale of the scales
  uint16_t dmin;  // f16 super-scale of the mins
};
// Q3_K: 16 sub-blocks of 16, signed 6-bit scales stored with a +32 bias.
// x = d * (s_i - 32) * (q - 4), q = low2 | high << 2 with low2 packed like Q2_K's qs and the high
// bit of element e at bit (e / 32) of hmask[e % 32].
// Scale i: low 4 bits in scales[i] & 15 (i < 8) or scales[i - 8] >> 4 (i >= 8); high 2 bits at
// (scales[8 + i % 4] >> (2 * (i / 4))) & 3.
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[kKScaleSize];
  uint16_t d;
};
// Q4_K: 8 sub-blocks of 32 with 6-bit scale and min (see get_scale_min_k4).
// x = d * sc * q - dmin * mn, q in [0, 15]. Element 64 p + l (l < 32) is the low nibble of
// qs[32 p + l], element 64 p + 32 + l its high nibble.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qs[kQK_K / 2];
};
// Q5_K: Q4_K plus a fifth bit: element 64 p + l has it at bit 2p of qh[l], element 64 p + 32 + l
// at bit 2p + 1.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// Q6_K: 16 sub-blocks of 16 with int8 scales. x = d * scales[e / 16] * (q - 32), q in [0, 63].
// In each 128-element half h (ql += 64 h, qh += 32 h), for l < 32:
//   e = 128h + l      : ql[l] & 15,      bits 0-1 of qh[l]
//   e = 128h + 32 + l : ql[l + 32] & 15, bits 2-3
//   e = 128h + 64 + l : ql[l] >> 4,      bits 4-5
//   e = 128h + 96 + l : ql[l + 32] >> 4, bits 6-7
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
// Activation type of the k-quant dots: f32 scale, int8 quants, and the sums of each 16 quants
// (bsums) so that mins cost 16 multiplies per block.
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// Round to nearest, ties to even (what ggml's nearest_int does through the 1.5 * 2^23 trick);
// valid for |x| < 2^22, which every caller guarantees by clamping its scale.
inline int nearest_int(float x) {
  const float v = x + 12582912.0f;  // 1.5 * 2^23: the sum's low mantissa bits are round(x)
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

inline float fp16(uint16_t h) {
  return f16_to_f32(h);
}

// Branch-free f16 -> f32 with the same values as f16_to_f32 (NaNs stay NaN, quieted), so loops
// over halves vectorise. Normal/inf/nan: exponent+mantissa moved into an f32 with its exponent
// raised by 224, then multiplied by 2^-112 (net rebias 15 -> 127, exact). Subnormal: mantissa m
// placed under the exponent of 0.5 gives 0.5 + m * 2^-24; subtracting 0.5 leaves m * 2^-24 exactly.
inline float fp16_branchless(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;  // sign shifted out; exponent at bits 27..31
  const float normal = bits_to_f32((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float subnormal = bits_to_f32((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t is_sub = 0u - static_cast<uint32_t>(two_w < (1u << 27));  // all ones or zero
  const uint32_t mag = (f32_to_bits(subnormal) & is_sub) | (f32_to_bits(normal) & ~is_sub);
  return bits_to_f32(sign | mag);
}

// Q4_K / Q5_K: 8 six-bit scales and mins in 12 bytes. Sub-blocks 0..3 keep scale and min in the
// low 6 bits of bytes j and j + 4; sub-blocks 4..7 keep their low 4 bits in the nibbles of byte
// j + 4 and their top 2 bits in the top 2 bits of bytes j - 4 (scale) and j (min).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}
// Inverse of get_scale_min_k4 for all 8 sub-blocks; sc and mn are in [0, 63].
void pack_scale_min_k4(const uint8_t sc[8], const uint8_t mn[8], uint8_t q[kKScaleSize]);

// Q3_K: 16 biased 6-bit scales (value + 32 in [0, 63]) <-> 12 bytes.
void unpack_scales_q3_k(const uint8_t q[kKScaleSize], int8_t out[16]);  // out = value (unbiased)
void pack_scales_q3_k(const int8_t in[16], uint8_t q[kKScaleSize]);     // in in [-32, 31]

// Elements per block of the types with kernels here (a constant for a constant t, so the check
// below folds to one test of n per call).
constexpr int64_t kernel_block_size(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q8_1:
      return kQK;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q8_K:
      return kQK_K;
    default:
      return 1;
  }
}
[[noreturn]] void fail_block_multiple(DType t, int64_t n, const char* what);
// Throws brisk::Error unless n is a non-negative multiple of t's block size; `what` names the call.
inline void check_block_multiple(DType t, int64_t n, const char* what) {
  if (n < 0 || n % kernel_block_size(t) != 0) [[unlikely]]
    fail_block_multiple(t, n, what);
}

// ---- per-type kernels (scalar reference) -------------------------------------------------------
// Shapes: src/dst hold n elements (n a multiple of the block size) as n / block_size blocks.

void f32_to_float(const void* src, float* dst, int64_t n);
void f32_from_float(const float* src, void* dst, int64_t n);
float f32_vec_dot(int64_t n, const void* w, const void* a);
void f16_to_float(const void* src, float* dst, int64_t n);
void f16_from_float(const float* src, void* dst, int64_t n);
float f16_vec_dot(int64_t n, const void* w, const void* a);
void bf16_to_float(const void* src, float* dst, int64_t n);
void bf16_from_float(const float* src, void* dst, int64_t n);
float bf16_vec_dot(int64_t n, const void* w, const void* a);

void q4_0_to_float(const void* src, float* dst, int64_t n);
void q4_0_from_float(const float* src, void* dst, int64_t n);
float q4_0_vec_dot(int64_t n, const void* w, const void* a);  // a is Q8_0
void q4_1_to_float(const void* src, float* dst, int64_t n);
void q4_1_from_float(const float* src, void* dst, int64_t n);
float q4_1_vec_dot(int64_t n, const void* w, const void* a);  // a is Q8_1
void q5_0_to_float(const void* src, float* dst, int64_t n);
void q5_0_from_float(const float* src, void* dst, int64_t n);
// Importance-weighted scale search (brisk quantize --imatrix); importance == nullptr is from_float.
void q4_0_quantize(const float* src, void* dst, int64_t n, const float* importance);
void q5_0_quantize(const float* src, void* dst, int64_t n, const float* importance);
float q5_0_vec_dot(int64_t n, const void* w, const void* a);  // a is Q8_0
void q5_1_to_float(const void* src, float* dst, int64_t n);
void q5_1_from_float(const float* src, void* dst, int64_t n);
float q5_1_vec_dot(int64_t n, const void* w, const void* a);  // a is Q8_1
void q8_0_to_float(const void* src, float* dst, int64_t n);
void q8_0_from_float(const float* src, void* dst, int64_t n);
float q8_0_vec_dot(int64_t n, const void* w, const void* a);  // a is Q8_0
void q8_1_to_float(const void* src, float* dst, int64_t n);
void q8_1_from_float(const float* src, void* dst, int64_t n);
float q8_1_vec_dot(int64_t n, const void* w, const void* a);  // a is Q8_1

// k-quant quantisers take an optional per-element importance (length n, repeating every row the
// caller passes; nullptr = the default weighting). The FromFloatFn entries pass nullptr.
void q2_k_quantize(const float* src, void* dst, int64_t n, const float* importance);
void q3_k_quantize(const float* src, void* dst, int64_t n, const float* importance);
void q4_k_quantize(const float* src, void* dst, int64_t n, const float* importance);
void q5_k_quantize(const float* src, void* dst, int64_t n, const float* importance);
void q6_k_quantize(const float* src, void* dst, int64_t n, const float* importance);

void q2_k_to_float(const void* src, float* dst, int64_t n);
void q2_k_from_float(const float* src, void* dst, int64_t n);
float q2_k_vec_dot(int64_t n, const void* w, const void* a);  // a is Q8_K
void q3_k_to_float(const void* src, float* dst, int64_t n);
void q3_k_from_float(const float* src, void* dst, int64_t n);
float q3_k_vec_dot(int64_t n, const void* w, const void* a);
void q4_k_to_float(const void* src, float* dst, int64_t n);
void q4_k_from_float(const float* src, void* dst, int64_t n);
float q4_k_vec_dot(int64_t n, const void* w, const void* a);
void q5_k_to_float(const void* src, float* dst, int64_t n);
void q5_k_from_float(const float* src, void* dst, int64_t n);
float q5_k_vec_dot(int64_t n, const void* w, const void* a);
void q6_k_to_float(const void* src, float* dst, int64_t n);
void q6_k_from_float(const float* src, void* dst, int64_t n);
float q6_k_vec_dot(int64_t n, const void* w, const void* a);
void q8_k_to_float(const void* src, float* dst, int64_t n);
void q8_k_from_float(const float* src, void* dst, int64_t n);
float q8_k_vec_dot(int64_t n, const void* w, const void* a);  // a is Q8_K

}  // namespace brisk::kernels
