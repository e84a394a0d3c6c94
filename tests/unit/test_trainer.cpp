// The training loop: a tiny model overfits a fixed batch, mixed precision tracks fp32, a resumed
// run continues bit-identically, checkpoints reject corruption, the optimizers and the schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "train/optim.h"
#include "train/rng.h"
#include "train/trainer.h"

namespace brisk::train {
namespace {

// A token stream with structure a small model can learn: each token follows from the one before
// by a fixed permutation, except for 10% random tokens.
std::vector<int32_t> make_stream(int64_t n, int32_t vocab, uint64_t seed) {
  std::vector<int32_t> t = {1};
  for (int64_t i = 1; i < n; ++i) {
    const uint64_t r = splitmix64(seed + static_cast<uint64_t>(i));
    const int32_t next =
        (r % 10 == 0) ? static_cast<int32_t>((r >> 8) % vocab) : (t[i - 1] * 5 + 3) % vocab;
    t.push_back(next);
  }
  return t;
}

// Windows of seq_len + 1 tokens at seeded pseudo-random offsets; the state is the draw counter.
class StreamSource : public BatchSource {
 public:
  StreamSource(std::vector<int32_t> toks, int64_t seq_len, int64_t seqs, uint64_t seed)
      : t_(std::move(toks)), L_(seq_len), B_(seqs), seed_(seed) {}
  Batch next() override {
    Batch b;
    b.seq_start.push_back(0);
    for (int64_t s = 0; s < B_; ++s) {
      const uint64_t off = splitmix64(seed_ ^ splitmix64(counter_++)) % (t_.size() - L_ - 1);
      for (int64_t i = 0; i < L_; ++i) {
        b.tokens.push_back(t_[off + i]);
        b.targets.push_back(t_[off + i + 1]);
      }
      b.seq_start.push_back(b.n_tokens());
    }
    return b;
  }
  std::vector<uint8_t> state() const override {
    std::vector<uint8_t> s(8);
    std::memcpy(s.data(), &counter_, 8);
    return s;
  }
  void restore(const std::vector<uint8_t>& s) override {
    ASSERT_EQ(s.size(), 8u);
    std::memcpy(&counter_, s.data(), 8);
  }

 private:
  std::vector<int32_t> t_;
  int64_t L_, B_;
  uint64_t seed_, counter_ = 0;
};

// Always the same batch.
class FixedSource : public BatchSource {
 public:
  explicit FixedSource(Batch b) : b_(std::move(b)) {}
  Batch next() override { return b_; }
  std::vector<uint8_t> state() const override { return {}; }
  void restore(const std::vector<uint8_t>&) override {}

