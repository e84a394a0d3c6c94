// The packed GEMM kernels written once over a small vector abstraction V and compiled once per ISA
// (gemm_avx512.cpp instantiates them with 16-row 512-bit traits, with and without VNNI;
// gemm_avx2.cpp with 8-row 256-bit traits). Include only from those files: everything here has
// internal linkage (see quant_isa_helpers.h for why that matters).
//
// V provides (all static, always-inline):
//   kRows (rows per group = int32 lanes), kTile (most tokens per register tile), kVnni;
//   kInterleave (enough registers to advance every token's integer sum at once: 32-register
//   AVX-512; with 16 ymm registers that order spills, so AVX2 finishes one token at a time);
//   kStreamTile (most tokens for which tiles take K::kStreams groups at once);
//   I / F (integer / float vectors); load, zero, and_, or_, or_and(a, b, c) = a | (b & c), set1_8,
//   set1_32, shl16/shr16/shr32/
//   shl32 (count in bits, need not be a constant); dp_u8(acc, w, y4): acc + sum of four products
//   of unsigned weight codes (<= 63, or any u8 when kVnni) with the four signed activation codes at
//   y4; dp_s8: the same for signed weight codes in [-127, 127]; dp_s16(acc, a, p): acc + the
//   products of a's two int16 halves with the int16 pair at p, summed; cvt, fmadd, fnmadd, mul,
//   set1f, zerof; f16(p): kRows halves -> floats; s8to32(p): kRows int8 -> int32; store(out, v, n,
//   add): the first n lanes (added to what is there when add).
//
// Layout (see gemm.h): a group is kRows rows; per block, the rows' scales then their codes, codes
// transposed in 4-byte words: word r of a (4 * kRows)-byte vector belongs to row r, so one int32
// lane of every vector product is one output row and a broadcast activation word feeds all rows.
//
// Weight offsets (-8 for Q4_0, -128 for Q8_0 stored +128 on VNNI, -32 for Q6_K) are removed
// exactly in integers by starting each block's accumulator at -offset * sum(activation codes)
// (precomputed per token by prep); integer block sums are therefore exactly the scalar reference's
// and only float rounding of the scaling and the order of float additions differ.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/quant_blocks.h"

