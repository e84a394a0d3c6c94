#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "eval/kl.h"

namespace brisk::eval {

int64_t count_scored(int64_t N, int64_t n_ctx, int64_t stride) {
  if (n_ctx < 2 || stride < 1 || stride > n_ctx || N < 2) return 0;
  int64_t n = 0, scored_to = 0;
  for (int64_t b = 0;; b += stride) {
    const int64_t e = std::min(N, b + n_ctx);
    n += e - std::max(scored_to, b + 1);
    scored_to = e;
    if (b + n_ctx >= N) break;
  }
  return n;
}

PerplexityResult perplexity(const model::Model& m, std::span<const int32_t> tokens, int64_t n_ctx,
                            int64_t stride, ThreadPool& pool,
                            const std::function<void(int64_t, int64_t)>& progress,
                            const RowFn& on_row) {
  const int64_t N = static_cast<int64_t>(tokens.size());
  check(n_ctx >= 2, "perplexity: the context must be at least 2 tokens");
  check(stride >= 1 && stride <= n_ctx, "perplexity: the stride must be in [1, ctx]");
  check(N >= 2, "perplexity: need at least 2 tokens of text, got ", N);
  const int64_t V = m.n_vocab();
  std::vector<int64_t> starts;
  for (int64_t s = 0;; s += stride) {
    starts.push_back(s);
    if (s + n_ctx >= N) break;
  }
  model::InferenceState st(m.hparams(), std::min(n_ctx, N));
  std::vector<float> logits;
  std::vector<double> nll;
  int64_t scored_to = 0;  // tokens [0, scored_to) are scored (token 0 never is)
  for (size_t w = 0; w < starts.size(); ++w) {
    const int64_t b = starts[w], e = std::min(N, b + n_ctx);
    st.clear();
    m.forward(tokens.subspan(static_cast<size_t>(b), static_cast<size_t>(e - b)), st, logits, true,
              pool);
    // Position i of the window predicts token b + i + 1.
    for (int64_t t = std::max(scored_to, b + 1); t < e; ++t) {
      const float* z = logits.data() + (t - 1 - b) * V;
      const int32_t target = tokens[static_cast<size_t>(t)];
      check(target >= 0 && target < V, "perplexity: token id ", target, " outside the vocabulary");
      const double lse = log_sum_exp(z, V);
      if (on_row) on_row(static_cast<int64_t>(nll.size()), z, target, lse);
      nll.push_back(lse - static_cast<double>(z[target]));
    }
    scored_to = e;
    if (progress) progress(static_cast<int64_t>(w) + 1, static_cast<int64_t>(starts.size()));
  }
  PerplexityResult r;
  r.n_windows = static_cast<int64_t>(starts.size());
  r.n_scored = static_cast<int64_t>(nll.size());
  double s = 0, s2 = 0;
  for (double x : nll) s += x;
  r.mean_nll = s / static_cast<double>(nll.size());
  for (double x : nll) s2 += (x - r.mean_nll) * (x - r.mean_nll);
  r.sd_nll = nll.size() > 1 ? std::sqrt(s2 / static_cast<double>(nll.size() - 1)) : 0.0;
  r.ppl = std::exp(r.mean_nll);
  r.ppl_stderr = r.ppl * r.sd_nll / std::sqrt(static_cast<double>(nll.size()));
  return r;
}

}  // namespace brisk::eval
