#include "train/optim.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace brisk::train {
namespace {

// Fixed-size blocks summed per block then in block order: the result does not depend on how the
// pool splits the work.
constexpr int64_t kBlock = 1 << 14;

}  // namespace

OptimizerKind parse_optimizer(const std::string& s) {
  if (s == "adamw") return OptimizerKind::AdamW;
  if (s == "lion") return OptimizerKind::Lion;
  fail("unknown optimizer '", s, "' (adamw or lion)");
}

const char* optimizer_name(OptimizerKind k) {
  return k == OptimizerKind::AdamW ? "adamw" : "lion";
}

double lr_at(const OptimizerConfig& c, int64_t step) {
  if (c.warmup_steps > 0 && step < c.warmup_steps)
    return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  if (step >= c.total_steps) return c.min_lr;
  const double span = static_cast<double>(std::max<int64_t>(1, c.total_steps - c.warmup_steps));
  const double t = static_cast<double>(step - c.warmup_steps) / span;
  return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(M_PI * t));
}

Optimizer::Optimizer(const OptimizerConfig& c, size_t n_params, std::vector<DecayRange> ranges)
    : c_(c), ranges_(std::move(ranges)), m_(n_params, 0.0f) {
  check(c.lr > 0 && c.min_lr >= 0 && c.min_lr <= c.lr,
        "optimizer: need lr > 0 and 0 <= min_lr <= lr");
  check(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1,
        "optimizer: betas must be in [0, 1)");
  check(c.eps > 0 && c.weight_decay >= 0 && c.grad_clip >= 0,
        "optimizer: eps must be > 0, weight_decay and grad_clip >= 0");
  if (c.kind == OptimizerKind::AdamW) v_.assign(n_params, 0.0f);
}

void Optimizer::update(float* p, const float* g, double lr, ThreadPool& pool) {
  ++t_;
  const float b1 = static_cast<float>(c_.beta1), b2 = static_cast<float>(c_.beta2);
  const float bc1 = static_cast<float>(1.0 - std::pow(c_.beta1, static_cast<double>(t_)));
  const float bc2 = static_cast<float>(1.0 - std::pow(c_.beta2, static_cast<double>(t_)));
  const float flr = static_cast<float>(lr), eps = static_cast<float>(c_.eps);
  for (const DecayRange& r : ranges_) {
    const float wd = r.decay ? static_cast<float>(c_.weight_decay) : 0.0f;
    const int64_t n = static_cast<int64_t>(r.end - r.begin);
    float* pp = p + r.begin;
    const float* gg = g + r.begin;
    float* m = m_.data() + r.begin;
    if (c_.kind == OptimizerKind::AdamW) {
      float* v = v_.data() + r.begin;
      pool.parallel_for(
          n,
          [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) {
              m[i] = b1 * m[i] + (1 - b1) * gg[i];
              v[i] = b2 * v[i] + (1 - b2) * gg[i] * gg[i];
              const float mh = m[i] / bc1, vh = v[i] / bc2;
              pp[i] -= flr * (mh / (std::sqrt(vh) + eps) + wd * pp[i]);
            }
          },
          4096);
    } else {
      pool.parallel_for(
          n,
          [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) {
              const float cdir = b1 * m[i] + (1 - b1) * gg[i];
              const float s = cdir > 0 ? 1.0f : (cdir < 0 ? -1.0f : 0.0f);
              pp[i] -= flr * (s + wd * pp[i]);
              m[i] = b2 * m[i] + (1 - b2) * gg[i];
            }
          },
          4096);
    }
  }
}

double global_norm(const float* g, size_t n, ThreadPool& pool) {
  const int64_t nb = (static_cast<int64_t>(n) + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(nb), 0.0);
  pool.parallel_for(nb, [&](int64_t b, int64_t e, int) {
    for (int64_t blk = b; blk < e; ++blk) {
      const size_t i0 = static_cast<size_t>(blk * kBlock);
      const size_t i1 = std::min(n, i0 + static_cast<size_t>(kBlock));
      double s = 0;
      for (size_t i = i0; i < i1; ++i) s += static_cast<double>(g[i]) * g[i];
      part[static_cast<size_t>(blk)] = s;
    }
  });
  double s = 0;
  for (double x : part) s += x;
  return std::sqrt(s);
}

void scale_grads(float* g, size_t n, float factor, ThreadPool& pool) {
  pool.parallel_for(
      static_cast<int64_t>(n),
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) g[i] *= factor;
      },
      4096);
}

bool all_finite(const float* g, size_t n, ThreadPool& pool) {
  const int64_t nb = (static_cast<int64_t>(n) + kBlock - 1) / kBlock;
  std::vector<uint8_t> bad(static_cast<size_t>(nb), 0);
  pool.parallel_for(nb, [&](int64_t b, int64_t e, int) {
    for (int64_t blk = b; blk < e; ++blk) {
      const size_t i0 = static_cast<size_t>(blk * kBlock);
      const size_t i1 = std::min(n, i0 + static_cast<size_t>(kBlock));
      for (size_t i = i0; i < i1; ++i)
        if (!std::isfinite(g[i])) {
          bad[static_cast<size_t>(blk)] = 1;
          break;
        }
    }
  });
  return std::none_of(bad.begin(), bad.end(), [](uint8_t x) { return x != 0; });
}

}  // namespace brisk::train
