// Gradient checks of the training ops and of a whole tiny llama against central finite
// differences in double precision, and the equivalences the trainer relies on (checkpointing,
// packed batches, mixed-precision storage).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "core/error.h"
#include "train/grad_ops.h"
#include "train/llama_train.h"

namespace brisk::train {
namespace {

using Vec = std::vector<double>;

Vec randn(size_t n, uint64_t seed, double sd = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, sd);
  Vec v(n);
  for (double& x : v) x = d(rng);
  return v;
}

// Checks d f / d x[i] == grad[i] by central differences for every i (or every `stride`-th).
void expect_grad(const std::function<double()>& f, Vec& x, const Vec& grad, const char* what,
                 double tol = 1e-6, size_t stride = 1) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  const double h = 1e-5;
  double worst = 0;
  for (size_t i = 0; i < x.size(); i += stride) {
    const double keep = x[i];
    x[i] = keep + h;
    const double fp = f();
    x[i] = keep - h;
    const double fm = f();
    x[i] = keep;
    const double fd = (fp - fm) / (2 * h);
    const double err = std::abs(fd - grad[i]) / std::max(1.0, std::abs(fd));
    worst = std::max(worst, err);
    EXPECT_LT(err, tol) << what << "[" << i << "]: finite difference " << fd << " analytic "
                        << grad[i];
    if (err >= tol) return;  // one report is enough
  }
  EXPECT_LT(worst, tol) << what;
}

double weighted_sum(const Vec& y, const Vec& w) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += y[i] * w[i];
  return s;
}

TEST(TrainGradOps, MatmulRmsnormSwiglu) {
  ThreadPool pool(2);
  const int64_t N = 5, I = 7, O = 6;
  Vec x = randn(N * I, 1), w = randn(O * I, 2), wy = randn(N * O, 3);
  auto f = [&] {
    Vec y(N * O);
    matmul_fwd(x.data(), w.data(), y.data(), N, I, O);
    return weighted_sum(y, wy);
  };
  Vec dx(N * I), dw(O * I, 0.0);
  matmul_bwd(x.data(), w.data(), wy.data(), dx.data(), dw.data(), N, I, O);
  expect_grad(f, x, dx, "matmul dx");
  expect_grad(f, w, dw, "matmul dw");

  const int64_t D = 9;
  Vec xr = randn(N * D, 4), g = randn(D, 5), wr = randn(N * D, 6);
  auto fr = [&] {
    Vec y(N * D), r(N);
    rmsnorm_fwd(xr.data(), g.data(), y.data(), r.data(), N, D, 1e-5, pool);
    return weighted_sum(y, wr);
  };
  Vec y(N * D), r(N), dxr(N * D), dg(D, 0.0);
  rmsnorm_fwd(xr.data(), g.data(), y.data(), r.data(), N, D, 1e-5, pool);
  rmsnorm_bwd(xr.data(), g.data(), r.data(), wr.data(), dxr.data(), dg.data(), N, D, false, pool);
  expect_grad(fr, xr, dxr, "rmsnorm dx");
  expect_grad(fr, g, dg, "rmsnorm dw");

  Vec ga = randn(40, 7, 2.0), ua = randn(40, 8), wa = randn(40, 9);
  auto fs = [&] {
    Vec a(40);
    swiglu_fwd(ga.data(), ua.data(), a.data(), 40, pool);
    return weighted_sum(a, wa);
  };
  Vec dga(40), dua(40);
  swiglu_bwd(ga.data(), ua.data(), wa.data(), dga.data(), dua.data(), 40, pool);
  expect_grad(fs, ga, dga, "swiglu dgate");
  expect_grad(fs, ua, dua, "swiglu dup");
}

TEST(TrainGradOps, RopeInverseIsTheTranspose) {
  ThreadPool pool(1);
  const int64_t N = 4, Hh = 3, hd = 8;
  Vec x = randn(N * Hh * hd, 10), wy = randn(N * Hh * hd, 11);
  std::vector<int64_t> pos = {0, 1, 7, 100};
  auto f = [&] {
    Vec y = x;
    rope_apply(y.data(), pos.data(), N, Hh, hd, 10000.0, false, pool);
    return weighted_sum(y, wy);
  };
  Vec dx = wy;
  rope_apply(dx.data(), pos.data(), N, Hh, hd, 10000.0, true, pool);
  expect_grad(f, x, dx, "rope");
  // Position 0 is the identity.
  Vec z = randn(Hh * hd, 12), z0 = z;
  int64_t p0 = 0;
  rope_apply(z.data(), &p0, 1, Hh, hd, 10000.0, false, pool);
  for (size_t i = 0; i < z.size(); ++i) EXPECT_DOUBLE_EQ(z[i], z0[i]);
}

