// Helpers for the end-to-end parity tests: load a model, run it over a prompt at once or token by
// token, and compare logits with the figures the acceptance criteria use.
#pragma once
#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/model_file.h"
#include "model/model.h"

namespace brisk::test {

struct LogitsDiff {
  double rms_ratio = 0;     // RMS(a - ref) / RMS(ref)
  double argmax_agree = 0;  // fraction of rows with the same argmax
  int rows = 0;
};

inline int argmax(const float* x, int64_t n) {
  int best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = static_cast<int>(i);
  return best;
}

inline LogitsDiff compare_logits(std::span<const float> a, std::span<const float> ref,
                                 int64_t n_vocab) {
  LogitsDiff d;
  double se = 0, sr = 0;
  const size_t n = std::min(a.size(), ref.size());
  for (size_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(a[i]) - ref[i];
    se += e * e;
    sr += static_cast<double>(ref[i]) * ref[i];
  }
  d.rms_ratio = std::sqrt(se / std::max(sr, 1e-30));
  d.rows = static_cast<int>(n / static_cast<size_t>(n_vocab));
  int agree = 0;
  for (int r = 0; r < d.rows; ++r)
    agree += argmax(a.data() + r * n_vocab, n_vocab) == argmax(ref.data() + r * n_vocab, n_vocab);
  d.argmax_agree = d.rows ? static_cast<double>(agree) / d.rows : 0;
  return d;
}

// All-position logits of `ids`, fed `ubatch` tokens per forward pass (0 = all at once).
inline std::vector<float> run_logits(const model::Model& m, std::span<const int32_t> ids,
                                     int64_t ubatch, ThreadPool& pool) {
  model::InferenceState st(m.hparams(), static_cast<int64_t>(ids.size()));
  std::vector<float> all, part;
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t ub = ubatch > 0 ? ubatch : n;
  for (int64_t i = 0; i < n; i += ub) {
    const int64_t k = std::min(ub, n - i);
    m.forward(ids.subspan(static_cast<size_t>(i), static_cast<size_t>(k)), st, part, true, pool);
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

inline std::vector<int32_t> greedy(const model::Model& m, std::vector<int32_t> ids, int n_new,
                                   ThreadPool& pool) {
  model::InferenceState st(m.hparams(), static_cast<int64_t>(ids.size()) + n_new);
  std::vector<float> logits;
  std::vector<int32_t> out;
  m.forward(ids, st, logits, false, pool);
  for (int i = 0; i < n_new; ++i) {
    const int32_t next = argmax(logits.data(), m.n_vocab());
    out.push_back(next);
    if (i + 1 < n_new) {
      const int32_t one[1] = {next};
      m.forward(one, st, logits, false, pool);
    }
  }
  return out;
}

}  // namespace brisk::test
