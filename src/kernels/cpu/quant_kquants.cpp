// k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): decoding, dots against Q8_K, and the Q8_K activation
// type itself. The quantisers (scale searches) live in quant_kquants_search.cpp.
//
// Each weight type has one `unpack_*` that turns a 256-element block into its integer codes in
// element order plus per-sub-block integer scales (and mins); to_float and vec_dot both go through
// it, so the bit layout is written down once. Dots then do what ggml's CPU backend does: integer
// sums of code * activation per sub-block, times the integer sub-scale, summed over the block in
// int32, and scaled once per block by d_w * d_a (mins use the Q8_K bsums, i.e. sum of 16 codes).
#include <algorithm>
#include <cmath>

#include "kernels/cpu/quant_blocks.h"

namespace brisk::kernels {
namespace {

// Sum of products of n int8 pairs (n <= 32, so int32 cannot overflow).
inline int dot_i8(const int8_t* a, const int8_t* b, int n) {
  int s = 0;
  for (int l = 0; l < n; ++l) s += a[l] * b[l];
  return s;
}

// Q2_K codes: e = 128 h + 32 k + l lives in qs[32 h + l] at bit pair k.
void unpack_2bit(const uint8_t* qs, int8_t* q) {
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l)
        q[128 * h + 32 * k + l] = static_cast<int8_t>((qs[32 * h + l] >> (2 * k)) & 3);
}

// Q3_K: signed codes q - 4 in [-4, 3]; the high bit of e is bit e / 32 of hmask[e % 32].
void unpack_q3_k(const BlockQ3_K& b, int8_t* q, int8_t* sc) {
  unpack_2bit(b.qs, q);
  for (int k = 0; k < 8; ++k)  // element 32 k + l: bit k of hmask[l]
    for (int l = 0; l < 32; ++l)
      q[32 * k + l] = static_cast<int8_t>(q[32 * k + l] - (((b.hmask[l] >> k) & 1) ? 0 : 4));
  unpack_scales_q3_k(b.scales, sc);
}

// Q4_K / Q5_K low nibbles: e = 64 p + l in qs[32 p + l] & 15, e = 64 p + 32 + l in its high nibble.
void unpack_4bit_k(const uint8_t* qs, int8_t* q) {
  for (int p = 0; p < 4; ++p)
    for (int l = 0; l < 32; ++l) {
      q[64 * p + l] = static_cast<int8_t>(qs[32 * p + l] & 0xF);
      q[64 * p + 32 + l] = static_cast<int8_t>(qs[32 * p + l] >> 4);
    }
}

void unpack_q5_k(const BlockQ5_K& b, int8_t* q) {
  unpack_4bit_k(b.qs, q);
  for (int p = 0; p < 4; ++p)
    for (int l = 0; l < 32; ++l) {
      q[64 * p + l] = static_cast<int8_t>(q[64 * p + l] | (((b.qh[l] >> (2 * p)) & 1) << 4));
      q[64 * p + 32 + l] =
          static_cast<int8_t>(q[64 * p + 32 + l] | (((b.qh[l] >> (2 * p + 1)) & 1) << 4));
    }
}

// Q6_K: signed codes q - 32 in [-32, 31]; see BlockQ6_K for the bit positions.
void unpack_q6_k(const BlockQ6_K& b, int8_t* q) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    int8_t* o = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      o[l] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
      o[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      o[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      o[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
}

void unpack_scale_min_k4(const uint8_t* scales, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 8; ++j) get_scale_min_k4(j, scales, sc[j], mn[j]);
}

}  // namespace

// ---- Q2_K -------------------------------------------------------------------------------------

void q2_k_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q2_K, n, "to_float");
  const BlockQ2_K* b = static_cast<const BlockQ2_K*>(src);
  int8_t q[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16(b[i].d), dmin = fp16(b[i].dmin);
    unpack_2bit(b[i].qs, q);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(b[i].scales[j] & 0xF);
      const float ml = dmin * static_cast<float>(b[i].scales[j] >> 4);
      for (int l = 0; l < 16; ++l) dst[16 * j + l] = dl * static_cast<float>(q[16 * j + l]) - ml;
    }
  }
}

float q2_k_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q2_K, n, "vec_dot");
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K];
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_2bit(x[i].qs, q);
    int isum = 0, summs = 0;
    for (int j = 0; j < 16; ++j) {
      isum += (x[i].scales[j] & 0xF) * dot_i8(q + 16 * j, y[i].qs + 16 * j, 16);
      summs += (x[i].scales[j] >> 4) * y[i].bsums[j];
    }
    const float dall = y[i].d * fp16(x[i].d), dmin = y[i].d * fp16(x[i].dmin);
    sum += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
  }
  return sum;
}

// ---- Q3_K -------------------------------------------------------------------------------------

void q3_k_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q3_K, n, "to_float");
  const BlockQ3_K* b = static_cast<const BlockQ3_K*>(src);
  int8_t q[kQK_K], sc[16];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16(b[i].d);
    unpack_q3_k(b[i], q, sc);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(sc[j]);
      for (int l = 0; l < 16; ++l) dst[16 * j + l] = dl * static_cast<float>(q[16 * j + l]);
    }
  }
}

float q3_k_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q3_K, n, "vec_dot");
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K], sc[16];
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_q3_k(x[i], q, sc);
    int isum = 0;
    for (int j = 0; j < 16; ++j) isum += sc[j] * dot_i8(q + 16 * j, y[i].qs + 16 * j, 16);
    sum += fp16(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sum;
}