namespace brisk::kernels {
namespace {

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float load_f32(const void* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// Copies 4-byte word `word` of each of the n_valid source rows (row r at src + r * row_stride)
// into word r of the vector at dst; rows past n_valid get `fill` (a zero weight's code).
template <int R>
inline void transpose_words(const uint8_t* src, size_t row_stride, int64_t n_valid, int word,
                            uint8_t fill, uint8_t* dst) {
  for (int r = 0; r < R; ++r) {
    if (r < n_valid)
      std::memcpy(dst + 4 * r, src + static_cast<size_t>(r) * row_stride + 4 * word, 4);
    else
      std::memset(dst + 4 * r, fill, 4);
  }
}

// One register tile: G groups (gstride bytes apart, the first at w) x NT tokens from t0. Row r of
// group g goes to out[(t0 + t) * ldo + g * ostride + r] for r < nr[g]. The next group's weights
// are prefetched during the first token tile over a group (single-group tiles: several tokens per
// weight, where one weight stream per core with compute in between would otherwise stall on
// memory: bench_kernels gemm_stream Q4_0, one thread, 8 tokens 98 -> 150 GMAC/s, 16 tokens 124 ->
// 154).
struct Tile {
  const GemmArgs* a;
  const uint8_t* w;
  size_t gstride;
  int64_t ostride;
  int64_t t0;
  float* out;
  int nr[8];
  bool prefetch;  // the first token tile over these groups: prefetch the next group (see GLegacy)
};

// Prefetches bytes [0, n) at p (the same block of the next group; see Tile::prefetch) into L2, not
// L1: a group (18-50 KiB for 2048-5632 inputs) and the token tile's activations already fill L1,
// and lines brought there a group early were evicted before use (bench_kernels gemm_stream, one
// thread, 8 tokens, prefetcht0 -> prefetcht1: Q4_0 159 -> 173 GMAC/s, Q6_K 117 -> 157).
// Volatile asm: GCC deletes a loop whose only effect is _mm_prefetch when it cannot unroll it away.
inline void prefetch_bytes(const uint8_t* p, size_t n) {
  for (size_t off = 0; off < n; off += 64) asm volatile("prefetcht1 %0" : : "m"(p[off]));
}

// Groups per tile when few tokens are computed (decoding), K::kStreams: G groups are G
// independent weight streams, and the hardware prefetchers run each stream ahead on its own, so G
// streams keep G times the reads in flight. One stream per core could not reach the memory
// bandwidth with the unpacking work in between (single thread, bench_kernels gemv_stream: Q4_0
// 13.6 GB/s with one stream, 17.0 with two; Q6_K 11.6 with one, 14.6 with four; the probe reads
// 16.7). The types with more unpacking work per byte want more streams. (Software prefetching
// ahead of each stream was measured too and gained nothing on top of this.) The groups of one tile
// are spread evenly over the call's range (stream i walks the i-th part), so that each stream
// continues from tile to tile instead of starting cold.

// Runs K::tile<NT, G> over every group and token tile. Tokens are taken in chunks whose activations
// fit in about 1 MiB (the per-core L2), so a group's weights are reused from L1/L2 across a chunk
// while the chunk's activations stay in L2.
// Groups g + i * spread (i < G) for tokens [c0, c1).
template <class V, class K, int G>
void drive_tokens(const GemmArgs& a, int64_t g, int64_t spread, int64_t c0, int64_t c1) {
  constexpr int R = V::kRows, NT = V::kTile;
  const size_t gb = K::group_bytes(a.n_in);
  Tile tl{&a,
          a.w + static_cast<size_t>(g) * gb,
          gb * static_cast<size_t>(spread),
          spread * R,
          c0,
          a.out + g * R,
          {},
          true};
  for (int i = 0; i < G; ++i)
    tl.nr[i] = static_cast<int>(std::min<int64_t>(R, a.n_rows - (g + i * spread) * R));
  for (; tl.t0 + NT <= c1; tl.t0 += NT, tl.prefetch = false) K::template tile<NT, G>(tl);
  switch (c1 - tl.t0) {
    case 1:
      return K::template tile<1, G>(tl);
    case 2:
      return K::template tile<2, G>(tl);
    case 3:
      return K::template tile<3, G>(tl);
    default:
      break;
  }
  if constexpr (NT > 4) {
    switch (c1 - tl.t0) {
      case 4:
        return K::template tile<4, G>(tl);
      case 5:
        return K::template tile<5, G>(tl);
      case 6:
        return K::template tile<6, G>(tl);
      case 7:
        return K::template tile<7, G>(tl);
      default:
        break;
    }
  }
}

template <class V, class K>
void drive(const GemmArgs& a) {
  const int64_t chunk = std::max<int64_t>(
      V::kTile, static_cast<int64_t>((size_t{1} << 20) / std::max<size_t>(a.act_stride, 1)));
  for (int64_t c0 = 0; c0 < a.T; c0 += chunk) {
    const int64_t c1 = std::min(a.T, c0 + chunk);
    int64_t g = 0;
    if (c1 - c0 <= V::kStreamTile) {
      const int64_t part = a.n_groups / K::kStreams;
      for (int64_t k = 0; k < part; ++k) drive_tokens<V, K, K::kStreams>(a, k, part, c0, c1);
      g = part * K::kStreams;
    }
    for (; g < a.n_groups; ++g) drive_tokens<V, K, 1>(a, g, 1, c0, c1);
  }
}

// Stores the tile's accumulators acc[g][t].
template <class V, int NT, int G>
inline void store_tile(const Tile& tl, typename V::F (&acc)[G][NT]) {
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t)
      V::store(tl.out + (tl.t0 + t) * tl.a->ldo + g * tl.ostride, acc[g][t], tl.nr[g],
               tl.a->accumulate);
}

// ---- Q4_0 and Q8_0 (activations: Q8_0 blocks; side data per block {float d, int32 corr}) ------

// Zeroed accumulators of a tile.
template <class V, int NT, int G>
inline void zero_tile(typename V::F (&acc)[G][NT]) {
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) acc[g][t] = V::zerof();
}

// The same, and requests the tile's output lines for writing: a tile runs
// for thousands of cycles, which hides their misses, while a large (T, n_out) output read back
// for the residual add (GemmArgs::accumulate) otherwise stalls every store_tile on memory
// (ops::linear_add, 2048 -> 5632, 128 tokens, one thread: 160 -> 173 GMAC/s).
template <class V, int NT, int G>
inline void zero_tile(typename V::F (&acc)[G][NT], const Tile& tl) {
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      const float* o = tl.out + (tl.t0 + t) * tl.a->ldo + g * tl.ostride;
      asm volatile("prefetchw %0" : : "m"(o[0]));
      asm volatile("prefetchw %0" : : "m"(o[V::kRows - 1]));
    }
  zero_tile<V>(acc);
}