TEST(TrainGradOps, CausalGqaAttentionOverPackedSequences) {
  ThreadPool pool(2);
  const int64_t H = 4, G = 2, hd = 6;
  const std::vector<int64_t> seq = {0, 5, 6, 9};  // three sequences: 5, 1 and 3 tokens
  const int64_t N = seq.back();
  Vec q = randn(N * H * hd, 20), k = randn(N * G * hd, 21), v = randn(N * G * hd, 22);
  Vec wo = randn(N * H * hd, 23);
  auto f = [&] {
    Vec o(N * H * hd), lse(N * H);
    attention_fwd(q.data(), k.data(), v.data(), o.data(), lse.data(), seq, H, G, hd, pool);
    return weighted_sum(o, wo);
  };
  Vec o(N * H * hd), lse(N * H), dq(q.size()), dk(k.size()), dv(v.size());
  attention_fwd(q.data(), k.data(), v.data(), o.data(), lse.data(), seq, H, G, hd, pool);
  attention_bwd(q.data(), k.data(), v.data(), o.data(), lse.data(), wo.data(), dq.data(), dk.data(),
                dv.data(), seq, H, G, hd, pool);
  expect_grad(f, q, dq, "attention dq");
  expect_grad(f, k, dk, "attention dk");
  expect_grad(f, v, dv, "attention dv");
  // Causality and sequence isolation: the first token of each sequence attends only to itself.
  for (int64_t s = 0; s + 1 < static_cast<int64_t>(seq.size()); ++s)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < hd; ++d)
        EXPECT_NEAR(o[(seq[s] * H + h) * hd + d], v[(seq[s] * G + h / (H / G)) * hd + d], 1e-12);
}

TEST(TrainGradOps, CrossEntropyAndDistillation) {
  ThreadPool pool(2);
  const int64_t N = 4, V = 7;
  Vec z = randn(N * V, 30, 2.0);
  std::vector<int32_t> t = {3, Batch::kIgnore, 0, 6};
  auto f = [&] {
    Vec zz = z;
    return cross_entropy(zz.data(), t.data(), N, V, false, 1.0, 1.0, nullptr, pool) / 3.0;
  };
  Vec g = z;
  int64_t n = 0;
  const double loss = cross_entropy(g.data(), t.data(), N, V, true, 1.0, 3.0, &n, pool);
  EXPECT_EQ(n, 3);
  EXPECT_GT(loss, 0);
  expect_grad(f, z, g, "cross entropy");

  Vec teacher = randn(N * V, 31, 2.0);
  softmax_rows(teacher.data(), N, V, 2.0, pool);
  for (int64_t r = 0; r < N; ++r) {
    double s = 0;
    for (int64_t i = 0; i < V; ++i) s += teacher[r * V + i];
    EXPECT_NEAR(s, 1.0, 1e-12);
  }
  auto fk = [&] {
    return kl_to_teacher<double>(z.data(), teacher.data(), t.data(), nullptr, N, V, 2.0, 1.0, 1.0,
                                 pool);
  };
  Vec gk(N * V, 0.0);
  kl_to_teacher<double>(z.data(), teacher.data(), t.data(), gk.data(), N, V, 2.0, 1.0, 1.0, pool);
  expect_grad(fk, z, gk, "distillation KL");
  // KL to itself is zero.
  Vec self = z;
  softmax_rows(self.data(), N, V, 2.0, pool);
  EXPECT_NEAR(
      kl_to_teacher<double>(z.data(), self.data(), t.data(), nullptr, N, V, 2.0, 1.0, 1.0, pool),
      0.0, 1e-12);
}

ModelShape tiny_shape(bool tied) {
  ModelShape s;
  s.dim = 8;
  s.layers = 2;
  s.heads = 2;
  s.kv_heads = 1;
  s.ffn = 12;
  s.vocab = 13;
  s.context = 16;
  s.tied = tied;
  return s;
}

Batch tiny_batch() {
  Batch b;
  b.tokens = {1, 5, 7, 2, 12, 0, 3, 3, 9};
  b.targets = {5, 7, 2, Batch::kIgnore, 4, 3, 3, 9, 11};
  b.seq_start = {0, 5, 9};
  return b;
}

class WholeModel : public ::testing::TestWithParam<bool> {};

TEST_P(WholeModel, GradientOfTheLossMatchesFiniteDifferences) {
  const ModelShape s = tiny_shape(GetParam());
  LlamaTrainer<double> tr(s, 2);
  const std::vector<float> init = init_params(tr.layout(), s, 7);
  Vec p(init.begin(), init.end());
  // Norm weights away from 1 so their gradients are exercised in general position.
  for (const ParamInfo& pi : tr.layout().params())
    if (pi.rows == 1)
      for (size_t i = 0; i < pi.size(); ++i) p[pi.offset + i] = 1.0 + 0.1 * std::sin(3.0 * i);
  for (double& x : p) x *= 5;  // larger weights: attention away from uniform
  const Batch b = tiny_batch();
  StepOptions o;
  auto f = [&] {
    StepOptions fo;
    fo.grad = false;
    const StepResult r = tr.step(b, p.data(), nullptr, fo);
    return r.loss_sum / static_cast<double>(r.n_counted);
  };
  Vec g(p.size(), 0.0);
  const StepResult r = tr.step(b, p.data(), g.data(), o);
  EXPECT_EQ(r.n_counted, 8);
  expect_grad(f, p, g, s.tied ? "tied model" : "untied model", 1e-6);

  // Checkpointing gives the same gradient.
  Vec gc(p.size(), 0.0);
  o.checkpointing = true;
  tr.step(b, p.data(), gc.data(), o);
  for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], gc[i]) << i;
}

