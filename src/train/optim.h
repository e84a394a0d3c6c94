// Optimizers over a flat f32 parameter array (the master weights), a learning-rate schedule and
// global-norm gradient clipping.
//
// AdamW: Adam moments m, v (f32, one each per parameter) with bias correction and decoupled weight
// decay (Loshchilov & Hutter): p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p).
// Lion (Chen et al. 2023): one moment m; p -= lr * (sign(b1 m + (1 - b1) g) + wd * p), then
// m = b2 m + (1 - b2) g.
// Weight decay applies only to the ranges marked `decay` (matrices, not norms or embeddings).
// State is plain arrays so that a checkpoint can save and restore it bit for bit.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"

namespace brisk::train {

enum class OptimizerKind { AdamW, Lion };
OptimizerKind parse_optimizer(const std::string& s);  // "adamw", "lion"
const char* optimizer_name(OptimizerKind k);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::AdamW;
  double lr = 3e-4, min_lr = 3e-5;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;
  int64_t warmup_steps = 100;
  int64_t total_steps = 1000;  // the cosine ends here (then min_lr)
  double grad_clip = 1.0;      // global-norm clip; 0 = off
};

// Linear warmup from lr/warmup to lr, then cosine from lr to min_lr at total_steps. step counts
// from 0.
double lr_at(const OptimizerConfig& c, int64_t step);

struct DecayRange {
  size_t begin, end;
  bool decay;
};

class Optimizer {
 public:
  Optimizer(const OptimizerConfig& c, size_t n_params, std::vector<DecayRange> ranges);
  // One update with learning rate lr from gradient g (already unscaled and clipped).
  void update(float* params, const float* grads, double lr, ThreadPool& pool);
  int64_t steps() const { return t_; }
  const OptimizerConfig& config() const { return c_; }
  // The state (moments and step count) for checkpoints.
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  void set_steps(int64_t t) { t_ = t; }
  size_t state_bytes() const { return (m_.size() + v_.size()) * sizeof(float); }

 private:
  OptimizerConfig c_;
  std::vector<DecayRange> ranges_;
  std::vector<float> m_, v_;  // v_ empty for Lion
  int64_t t_ = 0;
};

// Global L2 norm of g (summed in double in a fixed order: deterministic whatever the threads).
double global_norm(const float* g, size_t n, ThreadPool& pool);
// Scales g by `factor` in place.
void scale_grads(float* g, size_t n, float factor, ThreadPool& pool);
// True when every entry is finite.
bool all_finite(const float* g, size_t n, ThreadPool& pool);

}  // namespace brisk::train
