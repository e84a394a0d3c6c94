// Causal multi-head attention, GQA-aware, over a KV cache read through kernels::KvView (f32 or f16,
// contiguous or paged). The work is tiled (kernels/cpu/attention.h) and spread over the pool:
// prompts by (query tile, KV head); short query runs over long contexts also by splitting the key
// range into chunks whose partial results are merged (flash-decoding).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa.h"

namespace brisk::ops {

using kernels::KvView;

struct AttentionShape {
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int sliding_window = 0;  // 0 = full causal; else key j visible to query at p iff p - j < window
  float scale = 0;         // usually 1/sqrt(head_dim)
};

// Overrides for tests and benchmarks; the defaults choose everything.
struct AttentionOptions {
  std::optional<kernels::Isa> isa;  // kernel variant (must be supported); default: the active one
  int kv_chunks = 0;  // > 0: split every tile's key range into this many chunks (flash-decoding)
  int q_tile = 0;     // > 0: query tokens per tile
};

// One block of n_ctx tokens: the contiguous cache (n_ctx, n_head_kv, head_dim), f32 elements.
inline KvView contiguous_kv(const float* base, int64_t n_ctx, int64_t token_stride) {
  return KvView{base, DType::F32, n_ctx, n_ctx * token_stride, token_stride, nullptr};
}

// q is (T, n_head, head_dim) for positions pos0..pos0+T-1; k and v hold positions [0, pos0+T) of
// (n_head_kv, head_dim) rows; out is (T, n_head, head_dim). scratch is caller-owned and only grows
// (it reaches a steady size after the first calls of a given shape, so decoding allocates nothing).
void attention(const float* q, int64_t T, int64_t pos0, const KvView& k, const KvView& v,
               const AttentionShape& s, float* out, std::vector<float>& scratch, ThreadPool& pool,
               const AttentionOptions& opt = {});

// One sequence of a batch for attention_batch: q / out as in attention(), its own K/V views.
struct AttnSeq {
  const float* q = nullptr;
  float* out = nullptr;
  int64_t T = 0, pos0 = 0;
  KvView k, v;
};

// attention() for several sequences at once (continuous batching): every (sequence, query tile,
// KV head) becomes one work item of a single pass over the pool, instead of one pool dispatch per
// sequence. A sequence that attention() would split along its keys (flash-decoding: a long context
// with few work items) gets its own attention() call. Each output is computed exactly as
// attention() computes it for that sequence alone. items is caller-owned scratch like scratch.
void attention_batch(std::span<const AttnSeq> seqs, const AttentionShape& s,
                     std::vector<float>& scratch, std::vector<int64_t>& items, ThreadPool& pool);

}  // namespace brisk::ops