// The tile of the 32-element block formats, shared through CRTP: K::unpack(block, q) gives a
// block's 8 code vectors (vector j: elements 4j .. 4j + 3 of each row), K::dot one product step;
// a block is d[R] f16 followed by the codes (K::kBlock bytes).
template <class V, class K>
struct GLegacy {
  template <int NT, int G>
  static void tile(const Tile& tl) {
    using I = typename V::I;
    using F = typename V::F;
    const GemmArgs& a = *tl.a;
    F acc[G][NT];
    zero_tile<V>(acc, tl);
    const uint8_t* act = a.act + static_cast<size_t>(tl.t0) * a.act_stride;
    const uint8_t* side = a.side + static_cast<size_t>(tl.t0) * a.side_stride;
    const uint8_t* w = tl.w;
    const size_t ahead = K::group_bytes(a.n_in);
    const bool prefetch = G == 1 && tl.prefetch;
    for (int64_t b = 0; b < a.n_in / kQK; ++b, w += K::kBlock) {
      if (prefetch) prefetch_bytes(w + ahead, K::kBlock);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const uint8_t* wg = w + g * tl.gstride;
        const F dw = V::f16(wg);
        I q[8];
        K::unpack(wg, q);
        const uint8_t* y0 = act + b * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs);
        auto finish = [&](int t, I sum) {
          const uint8_t* s = side + t * a.side_stride + b * 8;
          acc[g][t] = V::fmadd(V::cvt(sum), V::mul(dw, V::set1f(load_f32(s))), acc[g][t]);
        };
        if constexpr (V::kInterleave) {
          // The tokens' sums advance together (j outer): NT independent chains of vpdpbusd in
          // flight instead of one token's chain of 8 dependent ones after another. (GQK4 and
          // GQ6_K spell out the same two orders: one helper taking lambdas measured 25% slower
          // for AVX2 k-quants, forced inlining or not.)
          I sum[NT];
#pragma GCC unroll 16
          for (int t = 0; t < NT; ++t)
            sum[t] = V::set1_32(load_i32(side + t * a.side_stride + b * 8 + 4));
#pragma GCC unroll 8
          for (int j = 0; j < 8; ++j)
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t)
              sum[t] = K::dot(sum[t], q[j], y0 + t * a.act_stride + 4 * j);
#pragma GCC unroll 16
          for (int t = 0; t < NT; ++t) finish(t, sum[t]);
        } else {
#pragma GCC unroll 16
          for (int t = 0; t < NT; ++t) {
            I sum = V::set1_32(load_i32(side + t * a.side_stride + b * 8 + 4));
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) sum = K::dot(sum, q[j], y0 + t * a.act_stride + 4 * j);
            finish(t, sum);
          }
        }
      }
    }
    store_tile<V>(tl, acc);
  }
};

