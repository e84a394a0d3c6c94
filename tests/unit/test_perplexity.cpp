// Perplexity against a closed form: a model whose logits are all zero predicts the uniform
// distribution, so every token costs ln(V) and the perplexity is exactly V.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
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
  }
  EXPECT_THROW(perplexity(*m, toks, 64, 65, pool), Error);
  EXPECT_THROW(perplexity(*m, std::span<const int32_t>(toks.data(), 1), 64, 64, pool), Error);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace brisk::eval
