// Legacy 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the activation type Q8_1.
//
// Quantisers follow ggml's reference behaviour, because activations (Q8_0, Q8_1) must round
// exactly as ggml does for our logits to match its logits:
//   Q4_0/Q5_0: d = m / -8 (resp. -16) where m is the signed element of largest magnitude, so m maps
//              to the most negative code exactly and q = trunc(x / d + 8.5) clamped to 15 (31);
//   Q4_1/Q5_1: d = (max - min) / 15 (31), offset m = min, q = trunc((x - min) / d + 0.5);
//   Q8_0:      d = amax / 127, q = roundf(x / d) (half away from zero), d stored f16;
//   Q8_1:      as Q8_0 plus s = d * sum(q) with the f32 d, stored f16.
// Dots sum integer products inside each block and scale once per block, as ggml does.
// Known difference: ggml's AVX2/AVX-512 builds quantise Q8_0/Q8_1 activations with id = 127/amax
// and ties-to-even rounding instead of the reference's 1/d and roundf; the codes differ only where
// x * id lands within an ulp of k + 0.5, which moves a logit by far less than float noise.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/quant_blocks.h"

namespace brisk::kernels {
namespace {

template <class B>
const B* blocks(const void* p) {
  return static_cast<const B*>(p);
}
template <class B>
B* blocks(void* p) {
  return static_cast<B*>(p);
}

// 5-bit codes of a Q5 block in element order: low nibble from qs, fifth bit j from qh.
inline void unpack_q5(const uint8_t* qs, uint32_t qh, int8_t* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>((qs[j] & 0xF) | (((qh >> j) & 1u) << 4));
    q[j + 16] = static_cast<int8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
  }
}

inline uint32_t load_qh(const uint8_t qh[4]) {
  return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 |
         static_cast<uint32_t>(qh[2]) << 16 | static_cast<uint32_t>(qh[3]) << 24;
}
inline void store_qh(uint32_t v, uint8_t qh[4]) {
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(v >> (8 * k));
}

// Signed element of largest magnitude (the first one on ties), 0 for an all-zero block.
inline float signed_absmax(const float* x, int n) {
  float amax = 0, m = 0;
  for (int j = 0; j < n; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      m = x[j];
    }
  return m;
}

// Symmetric quantisation with a signed scale: codes in [0, 2 * half - 1], x ~ (q - half) * d.
inline float quantize_sym(const float* x, int half, int* q) {
  const float m = signed_absmax(x, kQK);
  const float d = m / static_cast<float>(-half);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j)
    q[j] = std::min(2 * half - 1, static_cast<int>(static_cast<int8_t>(x[j] * id + (half + 0.5f))));
  return d;
}

// Asymmetric quantisation: codes in [0, levels], x ~ q * d + min.
inline void quantize_asym(const float* x, int levels, int* q, float& d, float& mn) {
  float lo = x[0], hi = x[0];
  for (int j = 1; j < kQK; ++j) {
    lo = std::min(lo, x[j]);
    hi = std::max(hi, x[j]);
  }
  d = (hi - lo) / static_cast<float>(levels);
  mn = lo;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j)
    q[j] = std::min(levels, static_cast<int>(static_cast<uint8_t>((x[j] - lo) * id + 0.5f)));
}

inline void pack_nibbles(const int* q, uint8_t qs[16]) {
  for (int j = 0; j < 16; ++j)
    qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}
inline uint32_t fifth_bits(const int* q) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK; ++j) qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
  return qh;
}

// roundf (half away from zero) for |v| < 2^23 without a libm call, so the loop vectorises:
// truncation is exact and so is the fraction v - trunc(v).
inline int round_half_away(float v) {
  const int t = static_cast<int>(v);
  const float frac = v - static_cast<float>(t);
  return t + (frac >= 0.5f) - (frac <= -0.5f);
}

// Q8 activation quantiser shared by Q8_0 and Q8_1; returns the f32 scale and fills qs.
inline float quantize_q8(const float* x, int8_t* qs, int& sum) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  sum = 0;
  for (int j = 0; j < kQK; ++j) {
    qs[j] = static_cast<int8_t>(round_half_away(x[j] * id));
    sum += qs[j];
  }
  return d;
}

}  // namespace

// ---- Q4_0 -------------------------------------------------------------------------------------

void q4_0_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q4_0, n, "to_float");
  const BlockQ4_0* b = blocks<BlockQ4_0>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16(b[i].d);
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>((b[i].qs[j] & 0xF) - 8) * d;
      dst[j + 16] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void q4_0_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::Q4_0, n, "from_float");
  BlockQ4_0* b = blocks<BlockQ4_0>(dst);
  int q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    b[i].d = f32_to_f16(quantize_sym(src, 8, q));
    pack_nibbles(q, b[i].qs);
  }
}

