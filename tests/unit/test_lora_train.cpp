// LoRA / QLoRA training: the adapter gradients are the chain rule through W + s*B*A, the merged
// model equals the adapted one, training changes only the adapters, QLoRA lowers held-out loss.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "train/lora_hook.h"
#include "train/trainer.h"

namespace brisk::train {
namespace {

ModelShape shape() {
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

Batch batch(uint64_t seed, int64_t seqs = 2, int64_t len = 24) {
  Batch b;
  b.seq_start = {0};
  uint64_t x = seed;
  for (int64_t s = 0; s < seqs; ++s) {
    for (int64_t i = 0; i < len; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      b.tokens.push_back(static_cast<int32_t>((x >> 33) % 64));
    }
    b.seq_start.push_back(b.n_tokens());
  }
  for (int64_t i = 0; i < b.n_tokens(); ++i)
    b.targets.push_back(static_cast<int32_t>((b.tokens[static_cast<size_t>(i)] * 5 + 3) % 64));
  return b;
}

TEST(LoraTrain, AdapterGradientsFollowTheChainRuleAndMergeMatches) {
  const ModelShape s = shape();
  LlamaTrainer<float> model(s, 2);
  const std::vector<float> base = init_params(model.layout(), s, 4);
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8;
  lc.targets = parse_lora_targets("attn_q,attn_v,ffn_down");
  LoraHook hook(model, base.data(), lc);
  for (size_t i = 0; i < hook.params().size(); ++i)
    hook.params()[i] = 0.05f * static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
  const Batch b = batch(7);

  // Adapted model: loss, logits and adapter gradients.
  model.set_hook(&hook);
  StepOptions o;
  o.train_base = false;
  std::fill(hook.grads().begin(), hook.grads().end(), 0.0f);
  const StepResult ra = model.step(b, base.data(), nullptr, o);
  std::vector<float> la;
  model.logits(b, base.data(), la);
  model.set_hook(nullptr);

  // Merged dense model: same loss and logits; its dense gradient G gives the adapters' gradients
  // dB = s G A^T and dA = s B^T G.
  std::vector<float> merged = base;
  hook.merge_into(merged.data());
  std::vector<float> g(merged.size(), 0.0f);
  const StepResult rm = model.step(b, merged.data(), g.data(), {});
  std::vector<float> lm;
  model.logits(b, merged.data(), lm);
  EXPECT_NEAR(ra.loss_sum, rm.loss_sum, 1e-4 * std::abs(rm.loss_sum));
  double scale = 0, worst = 0;
  for (float x : lm) scale = std::max(scale, static_cast<double>(std::abs(x)));
  for (size_t i = 0; i < lm.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(la[i]) - lm[i]));
  EXPECT_LT(worst / scale, 1e-5);

  const float sc = static_cast<float>(lc.alpha / lc.rank);
  for (const LoraHook::Target& t : hook.targets()) {
    const ParamLayout::Layer& L = model.layout().layer(t.layer);
    const size_t widx = t.mat == Mat::Q ? L.wq : t.mat == Mat::V ? L.wv : L.down;
    const float* G = g.data() + model.layout().params()[widx].offset;  // (out, in)
    const float* A = hook.params().data() + t.a_off;
    const float* B = hook.params().data() + t.b_off;
    const float* dA = hook.grads().data() + t.a_off;
    const float* dB = hook.grads().data() + t.b_off;
    double err = 0, mag = 0;
    for (int64_t o2 = 0; o2 < t.out; ++o2)
      for (int64_t k = 0; k < lc.rank; ++k) {
        double want = 0;
        for (int64_t i = 0; i < t.in; ++i) want += sc * G[o2 * t.in + i] * A[k * t.in + i];
        err = std::max(err, std::abs(want - dB[o2 * lc.rank + k]));
        mag = std::max(mag, std::abs(want));
      }
    for (int64_t k = 0; k < lc.rank; ++k)
      for (int64_t i = 0; i < t.in; ++i) {
        double want = 0;
        for (int64_t o2 = 0; o2 < t.out; ++o2) want += sc * B[o2 * lc.rank + k] * G[o2 * t.in + i];
        err = std::max(err, std::abs(want - dA[k * t.in + i]));
        mag = std::max(mag, std::abs(want));
      }
    EXPECT_GT(mag, 0);
    EXPECT_LT(err / mag, 1e-3) << "layer " << t.layer << " " << mat_tensor_name(t.mat);
  }
}

class OneBatch : public BatchSource {
 public:
  explicit OneBatch(uint64_t seed) : seed_(seed) {}
  Batch next() override { return batch(seed_ + n_++, 4, 32); }
  std::vector<uint8_t> state() const override { return {static_cast<uint8_t>(n_)}; }
  void restore(const std::vector<uint8_t>& s) override { n_ = s.at(0); }

 private:
  uint64_t seed_, n_ = 0;
};

TEST(LoraTrain, OnlyAdaptersChangeAndQloraLowersHeldOutLoss) {
  const ModelShape s = shape();
  for (DType base_type : {DType::F32, DType::Q8_0, DType::Q4_0}) {
    LlamaTrainer<float> model(s, 2);
    const std::vector<float> base = init_params(model.layout(), s, 4);
    LoraConfig lc;
    lc.rank = 8;
    lc.alpha = 16;
    lc.dropout = 0.05;
    lc.targets = parse_lora_targets("all");
    lc.base_type = base_type;
    LoraHook hook(model, base.data(), lc);
    model.set_hook(&hook);
    OneBatch train(100), val(5000);
    OptimizerConfig oc;
    oc.lr = 3e-3;
    oc.warmup_steps = 5;
    oc.total_steps = 60;
    oc.weight_decay = 0;
    Trainer tr(model, base, oc, {}, train);
    tr.set_adapter_params(hook.params().data(), hook.grads().data(), hook.params().size(),
                          hook.decay_ranges());
    const std::vector<float> adapters0 = hook.params();
    const double before = tr.evaluate(val, 4);
    for (int i = 0; i < 60; ++i) tr.step();
    const double after = tr.evaluate(val, 4);
    EXPECT_LT(after, before * 0.8) << dtype_name(base_type) << ": " << before << " -> " << after;
    EXPECT_EQ(tr.params(), base) << "the base must stay frozen";
    EXPECT_NE(hook.params(), adapters0);
    if (base_type == DType::Q4_0) {
      EXPECT_LT(hook.base_bytes() * 6, base.size() * 4);  // ~4.5 bits vs 32 per weight
    }
  }
  EXPECT_THROW(parse_lora_targets("attn_x"), Error);
}

}  // namespace
}  // namespace brisk::train
