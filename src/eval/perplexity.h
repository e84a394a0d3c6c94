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

// progress(windows done, windows total) after each window.
PerplexityResult perplexity(const model::Model& m, std::span<const int32_t> tokens, int64_t n_ctx,
                            int64_t stride, ThreadPool& pool,
                            const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace brisk::eval