float q4_0_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q4_0, n, "vec_dot");
  const BlockQ4_0* x = blocks<BlockQ4_0>(w);
  const BlockQ8_0* y = blocks<BlockQ8_0>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j)
      sumi += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
    sum += static_cast<float>(sumi) * (fp16(x[i].d) * fp16(y[i].d));
  }
  return sum;
}

// ---- Q4_1 -------------------------------------------------------------------------------------

void q4_1_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q4_1, n, "to_float");
  const BlockQ4_1* b = blocks<BlockQ4_1>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16(b[i].d), m = fp16(b[i].m);
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>(b[i].qs[j] & 0xF) * d + m;
      dst[j + 16] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void q4_1_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::Q4_1, n, "from_float");
  BlockQ4_1* b = blocks<BlockQ4_1>(dst);
  int q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    float d, mn;
    quantize_asym(src, 15, q, d, mn);
    b[i].d = f32_to_f16(d);
    b[i].m = f32_to_f16(mn);
    pack_nibbles(q, b[i].qs);
  }
}

float q4_1_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q4_1, n, "vec_dot");
  const BlockQ4_1* x = blocks<BlockQ4_1>(w);
  const BlockQ8_1* y = blocks<BlockQ8_1>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j)
      sumi += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
    // sum_j (q_j d_x + m)(p_j d_y) = d_x d_y sumi + m * (d_y sum_j p_j), the latter being y.s.
    sum += (fp16(x[i].d) * fp16(y[i].d)) * static_cast<float>(sumi) + fp16(x[i].m) * fp16(y[i].s);
  }
  return sum;
}

// ---- Q5_0 -------------------------------------------------------------------------------------

void q5_0_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q5_0, n, "to_float");
  const BlockQ5_0* b = blocks<BlockQ5_0>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16(b[i].d);
    int8_t q[kQK];
    unpack_q5(b[i].qs, load_qh(b[i].qh), q);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(q[j] - 16) * d;
  }
}

void q5_0_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::Q5_0, n, "from_float");
  BlockQ5_0* b = blocks<BlockQ5_0>(dst);
  int q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    b[i].d = f32_to_f16(quantize_sym(src, 16, q));
    pack_nibbles(q, b[i].qs);
    store_qh(fifth_bits(q), b[i].qh);
  }
}

float q5_0_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q5_0, n, "vec_dot");
  const BlockQ5_0* x = blocks<BlockQ5_0>(w);
  const BlockQ8_0* y = blocks<BlockQ8_0>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int8_t q[kQK];
    unpack_q5(x[i].qs, load_qh(x[i].qh), q);
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += (q[j] - 16) * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16(x[i].d) * fp16(y[i].d));
  }
  return sum;
}

// ---- Q5_1 -------------------------------------------------------------------------------------

void q5_1_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q5_1, n, "to_float");
  const BlockQ5_1* b = blocks<BlockQ5_1>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16(b[i].d), m = fp16(b[i].m);
    int8_t q[kQK];
    unpack_q5(b[i].qs, load_qh(b[i].qh), q);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(q[j]) * d + m;
  }
}

void q5_1_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::Q5_1, n, "from_float");
  BlockQ5_1* b = blocks<BlockQ5_1>(dst);
  int q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    float d, mn;
    quantize_asym(src, 31, q, d, mn);
    b[i].d = f32_to_f16(d);
    b[i].m = f32_to_f16(mn);
    pack_nibbles(q, b[i].qs);
    store_qh(fifth_bits(q), b[i].qh);
  }
}

float q5_1_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q5_1, n, "vec_dot");
  const BlockQ5_1* x = blocks<BlockQ5_1>(w);
  const BlockQ8_1* y = blocks<BlockQ8_1>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int8_t q[kQK];
    unpack_q5(x[i].qs, load_qh(x[i].qh), q);
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += q[j] * y[i].qs[j];
    sum += (fp16(x[i].d) * fp16(y[i].d)) * static_cast<float>(sumi) + fp16(x[i].m) * fp16(y[i].s);
  }
  return sum;
}

// ---- Q8_0 -------------------------------------------------------------------------------------