// Block: d[R] f16, then 4 vectors; vector m, word r = qs[4m .. 4m + 3] of row r: low nibbles are
// elements 4m + i, high nibbles elements 16 + 4m + i.
template <class V>
struct GQ4_0 : GLegacy<V, GQ4_0<V>> {
  using I = typename V::I;
  static constexpr int R = V::kRows, kStreams = 2;
  static constexpr size_t kVec = 4 * R, kBlock = 2 * R + 4 * kVec;
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in / kQK) * kBlock; }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in / kQK) * sizeof(BlockQ4_0);
    for (int64_t b = 0; b < n_in / kQK; ++b, dst += kBlock) {
      const uint8_t* blk = src + static_cast<size_t>(b) * sizeof(BlockQ4_0);
      for (int r = 0; r < R; ++r) {
        const uint16_t d = r < n_valid ? reinterpret_cast<const BlockQ4_0*>(blk + r * rs)->d : 0;
        std::memcpy(dst + 2 * r, &d, 2);
      }
      for (int m = 0; m < 4; ++m)
        transpose_words<R>(blk + offsetof(BlockQ4_0, qs), rs, n_valid, m, 0x88,
                           dst + 2 * R + kVec * m);
    }
  }
  static void unpack(const uint8_t* blk, I (&q)[8]) {
    const I m4 = V::set1_8(0x0F);
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      const I v = V::load(blk + 2 * R + kVec * m);
      q[m] = V::and_(v, m4);
      q[m + 4] = V::and_(V::shr16(v, 4), m4);
    }
  }
  static I dot(I acc, I w, const void* y4) {
    return V::dp_u8(acc, w, y4);
  }
};

// Block: d[R] f16, then 8 vectors; vector j, word r = qs[4j .. 4j + 3] of row r. With VNNI the
// codes are stored + 128 (xor 0x80) to be the unsigned operand; without, they stay signed (dp_s8).
template <class V>
struct GQ8_0 : GLegacy<V, GQ8_0<V>> {
  using I = typename V::I;
  static constexpr int R = V::kRows, kStreams = 2;
  static constexpr size_t kVec = 4 * R, kBlock = 2 * R + 8 * kVec;
  static constexpr int kOffset = V::kVnni ? 128 : 0;
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in / kQK) * kBlock; }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in / kQK) * sizeof(BlockQ8_0);
    for (int64_t b = 0; b < n_in / kQK; ++b, dst += kBlock) {
      const uint8_t* blk = src + static_cast<size_t>(b) * sizeof(BlockQ8_0);
      for (int r = 0; r < R; ++r) {
        const uint16_t d = r < n_valid ? reinterpret_cast<const BlockQ8_0*>(blk + r * rs)->d : 0;
        std::memcpy(dst + 2 * r, &d, 2);
      }
      for (int j = 0; j < 8; ++j) {
        uint8_t* v = dst + 2 * R + kVec * j;
        transpose_words<R>(blk + offsetof(BlockQ8_0, qs), rs, n_valid, j, 0, v);
        if (kOffset)
          for (size_t i = 0; i < kVec; ++i) v[i] ^= 0x80;
      }
    }
  }
  static void unpack(const uint8_t* blk, I (&q)[8]) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) q[j] = V::load(blk + 2 * R + kVec * j);
  }
  static I dot(I acc, I w, const void* y4) {
    return kOffset ? V::dp_u8(acc, w, y4) : V::dp_s8(acc, w, y4);
  }
};

inline size_t q8_0_side_bytes(int64_t n_in) {
  return static_cast<size_t>(n_in / kQK) * 8;
}

// {d, -offset * sum(qs)} per Q8_0 block.
template <int kOffset>
void q8_0_prep(const uint8_t* act_row, int64_t n_in, uint8_t* side) {
  const BlockQ8_0* y = reinterpret_cast<const BlockQ8_0*>(act_row);
  for (int64_t b = 0; b < n_in / kQK; ++b) {
    int32_t s = 0;
    for (int i = 0; i < kQK; ++i) s += y[b].qs[i];
    const float d = _cvtsh_ss(y[b].d);
    const int32_t corr = -kOffset * s;
    std::memcpy(side + 8 * b, &d, 4);
    std::memcpy(side + 8 * b + 4, &corr, 4);
  }
}

// ---- Q4_K and Q5_K (activations: Q8_K; side per super-block {float d, int16 ysum pairs[8]}) ---

inline constexpr size_t kQK4Side = 20;

