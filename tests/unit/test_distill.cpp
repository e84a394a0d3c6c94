// Distillation: on the same data and budget, a student trained with the teacher's softened
// distribution ends closer to the teacher (KL) than one trained on the data alone.
#include <gtest/gtest.h>

#include <cstdio>

#include "train/grad_ops.h"
#include "train/rng.h"
#include "train/trainer.h"

namespace brisk::train {
namespace {

// Each token follows from the previous one by one of two rules (70/30) plus noise: the data has
// a soft conditional distribution for the teacher to learn and pass on.
class Stream : public BatchSource {
 public:
  explicit Stream(uint64_t seed) : seed_(seed) {}
  Batch next() override {
    Batch b;
    b.seq_start = {0};
    for (int s = 0; s < 4; ++s) {
      int32_t t = static_cast<int32_t>(splitmix64(seed_ + n_) % 48);
      std::vector<int32_t> seq = {t};
      for (int i = 0; i < 32; ++i) {
        const uint64_t r = splitmix64(seed_ ^ splitmix64(n_ * 1000 + static_cast<uint64_t>(i)));
        t = r % 10 < 6   ? (t * 5 + 3) % 48
            : r % 10 < 9 ? (t * 7 + 1) % 48
                         : static_cast<int32_t>(r % 48);
        seq.push_back(t);
      }
      ++n_;
      for (size_t i = 0; i + 1 < seq.size(); ++i) {
        b.tokens.push_back(seq[i]);
        b.targets.push_back(seq[i + 1]);
      }
      b.seq_start.push_back(b.n_tokens());
    }
    return b;
  }
  std::vector<uint8_t> state() const override { return {static_cast<uint8_t>(n_)}; }
  void restore(const std::vector<uint8_t>& s) override { n_ = s.at(0); }

 private:
  uint64_t seed_, n_ = 0;
};

ModelShape make_shape(int64_t dim, int64_t layers) {
  ModelShape s;
  s.dim = dim;
  s.layers = layers;
  s.heads = 2;
  s.kv_heads = 1;
  s.ffn = dim * 2;
  s.vocab = 48;
  s.context = 64;
  return s;
}

TEST(Distill, TeacherSignalLowersTheStudentsKl) {
  // Teacher: trained on the data.
  const ModelShape ts = make_shape(64, 2);
  LlamaTrainer<float> teacher(ts, 2);
  OptimizerConfig oc;
  oc.lr = 3e-3;
  oc.warmup_steps = 10;
  oc.total_steps = 150;
  oc.weight_decay = 0;
  Stream tdata(1);
  Trainer ttr(teacher, init_params(teacher.layout(), ts, 1), oc, {}, tdata);
  for (int i = 0; i < 150; ++i) ttr.step();
  const std::vector<float> tparams = ttr.params();
  auto teacher_probs = [&](const Batch& b, double tau, std::vector<float>& p) {
    teacher.logits(b, tparams.data(), p);
    softmax_rows(p.data(), b.n_tokens(), ts.vocab, tau, teacher.pool());
  };

  // Two identical small students on a short budget: data alone vs data + teacher.
  const ModelShape ss = make_shape(32, 1);
  auto train_student = [&](bool kd) {
    LlamaTrainer<float> st(ss, 2);
    Stream data(2);
    OptimizerConfig so = oc;
    so.total_steps = 100;
    LoopConfig lc;
    lc.kd_alpha = 0.7;
    lc.kd_tau = 2.0;
    Trainer tr(st, init_params(st.layout(), ss, 3), so, lc, data);
    if (kd) tr.set_teacher(teacher_probs);
    for (int i = 0; i < 100; ++i) tr.step();
    // KL(teacher || student) at temperature 1 on held-out batches.
    Stream held(99);
    double kl = 0;
    int64_t n = 0;
    for (int i = 0; i < 8; ++i) {
      const Batch b = held.next();
      std::vector<float> p, z;
      teacher_probs(b, 1.0, p);
      st.logits(b, tr.params().data(), z);
      kl += kl_to_teacher<float>(z.data(), p.data(), b.targets.data(), nullptr, b.n_tokens(),
                                 ss.vocab, 1.0, 1.0, 1.0, st.pool());
      n += b.n_tokens();
    }
    return kl / static_cast<double>(n);
  };
  const double kl_data = train_student(false), kl_kd = train_student(true);
  std::printf("KL(teacher || student): data only %.4f, with distillation %.4f\n", kl_data, kl_kd);
  EXPECT_LT(kl_kd, kl_data * 0.9) << "KL with distillation " << kl_kd << ", data only " << kl_data;
}

}  // namespace
}  // namespace brisk::train
