// Perplexity against a closed form: a model whose logits are all zero predicts the uniform
// distribution, so every token costs ln(V) and the perplexity is exactly V.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "eval/kl.h"
#include "eval/perplexity.h"
#include "model/synth.h"
#include "train/export.h"

namespace brisk::eval {
namespace {

TEST(Perplexity, UniformModelHasPerplexityV) {
  train::ModelShape s;
  s.dim = 32;
  s.layers = 1;
  s.heads = 2;
  s.kv_heads = 1;
  s.ffn = 64;
  s.vocab = 354;  // the built-in byte vocabulary
  s.context = 64;
  const train::ParamLayout lay = train::ParamLayout::llama(s);
  const std::vector<float> zeros(lay.total(), 0.0f);
  const auto path = std::filesystem::temp_directory_path() / "brisk_test_ppl.gguf";
  io::write_gguf(
      train::export_model(s, lay, zeros.data(), model::builtin_byte_vocab(), DType::F32, "uniform"),
      path.string());
  auto m = model::Model::load(io::load_model_file(path.string()));
  std::vector<int32_t> toks;
  for (int i = 0; i < 150; ++i) toks.push_back((i * 31 + 7) % 354);
  ThreadPool pool(2);
  for (int64_t stride : {64, 32, 17}) {
    int64_t calls = 0;
    const PerplexityResult r =
        perplexity(*m, toks, 64, stride, pool, [&](int64_t, int64_t) { ++calls; });
    // Every token is scored once, but the first of each window that starts with no context
    // (all windows when they are disjoint, only the first otherwise).
    EXPECT_EQ(r.n_scored, stride == 64 ? 150 - r.n_windows : 149) << "stride " << stride;
    EXPECT_EQ(calls, r.n_windows);
    EXPECT_NEAR(r.mean_nll, std::log(354.0), 1e-5);
    EXPECT_NEAR(r.ppl, 354.0, 354.0 * 1e-5);
    EXPECT_NEAR(r.ppl_stderr, 0.0, 1e-3);
    EXPECT_EQ(r.n_scored, count_scored(150, 64, stride));
  }
  EXPECT_THROW(perplexity(*m, toks, 64, 65, pool), Error);
  EXPECT_THROW(perplexity(*m, std::span<const int32_t>(toks.data(), 1), 64, 64, pool), Error);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace brisk::eval

namespace brisk::eval {
namespace {

// Two-token vocabulary distributions with a closed-form KL.
TEST(Kl, ClosedFormTopOneAndBaseNll) {
  const float base_logits[2][2] = {{0.0f, 0.0f}, {std::log(3.0f), 0.0f}};  // (1/2,1/2), (3/4,1/4)
  const float model_logits[2][2] = {{std::log(3.0f), 0.0f}, {std::log(3.0f), 0.0f}};
  const auto path = std::filesystem::temp_directory_path() / "brisk_test_kl.bin";
  LogprobHeader h;
  h.n_vocab = 2;
  h.n_rows = 2;
  h.ctx = 8;
  h.stride = 8;
  const std::vector<int32_t> toks = {1, 0, 1};
  h.tokens_hash = hash_tokens(toks);
  {
    LogprobWriter w(path.string(), h);
    w.add(base_logits[0]);
    EXPECT_THROW(w.commit(), Error);  // one row short
    w.add(base_logits[1]);
    EXPECT_THROW(w.add(base_logits[1]), Error);
    w.commit();
  }
  LogprobReader r(path.string());
  EXPECT_EQ(r.header().n_rows, 2u);
  EXPECT_EQ(r.header().tokens_hash, hash_tokens(toks));
  EXPECT_NE(hash_tokens(toks), hash_tokens(std::vector<int32_t>{1, 0, 2}));
  EXPECT_NEAR(std::exp(r.row(1)[0]), 0.75, 1e-6);
  KlAccumulator kl(2);
  kl.add(r.row(0), model_logits[0], 0);
  kl.add(r.row(1), model_logits[1], 1);
  const KlStats s = kl.result();
  // KL((1/2,1/2) || (3/4,1/4)) = 1/2 ln(2/3) + 1/2 ln 2; the second position is identical.
  const double kl0 = 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25);
  EXPECT_NEAR(s.kl_mean, kl0 / 2, 1e-6);
  EXPECT_NEAR(s.kl_max, kl0, 1e-6);
  EXPECT_NEAR(s.kl_p99, kl0, 1e-6);
  EXPECT_NEAR(s.top1_agree, 1.0, 1e-12);  // argmax of a tie is the first token
  EXPECT_NEAR(s.base_mean_nll, (std::log(2.0) + std::log(4.0)) / 2, 1e-6);
  EXPECT_THROW(r.row(2), Error);
  // Truncated and foreign files are refused.
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  EXPECT_THROW(LogprobReader{path.string()}, Error);
  std::filesystem::resize_file(path, 10);
  EXPECT_THROW(LogprobReader{path.string()}, Error);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace brisk::eval