// Super-block: d[R] f16, dmin[R] f16, the rows' 12 scale bytes as three vectors of words (bytes
// 0-3, 4-7, 8-11 of row r in word r), then 32 code vectors: vector 8p + m, word r = qs[32p + 4m ..
// +3] of row r: low nibbles are sub-block 2p elements 4m + i, high nibbles sub-block 2p + 1. Q5_K
// (kFive) appends 8 vectors of fifth bits: vector m, word r = qh[4m .. +3] of row r, bit j of a
// byte being the fifth bit of sub-block j's element.
template <class V, bool kFive>
struct GQK4 {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  static constexpr int R = V::kRows, kStreams = 4;
  static constexpr size_t kSide = kQK4Side;
  static constexpr size_t kVec = 4 * R;
  static constexpr size_t kScales = 4 * R, kCodes = kScales + 3 * kVec, kHigh = kCodes + 32 * kVec;
  static constexpr size_t kBlock = kHigh + (kFive ? 8 * kVec : 0);
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in / kQK_K) * kBlock; }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in / kQK_K) * sizeof(Block);
    for (int64_t b = 0; b < n_in / kQK_K; ++b, dst += kBlock) {
      const uint8_t* blk = src + static_cast<size_t>(b) * sizeof(Block);
      for (int r = 0; r < R; ++r) {
        Block z{};
        const Block& x = r < n_valid ? *reinterpret_cast<const Block*>(blk + r * rs) : z;
        std::memcpy(dst + 2 * r, &x.d, 2);
        std::memcpy(dst + 2 * R + 2 * r, &x.dmin, 2);
      }
      for (int word = 0; word < 3; ++word)
        transpose_words<R>(blk + offsetof(Block, scales), rs, n_valid, word, 0,
                           dst + kScales + kVec * word);
      for (int v = 0; v < 32; ++v)
        transpose_words<R>(blk + offsetof(Block, qs), rs, n_valid, v, 0, dst + kCodes + kVec * v);
      if constexpr (kFive)
        for (int v = 0; v < 8; ++v)
          transpose_words<R>(blk + offsetof(BlockQ5_K, qh), rs, n_valid, v, 0,
                             dst + kHigh + kVec * v);
    }
  }
  // Float sub-block scales d * sc[j] of the rows (scf, 8 x R floats) and the 6-bit mins as int16
  // pairs (mins[k], k < 4: (mn[0], mn[2]), (mn[1], mn[3]), (mn[4], mn[6]), (mn[5], mn[7]) in each
  // 32-bit lane), from the packed words: the vector form of the scalar scale_min_k4.
  static void scales(const uint8_t* w, float* scf, typename V::I* mins) {
    using I = typename V::I;
    using F = typename V::F;
    const F dw = V::f16(w);
    const I u0 = V::load(w + kScales), u1 = V::load(w + kScales + kVec),
            u2 = V::load(w + kScales + 2 * kVec);
    const I six = V::set1_32(0x3F3F3F3F), four = V::set1_32(0x0F0F0F0F),
            two = V::set1_32(0x03030303), byte = V::set1_32(0xFF), pairs = V::set1_32(0x00FF00FF);
    const I s_lo = V::and_(u0, six), m_lo = V::and_(u1, six);
    const I s_hi = V::or_(V::and_(u2, four), V::shl32(V::and_(V::shr32(u0, 6), two), 4));
    const I m_hi =
        V::or_(V::and_(V::shr32(u2, 4), four), V::shl32(V::and_(V::shr32(u1, 6), two), 4));
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      V::storef(scf + R * j, V::mul(dw, V::cvt(V::and_(V::shr32(s_lo, 8 * j), byte))));
      V::storef(scf + R * (j + 4), V::mul(dw, V::cvt(V::and_(V::shr32(s_hi, 8 * j), byte))));
    }
    mins[0] = V::and_(m_lo, pairs);
    mins[1] = V::and_(V::shr32(m_lo, 8), pairs);
    mins[2] = V::and_(m_hi, pairs);
    mins[3] = V::and_(V::shr32(m_hi, 8), pairs);
  }
  template <int NT, int G>
  static void tile(const Tile& tl) {
    using I = typename V::I;
    using F = typename V::F;
    const GemmArgs& a = *tl.a;
    const I m4 = V::set1_8(0x0F), bit4 = V::set1_8(0x10);
    F acc[G][NT];
    zero_tile<V>(acc, tl);
    const uint8_t* act = a.act + static_cast<size_t>(tl.t0) * a.act_stride;
    const uint8_t* side = a.side + static_cast<size_t>(tl.t0) * a.side_stride;
    alignas(64) float scf[G][8 * R];
    const uint8_t* w = tl.w;
    const size_t ahead = group_bytes(a.n_in);
    const bool prefetch = G == 1 && tl.prefetch;
    for (int64_t sb = 0; sb < a.n_in / kQK_K; ++sb, w += kBlock) {
      I mins[G][4];
      F inner[G][NT];
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        scales(w + g * tl.gstride, scf[g], mins[g]);
        // inner starts at -dmin * sum_j mn[j] * ysum[j] (the mins, exact in int32 before the
        // conversion), then gathers d * sc[j] * (codes . y of sub-block j).
        const F dmw = V::f16(w + g * tl.gstride + 2 * R);
#pragma GCC unroll 16
        for (int t = 0; t < NT; ++t) {
          const uint8_t* s = side + t * a.side_stride + sb * kSide;
          I m = V::zero();
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) m = V::dp_s16(m, mins[g][k], s + 4 + 4 * k);
          inner[g][t] = V::mul(V::set1f(-1.0f), V::mul(dmw, V::cvt(m)));
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        // The next group's super-block, an eighth per sub-block (a burst of all its lines at
        // once measured no gain).
        if (prefetch) prefetch_bytes(w + ahead + j * (kBlock / 8), (kBlock + 7) / 8);
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) {
          const uint8_t* wg = w + g * tl.gstride;
          const uint8_t* qv = wg + kCodes + kVec * 8 * (j / 2);
          I q[8];
#pragma GCC unroll 16
          for (int m = 0; m < 8; ++m) {
            const I v = V::load(qv + kVec * m);
            q[m] = (j & 1) ? V::and_(V::shr16(v, 4), m4) : V::and_(v, m4);
            if constexpr (kFive) {
              // Bit j of each qh byte to bit 4 (16-bit shifts: bits of the neighbouring byte land
              // outside bit 4 and are masked off).
              const I h = V::load(wg + kHigh + kVec * m);
              q[m] = V::or_and(q[m], j <= 4 ? V::shl16(h, 4 - j) : V::shr16(h, j - 4), bit4);
            }
          }
          const F sc = V::loadf(scf[g] + R * j);
          // The tokens' chains advance together where registers allow (see GLegacy::tile).
          const uint8_t* y0 = act + sb * sizeof(BlockQ8_K) + offsetof(BlockQ8_K, qs) + 32 * j;
          if constexpr (V::kInterleave) {
            I sum[NT];
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t) sum[t] = V::zero();
#pragma GCC unroll 8
            for (int m = 0; m < 8; ++m)
#pragma GCC unroll 16
              for (int t = 0; t < NT; ++t)
                sum[t] = V::dp_u8(sum[t], q[m], y0 + t * a.act_stride + 4 * m);
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t) inner[g][t] = V::fmadd(sc, V::cvt(sum[t]), inner[g][t]);
          } else {
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t) {
              I sum = V::zero();
#pragma GCC unroll 8
              for (int m = 0; m < 8; ++m) sum = V::dp_u8(sum, q[m], y0 + t * a.act_stride + 4 * m);
              inner[g][t] = V::fmadd(sc, V::cvt(sum), inner[g][t]);
            }
          }
        }
      }
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const F d = V::set1f(load_f32(side + t * a.side_stride + sb * kSide));
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) acc[g][t] = V::fmadd(inner[g][t], d, acc[g][t]);
      }
    }
    store_tile<V>(tl, acc);
  }
};

