// Causal multi-head attention over a contiguous f32 KV cache, GQA-aware.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace brisk::ops {

struct AttentionShape {
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int sliding_window = 0;  // 0 = full causal; else key j visible to query at p iff p - j < window
  float scale = 0;         // usually 1/sqrt(head_dim)
};

// q is (T, n_head, head_dim) for positions pos0..pos0+T-1; k_cache/v_cache are
// (n_ctx, n_head_kv, head_dim) holding positions [0, pos0+T); out is (T, n_head, head_dim).
// scratch needs T * (pos0 + T) * n_head floats at most; it is resized as needed.
void attention(const float* q, int64_t T, int64_t pos0, const float* k_cache, const float* v_cache,
               const AttentionShape& s, float* out, std::vector<float>& scratch, ThreadPool& pool);

}  // namespace brisk::ops