INSTANTIATE_TEST_SUITE_P(Tied, WholeModel, ::testing::Values(true, false));

TEST(TrainModel, PackedSequencesAreIndependent) {
  // Logits of a sequence do not depend on what else is packed in the batch.
  const ModelShape s = tiny_shape(true);
  LlamaTrainer<float> tr(s, 2);
  const std::vector<float> p = init_params(tr.layout(), s, 3);
  const Batch both = tiny_batch();
  Batch second;
  second.tokens = {0, 3, 3, 9};  // the second sequence of tiny_batch()
  second.targets = {3, 3, 9, 11};
  second.seq_start = {0, 4};
  std::vector<float> lb, ls;
  tr.logits(both, p.data(), lb);
  tr.logits(second, p.data(), ls);
  for (size_t i = 0; i < ls.size(); ++i) EXPECT_NEAR(lb[5 * s.vocab + i], ls[i], 1e-5) << i;
}

TEST(TrainModel, CheckpointingIsBitIdenticalInEveryPrecision) {
  ModelShape s = tiny_shape(false);
  s.dim = 32;
  s.heads = 4;
  s.kv_heads = 2;
  s.ffn = 48;
  s.vocab = 40;
  LlamaTrainer<float> tr(s, 2);
  const std::vector<float> p = init_params(tr.layout(), s, 5);
  Batch b;
  for (int i = 0; i < 20; ++i) {
    b.tokens.push_back((i * 7) % 40);
    b.targets.push_back((i * 11 + 3) % 40);
  }
  b.seq_start = {0, 12, 20};
  for (Precision prec : {Precision::F32, Precision::BF16, Precision::F16}) {
    StepOptions o;
    o.precision = prec;
    std::vector<float> g1(p.size(), 0.f), g2(p.size(), 0.f);
    const StepResult r1 = tr.step(b, p.data(), g1.data(), o);
    o.checkpointing = true;
    const StepResult r2 = tr.step(b, p.data(), g2.data(), o);
    EXPECT_EQ(r1.loss_sum, r2.loss_sum) << precision_name(prec);
    for (size_t i = 0; i < g1.size(); ++i) ASSERT_EQ(g1[i], g2[i]) << precision_name(prec) << i;
  }
}

TEST(TrainModel, HalfPrecisionStorageTracksF32Gradients) {
  ModelShape s = tiny_shape(true);
  s.dim = 32;
  s.heads = 4;
  s.kv_heads = 2;
  s.ffn = 64;
  s.vocab = 50;
  LlamaTrainer<float> tr(s, 1);
  const std::vector<float> p = init_params(tr.layout(), s, 9);
  Batch b = tiny_batch();
  std::vector<float> ref(p.size(), 0.f);
  tr.step(b, p.data(), ref.data(), {});
  double nref = 0;
  for (float x : ref) nref += double(x) * x;
  for (Precision prec : {Precision::BF16, Precision::F16}) {
    StepOptions o;
    o.precision = prec;
    std::vector<float> g(p.size(), 0.f);
    tr.step(b, p.data(), g.data(), o);
    double nd = 0;
    for (size_t i = 0; i < g.size(); ++i) nd += double(g[i] - ref[i]) * (g[i] - ref[i]);
    // Relative error of the whole gradient: bf16 keeps 8 bits, f16 11.
    EXPECT_LT(std::sqrt(nd / nref), prec == Precision::BF16 ? 2e-2 : 3e-3) << precision_name(prec);
    EXPECT_GT(std::sqrt(nd / nref), 0.0) << precision_name(prec);
  }
}

TEST(TrainModel, RejectsBadBatches) {
  const ModelShape s = tiny_shape(true);
  LlamaTrainer<float> tr(s, 1);
  const std::vector<float> p = init_params(tr.layout(), s, 3);
  std::vector<float> g(p.size());
  Batch b = tiny_batch();
  b.tokens[2] = 99;
  EXPECT_THROW(tr.step(b, p.data(), g.data(), {}), Error);
  b = tiny_batch();
  b.seq_start = {0, 4};
  EXPECT_THROW(tr.step(b, p.data(), g.data(), {}), Error);
  b = tiny_batch();
  b.targets[0] = 13;
  EXPECT_THROW(tr.step(b, p.data(), g.data(), {}), Error);
}

}  // namespace
}  // namespace brisk::train
