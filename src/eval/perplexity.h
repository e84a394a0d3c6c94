// Perplexity of a model over a token sequence, the yardstick of compression (issue 6).
//
// The text is cut into windows of n_ctx tokens starting every `stride` tokens (stride = n_ctx:
// disjoint windows). Each window is evaluated from an empty cache; in the first window every
// position after the first is scored, in later windows only the positions past the previous
// window's end (so every token is scored once, with at least n_ctx - stride tokens of context;
// with disjoint windows the first token of each window has no context and is not scored).
// perplexity = exp(mean NLL); its standard error by the delta method, ppl * sd(NLL) / sqrt(n).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"

namespace brisk::eval {

struct PerplexityResult {
  int64_t n_scored = 0, n_windows = 0;
  double mean_nll = 0, sd_nll = 0;
  double ppl = 0, ppl_stderr = 0;
};

// How many positions perplexity() scores for N tokens (0 when it would refuse the arguments).
int64_t count_scored(int64_t N, int64_t n_ctx, int64_t stride);

// progress(windows done, windows total) after each window. on_row(i, logits, target, lse) is called
// for the i-th scored position (in order) with its V logits, the token they predict and their
// log-sum-exp (so consumers need not recompute it), before the next window overwrites them.
using RowFn = std::function<void(int64_t, const float*, int32_t, double)>;
PerplexityResult perplexity(const model::Model& m, std::span<const int32_t> tokens, int64_t n_ctx,
                            int64_t stride, ThreadPool& pool,
                            const std::function<void(int64_t, int64_t)>& progress = {},
                            const RowFn& on_row = {});

}  // namespace brisk::eval