 private:
  Batch b_;
};

ModelShape small_shape() {
  ModelShape s;
  s.dim = 64;
  s.layers = 2;
  s.heads = 4;
  s.kv_heads = 2;
  s.ffn = 128;
  s.vocab = 64;
  s.context = 64;
  return s;
}

TEST(Trainer, TinyModelOverfitsAFixedBatch) {
  const ModelShape s = small_shape();
  LlamaTrainer<float> model(s, 2);
  StreamSource data(make_stream(4000, 64, 1), 32, 4, 9);
  FixedSource fixed(data.next());
  OptimizerConfig oc;
  oc.lr = 3e-3;
  oc.min_lr = 3e-3;
  oc.warmup_steps = 10;
  oc.weight_decay = 0;
  oc.total_steps = 300;
  Trainer tr(model, init_params(model.layout(), s, 1), oc, {}, fixed);
  double first = 0, last = 0;
  for (int i = 0; i < 300; ++i) {
    const StepStats st = tr.step();
    if (i == 0) first = st.loss;
    last = st.loss;
    if (last < 0.02) break;
  }
  EXPECT_GT(first, 3.5);  // ~ln(64) at initialisation
  EXPECT_LT(last, 0.05);
}

std::vector<double> run_losses(Precision p, bool ckpt, int steps, OptimizerKind k,
                               int schedule_steps = 200) {
  const ModelShape s = small_shape();
  LlamaTrainer<float> model(s, 2);
  StreamSource data(make_stream(20000, 64, 2), 32, 4, 5);
  OptimizerConfig oc;
  oc.kind = k;
  oc.lr = k == OptimizerKind::Lion ? 3e-4 : 2e-3;
  oc.min_lr = oc.lr / 10;
  oc.warmup_steps = 20;
  oc.total_steps = schedule_steps;
  LoopConfig lc;
  lc.precision = p;
  lc.checkpointing = ckpt;
  lc.micro_batches = 2;
  Trainer tr(model, init_params(model.layout(), s, 3), oc, lc, data);
  std::vector<double> losses;
  for (int i = 0; i < steps; ++i) losses.push_back(tr.step().loss);
  return losses;
}

double mean_tail(const std::vector<double>& v, size_t n) {
  double s = 0;
  for (size_t i = v.size() - n; i < v.size(); ++i) s += v[i];
  return s / static_cast<double>(n);
}

TEST(Trainer, MixedPrecisionTracksF32AndCheckpointingIsExact) {
  const int steps = 200;
  const std::vector<double> f32 = run_losses(Precision::F32, false, steps, OptimizerKind::AdamW);
  EXPECT_LT(mean_tail(f32, 20), f32.front() * 0.6);  // it learns
  for (Precision p : {Precision::BF16, Precision::F16}) {
    const std::vector<double> mp = run_losses(p, false, steps, OptimizerKind::AdamW);
    const double gap = std::abs(mean_tail(mp, 20) - mean_tail(f32, 20)) / mean_tail(f32, 20);
    EXPECT_LT(gap, 0.02) << precision_name(p) << " " << mean_tail(mp, 20) << " vs "
                         << mean_tail(f32, 20);
  }
  // Checkpointed training takes exactly the same trajectory.
  const std::vector<double> ck = run_losses(Precision::F32, true, 30, OptimizerKind::AdamW);
  for (size_t i = 0; i < ck.size(); ++i) EXPECT_EQ(ck[i], f32[i]) << i;
}

TEST(Trainer, LionLearns) {
  const std::vector<double> l = run_losses(Precision::F32, false, 150, OptimizerKind::Lion, 150);
  EXPECT_LT(mean_tail(l, 20), l.front() * 0.7);
}

TEST(Trainer, ResumeContinuesBitIdentically) {
  const ModelShape s = small_shape();
  OptimizerConfig oc;
  oc.lr = 2e-3;
  oc.warmup_steps = 5;
  oc.total_steps = 40;
  LoopConfig lc;
  lc.precision = Precision::F16;  // loss-scale state is part of the checkpoint too
  lc.loss_scale_growth = 7;
  lc.micro_batches = 2;
  const auto dir = std::filesystem::temp_directory_path() / "brisk_test_resume";
  std::filesystem::create_directories(dir);
  const std::string ck = (dir / "ck.bin").string();

  std::vector<double> full;
  {
    LlamaTrainer<float> model(s, 2);
    StreamSource data(make_stream(20000, 64, 4), 32, 4, 6);
    Trainer tr(model, init_params(model.layout(), s, 3), oc, lc, data);
    for (int i = 0; i < 30; ++i) full.push_back(tr.step().loss);
  }
  std::vector<double> resumed;
  {
    LlamaTrainer<float> model(s, 2);
    StreamSource data(make_stream(20000, 64, 4), 32, 4, 6);
    Trainer tr(model, init_params(model.layout(), s, 3), oc, lc, data);
    for (int i = 0; i < 18; ++i) resumed.push_back(tr.step().loss);
    tr.save(ck, "test config");
  }
  {
    LlamaTrainer<float> model(s, 2);
    StreamSource data(make_stream(20000, 64, 4), 32, 4, 6);
    Trainer tr(model, init_params(model.layout(), s, 99), oc, lc, data);  // other init: overwritten
    tr.load(ck);
    EXPECT_EQ(tr.steps_done(), 18);
    for (int i = 18; i < 30; ++i) resumed.push_back(tr.step().loss);
  }
  ASSERT_EQ(full.size(), resumed.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(full[i], resumed[i]) << "step " << i + 1;

  // A flipped byte or a truncated file is refused.
  {
    std::fstream f(ck, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x5a');
  }
  LlamaTrainer<float> model(s, 1);
  StreamSource data(make_stream(2000, 64, 4), 32, 4, 6);
  Trainer tr(model, init_params(model.layout(), s, 3), oc, lc, data);
  EXPECT_THROW(tr.load(ck), Error);
  std::filesystem::resize_file(ck, 100);
  EXPECT_THROW(tr.load(ck), Error);
  EXPECT_THROW(tr.load((dir / "missing.bin").string()), Error);
  std::filesystem::remove_all(dir);
}

TEST(Trainer, Fp16OverflowSkipsTheStepAndHalvesTheScale) {
  const ModelShape s = small_shape();
  LlamaTrainer<float> model(s, 1);
  StreamSource data(make_stream(5000, 64, 4), 32, 2, 6);
  LoopConfig lc;
  lc.precision = Precision::F16;
  lc.init_loss_scale = 1e30;  // every gradient overflows fp16
  Trainer tr(model, init_params(model.layout(), s, 3), {}, lc, data);
  const std::vector<float> before = tr.params();
  const StepStats st = tr.step();
  EXPECT_TRUE(st.skipped);
  EXPECT_EQ(tr.loss_scale(), 5e29);
  EXPECT_EQ(tr.params(), before);  // no update
  // The scale falls until steps go through.
  int skipped = 1;
  while (tr.step().skipped) ++skipped;
  EXPECT_GT(skipped, 50);
  EXPECT_LT(tr.loss_scale(), 1e6);
  EXPECT_NE(tr.params(), before);
}

TEST(Optim, ScheduleAndClipping) {
  OptimizerConfig c;
  c.lr = 1.0;
  c.min_lr = 0.1;
  c.warmup_steps = 10;
  c.total_steps = 110;
  EXPECT_DOUBLE_EQ(lr_at(c, 0), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(c, 9), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(c, 10), 1.0);
  EXPECT_NEAR(lr_at(c, 60), 0.55, 1e-12);  // halfway down the cosine
  EXPECT_DOUBLE_EQ(lr_at(c, 110), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(c, 500), 0.1);
  ThreadPool pool(2);
  std::vector<float> g = {3, 4, 0, 0};
  EXPECT_DOUBLE_EQ(global_norm(g.data(), g.size(), pool), 5.0);
  g[2] = std::nanf("");
  EXPECT_FALSE(all_finite(g.data(), g.size(), pool));
}

TEST(Optim, AdamWAndLionSteps) {
  ThreadPool pool(1);
  OptimizerConfig c;
  c.lr = 0.1;
  c.weight_decay = 0.5;
  // AdamW's first step moves each parameter by lr * sign(g) (bias-corrected m / sqrt(v) = +-1)
  // plus decay on the decayed range only.
  Optimizer a(c, 4, {{0, 2, true}, {2, 4, false}});
  std::vector<float> p = {1, 1, 1, 1}, g = {2, -3, 2, -3};
  a.update(p.data(), g.data(), 0.1, pool);
  EXPECT_NEAR(p[0], 1 - 0.1 * (1 + 0.5), 1e-6);
  EXPECT_NEAR(p[1], 1 - 0.1 * (-1 + 0.5), 1e-6);
  EXPECT_NEAR(p[2], 1 - 0.1, 1e-6);
  EXPECT_NEAR(p[3], 1 + 0.1, 1e-6);
  c.kind = OptimizerKind::Lion;
  Optimizer l(c, 2, {{0, 2, false}});
  std::vector<float> q = {0, 0}, h = {0.5f, -2};
  l.update(q.data(), h.data(), 0.01, pool);
  EXPECT_FLOAT_EQ(q[0], -0.01f);
  EXPECT_FLOAT_EQ(q[1], 0.01f);
  EXPECT_THROW(Optimizer(OptimizerConfig{.lr = -1}, 1, {}), Error);
}

}  // namespace
}  // namespace brisk::train