inline size_t q4_k_side_bytes(int64_t n_in) {
  return static_cast<size_t>(n_in / kQK_K) * kQK4Side;
}

// Per super-block: {float d, int32 ypair[4]}: the sums of the 8 sub-blocks' codes (each within
// +-32 * 127, so int16) paired as the mins are in GQK4::scales: (y0, y2), (y1, y3), (y4, y6),
// (y5, y7), low half first.
inline void q4_k_prep(const uint8_t* act_row, int64_t n_in, uint8_t* side) {
  const BlockQ8_K* y = reinterpret_cast<const BlockQ8_K*>(act_row);
  for (int64_t sb = 0; sb < n_in / kQK_K; ++sb, side += kQK4Side) {
    std::memcpy(side, &y[sb].d, 4);
    int16_t ys[8];
    for (int j = 0; j < 8; ++j)
      ys[j] = static_cast<int16_t>(y[sb].bsums[2 * j] + y[sb].bsums[2 * j + 1]);
    const int16_t pairs[8] = {ys[0], ys[2], ys[1], ys[3], ys[4], ys[6], ys[5], ys[7]};
    std::memcpy(side + 4, pairs, 16);
  }
}

// ---- Q6_K (activations: Q8_K; side per super-block {float d, int32 corr[16]}, corr[j] = -32 *
// the sum of sub-block j's 16 codes) -------------------------------------------------------------

