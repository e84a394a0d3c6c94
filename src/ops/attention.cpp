#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace brisk::ops {

void attention(const float* q, int64_t T, int64_t pos0, const float* k_cache, const float* v_cache,
               const AttentionShape& s, float* out, std::vector<float>& scratch, ThreadPool& pool) {
  const int64_t n_kv = pos0 + T;
  const int group = s.n_head / s.n_head_kv;
  const int64_t kv_stride = static_cast<int64_t>(s.n_head_kv) * s.head_dim;
  const int64_t q_stride = static_cast<int64_t>(s.n_head) * s.head_dim;
  scratch.resize(static_cast<size_t>(pool.size() * n_kv));

  // One work item per (token, head): scores over the visible keys, softmax, weighted sum of V.
  pool.parallel_for(T * s.n_head, [&](int64_t b, int64_t e, int tid) {
    float* sc = scratch.data() + static_cast<size_t>(tid) * static_cast<size_t>(n_kv);
    for (int64_t item = b; item < e; ++item) {
      const int64_t t = item / s.n_head;
      const int h = static_cast<int>(item % s.n_head);
      const int hk = h / group;
      const int64_t p = pos0 + t;
      const int64_t j0 = s.sliding_window > 0 ? std::max<int64_t>(0, p - s.sliding_window + 1) : 0;
      const float* qv = q + t * q_stride + static_cast<int64_t>(h) * s.head_dim;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = j0; j <= p; ++j) {
        const float* kv = k_cache + j * kv_stride + static_cast<int64_t>(hk) * s.head_dim;
        float d = 0;
        for (int i = 0; i < s.head_dim; ++i) d += qv[i] * kv[i];
        sc[j] = d * s.scale;
        mx = std::max(mx, sc[j]);
      }
      double sum = 0;
      for (int64_t j = j0; j <= p; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = out + t * q_stride + static_cast<int64_t>(h) * s.head_dim;
      std::fill(o, o + s.head_dim, 0.0f);
      for (int64_t j = j0; j <= p; ++j) {
        const float w = sc[j] * inv;
        const float* vv = v_cache + j * kv_stride + static_cast<int64_t>(hk) * s.head_dim;
        for (int i = 0; i < s.head_dim; ++i) o[i] += w * vv[i];
      }
    }
  });
}

}  // namespace brisk::ops
