// Tiled causal attention with an online softmax (the FlashAttention scheme, written for CPUs).
//
// One call handles one work item: a tile of consecutive query tokens, all the query heads that
// share one KV head (a GQA group), and a range of key positions. Every K/V row of the range is
// read once for the whole tile, and scores exist only for one key tile at a time (kAttnKeyTile
// keys x the tile's rows), never for the whole context.
//
// Rows of a work item are numbered r = t * group + g (query token t of the tile, head g of the
// group). For each row the kernel keeps a running max m, a running sum l of exp(score - m) and an
// unnormalised output o = sum exp(score - m) * v; a new key tile rescales l and o by
// exp(m_old - m_new). At the end either o / l is written (final) or (m, l, o) are returned as a
// partial, so that several key ranges of the same rows (flash-decoding) can be merged with
// attention_merge.
//
// Scores are kept in base 2: the kernels fold log2(e) into the query scale and use exp2, so the
// m of a partial is max over its keys of scale * log2(e) * q.k (not the natural-log score).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/half.h"
#include "kernels/cpu/isa.h"

namespace brisk::kernels {

inline constexpr int kAttnMaxHeadDim = 256;
inline constexpr int kAttnKeyTile = 64;  // keys per inner tile (scores live for one tile only)
// Query positions are compared with key indices in float lanes, exact below 2^24.
inline constexpr int64_t kAttnMaxPositions = int64_t{1} << 24;

// One layer's keys or values. Key j of KV head h starts at element
//   block_table[j / block_tokens] * block_stride + (j % block_tokens) * token_stride + h * head_dim
// of base (identity table when block_table is nullptr). The contiguous cache (n_ctx, n_head_kv,
// head_dim) is one block of n_ctx tokens with token_stride = n_head_kv * head_dim.
// Q8_0 caches count elements the same way (every offset a multiple of 32: head_dim % 32 == 0);
// element e lives in the 34-byte block e / 32 (kv_q8_0_row).
struct KvView {
  const void* base = nullptr;            // f32, f16 or q8_0 elements
  DType type = DType::F32;               // DType::F32, DType::F16 or DType::Q8_0
  int64_t block_tokens = 0;              // tokens per block
  int64_t block_stride = 0;              // elements from one physical block to the next
  int64_t token_stride = 0;              // elements from one token to the next inside a block
  const int32_t* block_table = nullptr;  // logical block -> physical block; nullptr = identity
};

// Q8_0 rows in a KV cache: d elements starting at element e (e % 32 == 0, d % 32 == 0) are
// d / 32 blocks of (f16 scale, 32 int8) at byte offset e / 32 * 34. Scalar loops: the compiler
// vectorises them under each kernel file's ISA flags, and the products d * q are exact in f32 so
// every variant gives the same floats.
inline void kv_q8_0_row(const void* base, int64_t e, int d, float* dst) {
  const uint8_t* p = static_cast<const uint8_t*>(base) + e / 32 * 34;
  for (int b = 0; b < d / 32; ++b, p += 34) {
    const float scale = f16_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8)));
    const int8_t* q = reinterpret_cast<const int8_t*>(p + 2);
    for (int i = 0; i < 32; ++i) dst[b * 32 + i] = scale * static_cast<float>(q[i]);
  }
}

// One work item. q rows: query token t (position pos + t), head g of the group at
// q + t * q_stride + g * head_dim (head_dim floats, unscaled). Keys visible to the query at p are
// j in [key_begin, key_end) with j <= p and, when window > 0, p - j < window. n_q * q_stride must
// stay below 2^31 (the vector kernels gather q with int32 offsets).
struct AttnTile {
  const float* q = nullptr;
  int64_t q_stride = 0;
  int64_t n_q = 0;  // query tokens in the tile (>= 1)
  int64_t pos = 0;  // position of the first query token
  int group = 1;    // query heads per KV head; the tile has n_q * group rows
  int head_dim = 0;
  int kv_head = 0;  // which head of each K/V token row
  int64_t key_begin = 0, key_end = 0;
  int64_t window = 0;  // 0 = full causal
  float scale = 0;     // applied to q.k (usually 1/sqrt(head_dim))
  // Output row r = t * group + g at out + t * out_stride + g * head_dim. With m_out == nullptr it
  // is the normalised result (rows without a visible key get zeros); otherwise the unnormalised o
  // and m_out[r], l_out[r] (a row without a visible key: m = -inf, l = 0, o = 0).
  float* out = nullptr;
  int64_t out_stride = 0;
  float* m_out = nullptr;
  float* l_out = nullptr;
  // Optional: the next work item the calling thread will run, with its K/V; the kernel prefetches
  // that item's first keys during this item's last tiles, so the next item does not start on cold
  // K/V. A hint only: it changes no result (and is not read past this call).
  const AttnTile* next = nullptr;
  const KvView* next_k = nullptr;
  const KvView* next_v = nullptr;
};

// work: attention_work_floats(n_q * group, head_dim) floats, private to the call (64-byte
// alignment helps, nothing requires it).
using AttnTileFn = void (*)(const AttnTile& tile, const KvView& k, const KvView& v, float* work);

// Most rows one tile may have: the work area and the kernels' row loops are sized for it.
inline constexpr int64_t kAttnMaxRows = 256;
size_t attention_work_floats(int64_t rows, int head_dim);

// The tile kernel of a variant for a head size: the vector variants take head_dim % 16 == 0 and
// hand other sizes (any head_dim in [1, kAttnMaxHeadDim]) to the scalar kernel. nullptr when the
// variant is not supported by this CPU (cpu_supports).
AttnTileFn attention_tile_fn_for(Isa isa, int head_dim);
// The active variant's (BRISK_ISA or the best supported; throws brisk::Error like
// active_isa_kind()).
AttnTileFn attention_tile_fn(int head_dim);
// The variant that attention_tile_fn_for(isa, head_dim) really runs (Scalar for fallbacks).
Isa attention_tile_isa(Isa isa, int head_dim);

// Merges n_parts partials of the same rows (each from attention_tile with m_out set, over
// disjoint key ranges) into the normalised output. Part c has o at o + c * rows * head_dim (rows
// contiguous, head_dim floats each), m at m + c * rows, l at l + c * rows. Row r = t * group + g
// goes to out + t * out_stride + g * head_dim.
void attention_merge(int n_parts, const float* o, const float* m, const float* l, int64_t rows,
                     int group, int head_dim, float* out, int64_t out_stride);

// The exp2 the kernels use, for tests: y[i] = 2^x[i]. Vector variants are within a few ulp of the
// exact value for x in [-126, 127]; they return 0 below -126 (and for -inf), never a subnormal.
// false when the variant is not supported here.
bool attention_exp2(Isa isa, const float* x, float* y, int64_t n);

}  // namespace brisk::kernels