// Super-block: d[R] f16; scales: sub-block j of row r at byte 2R + R j + r; then per sub-block j
// three code vectors P0, P1, P2 (word r = row r, byte i of a word = element 16j + 4k + i of the
// quad k below). The four 4-element quads A, B, C, D (k = 0..3) of a sub-block are stored as
//   P0 = A | (B >> 4) << 6,  P1 = C | ((B >> 2) & 3) << 6,  P2 = D | (B & 3) << 6
// so A, C, D unpack with one mask each and B with three shifts, a mask and two or-ands: 9
// operations per 4 code vectors, against 13 for the file's nibble + 2-bit planes. Same bytes.
template <class V>
struct GQ6_K {
  static constexpr int R = V::kRows, kStreams = 4;
  static constexpr size_t kVec = 4 * R;
  static constexpr size_t kCodes = 2 * R + 16 * R, kBlock = kCodes + 16 * 3 * kVec;
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in / kQK_K) * kBlock; }
  // The 256 codes (0..63) of one Q6_K block, in element order (see BlockQ6_K).
  static void decode(const BlockQ6_K& x, uint8_t c[kQK_K]) {
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const uint8_t* ql = x.ql + 64 * h;
        const uint8_t qh = x.qh[32 * h + l];
        c[128 * h + l] = static_cast<uint8_t>((ql[l] & 15) | ((qh & 3) << 4));
        c[128 * h + 32 + l] = static_cast<uint8_t>((ql[l + 32] & 15) | (((qh >> 2) & 3) << 4));
        c[128 * h + 64 + l] = static_cast<uint8_t>((ql[l] >> 4) | (((qh >> 4) & 3) << 4));
        c[128 * h + 96 + l] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4));
      }
  }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in / kQK_K) * sizeof(BlockQ6_K);
    for (int64_t b = 0; b < n_in / kQK_K; ++b, dst += kBlock) {
      const uint8_t* blk = src + static_cast<size_t>(b) * sizeof(BlockQ6_K);
      for (int r = 0; r < R; ++r) {
        BlockQ6_K z{};
        // Missing rows: scale 0 (and codes 32, the zero value), so they contribute nothing.
        const BlockQ6_K& x = r < n_valid ? *reinterpret_cast<const BlockQ6_K*>(blk + r * rs) : z;
        std::memcpy(dst + 2 * r, &x.d, 2);
        uint8_t c[kQK_K];
        if (r < n_valid)
          decode(x, c);
        else
          std::memset(c, 32, sizeof c);
        for (int j = 0; j < 16; ++j) {
          dst[2 * R + R * j + r] = static_cast<uint8_t>(x.scales[j]);
          uint8_t* p = dst + kCodes + 3 * kVec * j + 4 * r;
          for (int i = 0; i < 4; ++i) {
            const uint8_t A = c[16 * j + i], B = c[16 * j + 4 + i], C = c[16 * j + 8 + i],
                          D = c[16 * j + 12 + i];
            p[i] = static_cast<uint8_t>(A | ((B >> 4) << 6));
            p[kVec + i] = static_cast<uint8_t>(C | (((B >> 2) & 3) << 6));
            p[2 * kVec + i] = static_cast<uint8_t>(D | ((B & 3) << 6));
          }
        }
      }
    }
  }
  template <int NT, int G>
  static void tile(const Tile& tl) {
    using I = typename V::I;
    using F = typename V::F;
    const GemmArgs& a = *tl.a;
    const I m6 = V::set1_8(0x3F), m2 = V::set1_8(0x03), m4 = V::set1_8(0x0C), m5 = V::set1_8(0x30);
    F acc[G][NT];
    zero_tile<V>(acc, tl);
    const uint8_t* act = a.act + static_cast<size_t>(tl.t0) * a.act_stride;
    const uint8_t* side = a.side + static_cast<size_t>(tl.t0) * a.side_stride;
    const uint8_t* w = tl.w;
    const size_t ahead = group_bytes(a.n_in);
    const bool prefetch = G == 1 && tl.prefetch;
    for (int64_t sb = 0; sb < a.n_in / kQK_K; ++sb, w += kBlock) {
      F dw[G], inner[G][NT];
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        dw[g] = V::f16(w + g * tl.gstride);
#pragma GCC unroll 16
        for (int t = 0; t < NT; ++t) inner[g][t] = V::zerof();
      }
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) {  // sub-block of elements 16j .. 16j + 15
        if (prefetch) prefetch_bytes(w + ahead + j * (kBlock / 16), (kBlock + 15) / 16);
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) {
          const uint8_t* wg = w + g * tl.gstride;
          const uint8_t* pj = wg + kCodes + 3 * kVec * j;
          const I p0 = V::load(pj), p1 = V::load(pj + kVec), p2 = V::load(pj + 2 * kVec);
          I q[4];
          q[0] = V::and_(p0, m6);
          q[1] = V::or_and(V::or_and(V::and_(V::shr16(p2, 6), m2), V::shr16(p1, 4), m4),
                           V::shr16(p0, 2), m5);
          q[2] = V::and_(p1, m6);
          q[3] = V::and_(p2, m6);
          const F sc = V::mul(dw[g], V::cvt(V::s8to32(wg + 2 * R + R * j)));
          const uint8_t* y0 = act + sb * sizeof(BlockQ8_K) + offsetof(BlockQ8_K, qs) + 16 * j;
          const uint8_t* s0 = side + sb * 68 + 4 + 4 * j;
          if constexpr (V::kInterleave) {
            I sum[NT];
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t) sum[t] = V::set1_32(load_i32(s0 + t * a.side_stride));
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i)
#pragma GCC unroll 16
              for (int t = 0; t < NT; ++t)
                sum[t] = V::dp_u8(sum[t], q[i], y0 + t * a.act_stride + 4 * i);
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t) inner[g][t] = V::fmadd(sc, V::cvt(sum[t]), inner[g][t]);
          } else {
#pragma GCC unroll 16
            for (int t = 0; t < NT; ++t) {
              I sum = V::set1_32(load_i32(s0 + t * a.side_stride));
#pragma GCC unroll 4
              for (int i = 0; i < 4; ++i) sum = V::dp_u8(sum, q[i], y0 + t * a.act_stride + 4 * i);
              inner[g][t] = V::fmadd(sc, V::cvt(sum), inner[g][t]);
            }
          }
        }
      }
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const F d = V::set1f(load_f32(side + t * a.side_stride + sb * 68));
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) acc[g][t] = V::fmadd(inner[g][t], d, acc[g][t]);
      }
    }
    store_tile<V>(tl, acc);
  }
};

inline size_t q6_k_side_bytes(int64_t n_in) {
  return static_cast<size_t>(n_in / kQK_K) * 68;
}

inline void q6_k_prep(const uint8_t* act_row, int64_t n_in, uint8_t* side) {
  const BlockQ8_K* y = reinterpret_cast<const BlockQ8_K*>(act_row);
  for (int64_t sb = 0; sb < n_in / kQK_K; ++sb, side += 68) {
    std::memcpy(side, &y[sb].d, 4);
    for (int j = 0; j < 16; ++j) {
      const int32_t c = -32 * y[sb].bsums[j];
      std::memcpy(side + 4 + 4 * j, &c, 4);
    }
  }
}

template <class K>
void pack_fn(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
  K::pack(src, n_in, n_valid, dst);
}
template <class K>
size_t group_bytes_fn(int64_t n_in) {
  return K::group_bytes(n_in);
}

}  // namespace
}  // namespace brisk::kernels