// ---- Q4_K -------------------------------------------------------------------------------------

void q4_k_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q4_K, n, "to_float");
  const BlockQ4_K* b = static_cast<const BlockQ4_K*>(src);
  int8_t q[kQK_K];
  uint8_t sc[8], mn[8];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16(b[i].d), dmin = fp16(b[i].dmin);
    unpack_4bit_k(b[i].qs, q);
    unpack_scale_min_k4(b[i].scales, sc, mn);
    for (int j = 0; j < 8; ++j) {
      const float dl = d * static_cast<float>(sc[j]), ml = dmin * static_cast<float>(mn[j]);
      for (int l = 0; l < 32; ++l) dst[32 * j + l] = dl * static_cast<float>(q[32 * j + l]) - ml;
    }
  }
}

namespace {
// Shared by Q4_K and Q5_K once the codes are unpacked: 8 sub-blocks of 32.
inline float dot_k4_block(const int8_t* q, const uint8_t* scales, uint16_t d16, uint16_t dmin16,
                          const BlockQ8_K& y) {
  uint8_t sc[8], mn[8];
  unpack_scale_min_k4(scales, sc, mn);
  int isum = 0, summs = 0;
  for (int j = 0; j < 8; ++j) {
    isum += sc[j] * dot_i8(q + 32 * j, y.qs + 32 * j, 32);
    summs += mn[j] * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
  }
  const float d = fp16(d16) * y.d, dmin = fp16(dmin16) * y.d;
  return d * static_cast<float>(isum) - dmin * static_cast<float>(summs);
}
}  // namespace

float q4_k_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q4_K, n, "vec_dot");
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K];
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_4bit_k(x[i].qs, q);
    sum += dot_k4_block(q, x[i].scales, x[i].d, x[i].dmin, y[i]);
  }
  return sum;
}

// ---- Q5_K -------------------------------------------------------------------------------------

void q5_k_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q5_K, n, "to_float");
  const BlockQ5_K* b = static_cast<const BlockQ5_K*>(src);
  int8_t q[kQK_K];
  uint8_t sc[8], mn[8];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16(b[i].d), dmin = fp16(b[i].dmin);
    unpack_q5_k(b[i], q);
    unpack_scale_min_k4(b[i].scales, sc, mn);
    for (int j = 0; j < 8; ++j) {
      const float dl = d * static_cast<float>(sc[j]), ml = dmin * static_cast<float>(mn[j]);
      for (int l = 0; l < 32; ++l) dst[32 * j + l] = dl * static_cast<float>(q[32 * j + l]) - ml;
    }
  }
}

float q5_k_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q5_K, n, "vec_dot");
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K];
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_q5_k(x[i], q);
    sum += dot_k4_block(q, x[i].scales, x[i].d, x[i].dmin, y[i]);
  }
  return sum;
}

// ---- Q6_K -------------------------------------------------------------------------------------

void q6_k_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q6_K, n, "to_float");
  const BlockQ6_K* b = static_cast<const BlockQ6_K*>(src);
  int8_t q[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K) {
    const float d = fp16(b[i].d);
    unpack_q6_k(b[i], q);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(b[i].scales[j]);
      for (int l = 0; l < 16; ++l) dst[16 * j + l] = dl * static_cast<float>(q[16 * j + l]);
    }
  }
}

float q6_k_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q6_K, n, "vec_dot");
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  int8_t q[kQK_K];
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    unpack_q6_k(x[i], q);
    int isum = 0;
    for (int j = 0; j < 16; ++j) isum += x[i].scales[j] * dot_i8(q + 16 * j, y[i].qs + 16 * j, 16);
    sum += fp16(x[i].d) * y[i].d * static_cast<float>(isum);
  }
  return sum;
}

// ---- Q8_K (activations of the k-quants) -------------------------------------------------------
// As ggml's reference: the signed element of largest magnitude maps to -127 exactly, d = 1/iscale
// kept in f32, q = nearest_int(x * iscale) (ties to even) capped at 127, bsums = sums of 16 codes.

void q8_k_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::Q8_K, n, "to_float");
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i, dst += kQK_K)
    for (int j = 0; j < kQK_K; ++j) dst[j] = b[i].d * static_cast<float>(b[i].qs[j]);
}

void q8_k_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::Q8_K, n, "from_float");
  BlockQ8_K* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i, src += kQK_K) {
    float amax = 0, mx = 0;
    for (int j = 0; j < kQK_K; ++j)
      if (std::fabs(src[j]) > amax) {
        amax = std::fabs(src[j]);
        mx = src[j];
      }
    if (amax == 0) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / mx;
    for (int j = 0; j < kQK_K; ++j)
      b[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * src[j])));
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += b[i].qs[16 * j + l];
      b[i].bsums[j] = static_cast<int16_t>(s);
    }
    b[i].d = 1.0f / iscale;
  }
}

float q8_k_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::Q8_K, n, "vec_dot");
  const BlockQ8_K* x = static_cast<const BlockQ8_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int isum = 0;
    for (int j = 0; j < kQK_K; j += 32) isum += dot_i8(x[i].qs + j, y[i].qs + j, 32);
    sum += x[i].d * y[i].d * static_cast<float>(isum);
  }
  return sum;
}

}  // namespace brisk::kernels