// Q8_0 and Q8_1 decode the same way (Q8_1's extra sum is only used by dot products).
template <class B>
void q8_blocks_to_float(DType t, const void* src, float* dst, int64_t n) {
  check_block_multiple(t, n, "to_float");
  const B* b = blocks<B>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16(b[i].d);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void q8_0_to_float(const void* src, float* dst, int64_t n) {
  q8_blocks_to_float<BlockQ8_0>(DType::Q8_0, src, dst, n);
}

void q8_0_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::Q8_0, n, "from_float");
  BlockQ8_0* b = blocks<BlockQ8_0>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    int sum;
    b[i].d = f32_to_f16(quantize_q8(src, b[i].qs, sum));
  }
}

float q8_0_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q8_0, n, "vec_dot");
  const BlockQ8_0* x = blocks<BlockQ8_0>(w);
  const BlockQ8_0* y = blocks<BlockQ8_0>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16(x[i].d) * fp16(y[i].d));
  }
  return sum;
}

// ---- Q8_1 (activations of Q4_1 / Q5_1) --------------------------------------------------------

void q8_1_to_float(const void* src, float* dst, int64_t n) {
  q8_blocks_to_float<BlockQ8_1>(DType::Q8_1, src, dst, n);
}

void q8_1_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::Q8_1, n, "from_float");
  BlockQ8_1* b = blocks<BlockQ8_1>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK) {
    int sum;
    const float d = quantize_q8(src, b[i].qs, sum);
    b[i].d = f32_to_f16(d);
    b[i].s = f32_to_f16(static_cast<float>(sum) * d);
  }
}

float q8_1_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q8_1, n, "vec_dot");
  const BlockQ8_1* x = blocks<BlockQ8_1>(w);
  const BlockQ8_1* y = blocks<BlockQ8_1>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16(x[i].d) * fp16(y[i].d));
  }
  return sum;
}

}  // namespace brisk::kernels

// ---- importance-weighted Q4_0 / Q5_0 (brisk quantize --imatrix) ---------------------------------

namespace brisk::kernels {
namespace {

// Symmetric block fit minimising sum_i w_i (x_i - d (q_i - half))^2: candidate inverse scales
// around the one that maps the extreme element to -half, the least-squares d for each candidate's
// codes, the best kept; d is then rounded to f16 and the codes recomputed against it.
float weighted_sym(const float* x, const float* imp, int half, int* q) {
  float s2 = 0;
  for (int j = 0; j < kQK; ++j) s2 += x[j] * x[j];
  const float sigma2 = 2.0f * s2 / kQK;
  float w[kQK];
  for (int j = 0; j < kQK; ++j) w[j] = imp[j] * std::sqrt(sigma2 + x[j] * x[j]);
  const float m = signed_absmax(x, kQK);
  if (m == 0) {
    for (int j = 0; j < kQK; ++j) q[j] = half;
    return 0;
  }
  float best = -1, best_d = m / static_cast<float>(-half);
  for (int step = -9; step <= 9; ++step) {
    const float id = -(static_cast<float>(half) + 0.1f * static_cast<float>(step)) / m;
    float sxl = 0, sll = 0;
    for (int j = 0; j < kQK; ++j) {
      const int l = std::clamp(static_cast<int>(std::lround(x[j] * id)), -half, half - 1);
      sxl += w[j] * x[j] * static_cast<float>(l);
      sll += w[j] * static_cast<float>(l * l);
    }
    if (sll > 0 && sxl * sxl / sll > best) {
      best = sxl * sxl / sll;
      best_d = sxl / sll;
    }
  }
  const float d = fp16(f32_to_f16(best_d));
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK; ++j)
    q[j] = std::clamp(static_cast<int>(std::lround(x[j] * id)), -half, half - 1) + half;
  return d;
}

}  // namespace

void q4_0_quantize(const float* src, void* dst, int64_t n, const float* importance) {
  if (!importance) return q4_0_from_float(src, dst, n);
  check_block_multiple(DType::Q4_0, n, "from_float");
  BlockQ4_0* b = blocks<BlockQ4_0>(dst);
  int q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK, importance += kQK) {
    b[i].d = f32_to_f16(weighted_sym(src, importance, 8, q));
    pack_nibbles(q, b[i].qs);
  }
}

void q5_0_quantize(const float* src, void* dst, int64_t n, const float* importance) {
  if (!importance) return q5_0_from_float(src, dst, n);
  check_block_multiple(DType::Q5_0, n, "from_float");
  BlockQ5_0* b = blocks<BlockQ5_0>(dst);
  int q[kQK];
  for (int64_t i = 0; i < n / kQK; ++i, src += kQK, importance += kQK) {
    b[i].d = f32_to_f16(weighted_sym(src, importance, 16, q));
    pack_nibbles(q, b[i].qs);
    store_qh(fifth_bits(q), b[i].qh);
  }
}

}  // namespace brisk::kernels
