// Per-type scale decoding and code packing of one block (see block_grid.h). The bit positions are
// those documented on the structs in kernels/cpu/quant_blocks.h; the scale arithmetic copies the
// expressions of the scalar to_float kernels (quant_legacy.cpp, quant_kquants.cpp), e.g. Q4_K's
// value is (d * sc) * l - dmin * mn there and (d * sc) * l + -(dmin * mn) here: the same IEEE
// operations, so the grid reproduces to_float exactly.
#include "quant/block_grid.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/quant_blocks.h"

namespace brisk::quant {
namespace {

using namespace brisk::kernels;  // block structs and the small decoding helpers

[[noreturn]] void unsupported(DType t) {
  fail("block grid: storage type ", dtype_name(t),
       " is not supported (q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K are)");
}

// ---- legacy types: one f16 scale (and min) per 32 elements -----------------------------------

// Element e of a 32-element nibble block: low nibble of qs[e] (e < 16), high nibble of qs[e - 16].
inline int nibble(const uint8_t* qs, int e) {
  return e < 16 ? (qs[e] & 0xF) : (qs[e - 16] >> 4);
}
inline void put_nibbles(const int* q, uint8_t* qs) {
  for (int j = 0; j < 16; ++j)
    qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}
inline uint32_t load_qh(const uint8_t qh[4]) {
  return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 |
         static_cast<uint32_t>(qh[2]) << 16 | static_cast<uint32_t>(qh[3]) << 24;
}
inline void put_qh(const int* q, uint8_t qh[4]) {
  uint32_t v = 0;
  for (int e = 0; e < kQK; ++e) v |= static_cast<uint32_t>((q[e] >> 4) & 1) << e;
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(v >> (8 * k));
}

// ---- k-quant bit positions -------------------------------------------------------------------

// Q2_K / Q3_K low two bits: element 128 h + 32 k + l is bit pair k of qs[32 h + l].
inline int two_bits(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}
void put_two_bits(const int* c, uint8_t* qs) {
  std::memset(qs, 0, kQK_K / 4);
  for (int e = 0; e < kQK_K; ++e)
    qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>((c[e] & 3) << (2 * ((e % 128) / 32)));
}
// Q4_K / Q5_K low nibble: element 64 p + l (l < 32) low nibble of qs[32 p + l], 64 p + 32 + l high.
inline int k4_nibble(const uint8_t* qs, int e) {
  const uint8_t b = qs[32 * (e / 64) + e % 32];
  return (e % 64) < 32 ? (b & 0xF) : (b >> 4);
}
void put_k4_nibbles(const int* c, uint8_t* qs) {
  for (int p = 0; p < 4; ++p)
    for (int l = 0; l < 32; ++l)
      qs[32 * p + l] =
          static_cast<uint8_t>((c[64 * p + l] & 0xF) | ((c[64 * p + 32 + l] & 0xF) << 4));
}
// Q5_K fifth bit: element 64 p + l at bit 2 p of qh[l], element 64 p + 32 + l at bit 2 p + 1.
inline int k5_high(const uint8_t* qh, int e) {
  return (qh[e % 32] >> (2 * (e / 64) + ((e % 64) / 32))) & 1;
}
void put_k5_high(const int* c, uint8_t* qh) {
  std::memset(qh, 0, kQK_K / 8);
  for (int e = 0; e < kQK_K; ++e)
    qh[e % 32] |= static_cast<uint8_t>(((c[e] >> 4) & 1) << (2 * (e / 64) + ((e % 64) / 32)));
}
// Q6_K: element 128 h + 32 s + l (s in 0..3): ql[64 h + l + 32 (s & 1)] nibble (s >> 1), high two
// bits at bit pair s of qh[32 h + l].
inline int q6_code(const BlockQ6_K& b, int e) {
  const int h = e / 128, s = (e % 128) / 32, l = e % 32;
  const uint8_t ql = b.ql[64 * h + l + 32 * (s & 1)];
  const int low = (s >> 1) ? (ql >> 4) : (ql & 0xF);
  return low | (((b.qh[32 * h + l] >> (2 * s)) & 3) << 4);
}
void put_q6_codes(const int* c, BlockQ6_K& b) {
  std::memset(b.ql, 0, sizeof(b.ql));
  std::memset(b.qh, 0, sizeof(b.qh));
  for (int e = 0; e < kQK_K; ++e) {
    const int h = e / 128, s = (e % 128) / 32, l = e % 32;
    b.ql[64 * h + l + 32 * (s & 1)] |= static_cast<uint8_t>((c[e] & 0xF) << (4 * (s >> 1)));
    b.qh[32 * h + l] |= static_cast<uint8_t>(((c[e] >> 4) & 3) << (2 * s));
  }
}

// Q3_K: low two bits as Q2_K; the third bit of element e is bit e / 32 of hmask[e % 32].
inline int q3_high(const uint8_t* hmask, int e) {
  return (hmask[e % 32] >> (e / 32)) & 1;
}
void put_q3_high(const int* c, uint8_t* hmask) {
  std::memset(hmask, 0, kQK_K / 8);
  for (int e = 0; e < kQK_K; ++e)
    hmask[e % 32] |= static_cast<uint8_t>(((c[e] >> 2) & 1) << (e / 32));
}
int8_t q3_scale(const uint8_t* scales, int j) {
  int8_t sc[16];
  unpack_scales_q3_k(scales, sc);
  return sc[j];
}

// Code that from_float writes where every value is zero (its step is 0 too): l = 0, except for the
// types whose all-zero block is all-zero bytes with a biased code (Q3_K: l = -4, Q6_K: l = -32).
int zero_code(DType t) {
  switch (t) {
    case DType::Q3_K:
      return -4;
    case DType::Q6_K:
      return -32;
    default:
      return 0;
  }
}

}  // namespace

int nearest_code(const ElementGrid& g, float x) {
  if (g.step == 0) return std::min(g.hi, std::max(g.lo, 0));
  float v = (x - g.offset) / g.step;
  // Clamp first (NaN -> lo): nearest_int is exact only for |v| < 2^22.
  if (!(v >= static_cast<float>(g.lo))) v = static_cast<float>(g.lo);
  if (!(v <= static_cast<float>(g.hi))) v = static_cast<float>(g.hi);
  return nearest_int(v);
}

bool has_block_grid(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

int64_t grid_block_size(DType t) {
  if (!has_block_grid(t)) unsupported(t);
  return kernel_block_size(t);
}

ElementGrid element_grid(DType t, const void* block, int64_t i) {
  const int64_t n = grid_block_size(t);
  check(i >= 0 && i < n, "block grid: element ", i, " outside a ", dtype_name(t), " block of ", n);
  const int e = static_cast<int>(i);
  switch (t) {
    case DType::Q4_0:
      return {fp16(static_cast<const BlockQ4_0*>(block)->d), 0.0f, -8, 7};
    case DType::Q4_1: {
      const auto* b = static_cast<const BlockQ4_1*>(block);
      return {fp16(b->d), fp16(b->m), 0, 15};
    }
    case DType::Q5_0:
      return {fp16(static_cast<const BlockQ5_0*>(block)->d), 0.0f, -16, 15};
    case DType::Q5_1: {
      const auto* b = static_cast<const BlockQ5_1*>(block);
      return {fp16(b->d), fp16(b->m), 0, 31};
    }
    case DType::Q8_0:
      return {fp16(static_cast<const BlockQ8_0*>(block)->d), 0.0f, -127, 127};
    case DType::Q2_K: {
      const auto* b = static_cast<const BlockQ2_K*>(block);
      const uint8_t s = b->scales[e / 16];
      return {fp16(b->d) * static_cast<float>(s & 0xF),
              -(fp16(b->dmin) * static_cast<float>(s >> 4)), 0, 3};
    }
    case DType::Q3_K: {
      const auto* b = static_cast<const BlockQ3_K*>(block);
      return {fp16(b->d) * static_cast<float>(q3_scale(b->scales, e / 16)), 0.0f, -4, 3};
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      // Q4_K and Q5_K share the leading d, dmin, scales fields.
      const auto* b = static_cast<const BlockQ4_K*>(block);
      uint8_t sc, mn;
      get_scale_min_k4(e / 32, b->scales, sc, mn);
      return {fp16(b->d) * static_cast<float>(sc), -(fp16(b->dmin) * static_cast<float>(mn)), 0,
              t == DType::Q4_K ? 15 : 31};
    }
    case DType::Q6_K: {
      const auto* b = static_cast<const BlockQ6_K*>(block);
      return {fp16(b->d) * static_cast<float>(b->scales[e / 16]), 0.0f, -32, 31};
    }
    default:
      unsupported(t);
  }
}

void get_codes(DType t, const void* block, int* l) {
  const int n = static_cast<int>(grid_block_size(t));
  switch (t) {
    case DType::Q4_0:
      for (int e = 0; e < n; ++e) l[e] = nibble(static_cast<const BlockQ4_0*>(block)->qs, e) - 8;
      return;
    case DType::Q4_1:
      for (int e = 0; e < n; ++e) l[e] = nibble(static_cast<const BlockQ4_1*>(block)->qs, e);
      return;
    case DType::Q5_0: {
      const auto* b = static_cast<const BlockQ5_0*>(block);
      const uint32_t qh = load_qh(b->qh);
      for (int e = 0; e < n; ++e)
        l[e] = (nibble(b->qs, e) | static_cast<int>((qh >> e) & 1) << 4) - 16;
      return;
    }
    case DType::Q5_1: {
      const auto* b = static_cast<const BlockQ5_1*>(block);
      const uint32_t qh = load_qh(b->qh);
      for (int e = 0; e < n; ++e) l[e] = nibble(b->qs, e) | static_cast<int>((qh >> e) & 1) << 4;
      return;
    }
    case DType::Q8_0:
      for (int e = 0; e < n; ++e) l[e] = static_cast<const BlockQ8_0*>(block)->qs[e];
      return;
    case DType::Q2_K:
      for (int e = 0; e < n; ++e) l[e] = two_bits(static_cast<const BlockQ2_K*>(block)->qs, e);
      return;
    case DType::Q3_K: {
      const auto* b = static_cast<const BlockQ3_K*>(block);
      for (int e = 0; e < n; ++e) l[e] = (two_bits(b->qs, e) | q3_high(b->hmask, e) << 2) - 4;
      return;
    }
    case DType::Q4_K:
      for (int e = 0; e < n; ++e) l[e] = k4_nibble(static_cast<const BlockQ4_K*>(block)->qs, e);
      return;
    case DType::Q5_K: {
      const auto* b = static_cast<const BlockQ5_K*>(block);
      for (int e = 0; e < n; ++e) l[e] = k4_nibble(b->qs, e) | k5_high(b->qh, e) << 4;
      return;
    }
    case DType::Q6_K:
      for (int e = 0; e < n; ++e) l[e] = q6_code(*static_cast<const BlockQ6_K*>(block), e) - 32;
      return;
    default:
      unsupported(t);
  }
}

void set_codes(DType t, void* block, const float* x) {
  const int n = static_cast<int>(grid_block_size(t));
  const int zero = zero_code(t);
  // Stored (unsigned, bias added) codes in element order; the scale fields are never written.
  int c[kQK_K];
  for (int e = 0; e < n; ++e) {
    const ElementGrid g = element_grid(t, block, e);
    c[e] = g.step == 0 ? zero : nearest_code(g, x[e]);
  }
  switch (t) {
    case DType::Q4_0:
      for (int e = 0; e < n; ++e) c[e] += 8;
      put_nibbles(c, static_cast<BlockQ4_0*>(block)->qs);
      return;
    case DType::Q4_1:
      put_nibbles(c, static_cast<BlockQ4_1*>(block)->qs);
      return;
    case DType::Q5_0: {
      auto* b = static_cast<BlockQ5_0*>(block);
      for (int e = 0; e < n; ++e) c[e] += 16;
      put_nibbles(c, b->qs);
      put_qh(c, b->qh);
      return;
    }
    case DType::Q5_1: {
      auto* b = static_cast<BlockQ5_1*>(block);
      put_nibbles(c, b->qs);
      put_qh(c, b->qh);
      return;
    }
    case DType::Q8_0:
      for (int e = 0; e < n; ++e) static_cast<BlockQ8_0*>(block)->qs[e] = static_cast<int8_t>(c[e]);
      return;
    case DType::Q2_K:
      put_two_bits(c, static_cast<BlockQ2_K*>(block)->qs);
      return;
    case DType::Q3_K: {
      auto* b = static_cast<BlockQ3_K*>(block);
      for (int e = 0; e < n; ++e) c[e] += 4;
      put_two_bits(c, b->qs);
      put_q3_high(c, b->hmask);
      return;
    }
    case DType::Q4_K:
      put_k4_nibbles(c, static_cast<BlockQ4_K*>(block)->qs);
      return;
    case DType::Q5_K: {
      auto* b = static_cast<BlockQ5_K*>(block);
      put_k4_nibbles(c, b->qs);
      put_k5_high(c, b->qh);
      return;
    }
    case DType::Q6_K:
      for (int e = 0; e < n; ++e) c[e] += 32;
      put_q6_codes(c, *static_cast<BlockQ6_K*>(block));
      return;
    default:
      unsupported(t);
  }
}

}  // namespace brisk::quant
