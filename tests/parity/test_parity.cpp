// Golden end-to-end parity against logits computed by an independent implementation
// (../shared/testdata/reference), plus prefill == token-by-token, stories260K greedy tokens, and
// the llama2.c -> GGUF conversion. Each test prints the measured figures.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "common/testdata.h"
#include "io/tokenizer/tokenizer.h"
#include "parity/parity_util.h"

using namespace brisk;

namespace {

const char* kLlamaPrompt =
    "In the beginning the engine read every weight from disk, and then it learned to batch "
    "requests, "
    "page its cache, and speak quickly.";
const char* kQwenPrompt =
    "def quick_sort(items):\n    return sorted(items)  # The engine speaks JSON, too: {\"ok\": "
    "true}";

struct Case {
  std::string model;
  std::string prompt;
  bool add_bos;
  double max_rms;
  double min_argmax;
};

class Parity : public ::testing::TestWithParam<Case> {};

TEST_P(Parity, MatchesReferenceLogits) {
  const Case& c = GetParam();
  auto ref = nlohmann::json::parse(
      test::read_text_file(test::testdata("reference/ref-" + c.model + ".json")));
  std::vector<int32_t> want = ref["prompt_tokens"].get<std::vector<int32_t>>();
  const int64_t n_vocab = ref["n_vocab"].get<int64_t>();
  std::vector<float> ref_logits =
      test::read_f32_file(test::testdata("reference/ref-" + c.model + ".logits.f32"));
  ASSERT_EQ(ref_logits.size(), want.size() * static_cast<size_t>(n_vocab));

  io::ModelFile mf = io::load_model_file(test::testdata("models/" + c.model + ".gguf"));
  auto tk = tok::Tokenizer::from_metadata(mf.metadata, c.model);
  EXPECT_EQ(tk->encode(c.prompt, c.add_bos, false), want) << "prompt tokenization";
  auto m = model::Model::load(std::move(mf));
  ASSERT_EQ(m->n_vocab(), n_vocab);

  ThreadPool pool(2);
  std::vector<float> prefill = test::run_logits(*m, want, 0, pool);
  std::vector<float> stepwise = test::run_logits(*m, want, 1, pool);
  test::LogitsDiff dp = test::compare_logits(prefill, ref_logits, n_vocab);
  test::LogitsDiff ds = test::compare_logits(stepwise, ref_logits, n_vocab);
  test::LogitsDiff self = test::compare_logits(stepwise, prefill, n_vocab);
  std::printf(
      "[parity] %-18s prefill rms %.2e argmax %.3f | token-by-token rms %.2e argmax %.3f | "
      "prefill vs stepwise rms %.2e\n",
      c.model.c_str(), dp.rms_ratio, dp.argmax_agree, ds.rms_ratio, ds.argmax_agree,
      self.rms_ratio);
  EXPECT_LE(dp.rms_ratio, c.max_rms);
  EXPECT_LE(ds.rms_ratio, c.max_rms);
  EXPECT_GE(dp.argmax_agree, c.min_argmax);
  EXPECT_GE(ds.argmax_agree, c.min_argmax);
  EXPECT_LE(self.rms_ratio, 1e-5) << "prefill and token-by-token decoding disagree";

  // Greedy continuation from the reference file, as a further end-to-end check.
  std::vector<int32_t> greedy_ref = ref["greedy_tokens"].get<std::vector<int32_t>>();
  if (c.max_rms <= 2e-3) {
    std::vector<int32_t> got = test::greedy(*m, want, static_cast<int>(greedy_ref.size()), pool);
    EXPECT_EQ(got, greedy_ref);
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, Parity,
                         ::testing::Values(Case{"tiny-llama-f16", kLlamaPrompt, true, 2e-3, 1.0},
                                           Case{"tiny-qwen2-f16", kQwenPrompt, false, 2e-3, 1.0},
                                           Case{"tiny-llama-Q8_0", kLlamaPrompt, true, 5e-2, 0.9},
                                           Case{"tiny-llama-Q6_K", kLlamaPrompt, true, 5e-2, 0.9},
                                           Case{"tiny-llama-Q4_K_M", kLlamaPrompt, true, 5e-2, 0.9},
                                           Case{"tiny-llama-Q4_0", kLlamaPrompt, true, 5e-2, 0.9}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string s = i.param.model;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

std::vector<int32_t> stories_greedy_ref() {
  auto ref =
      nlohmann::json::parse(test::read_text_file(test::testdata("reference/ref-stories260K.json")));
  return ref["greedy_tokens"].get<std::vector<int32_t>>();
}

TEST(ParityStories, GgufGreedyTokensMatch) {
  auto m = model::Model::load(io::load_model_file(test::testdata("models/stories260K.gguf")));
  ThreadPool pool(2);
  auto want = stories_greedy_ref();
  EXPECT_EQ(test::greedy(*m, {1}, static_cast<int>(want.size()), pool), want);
}

TEST(ParityStories, Llama2cGreedyTokensMatch) {
  auto m =
      model::Model::load(io::load_model_file(test::testdata("models/stories260K.llama2c.bin")));
  ThreadPool pool(1);
  auto want = stories_greedy_ref();
  EXPECT_EQ(test::greedy(*m, {1}, static_cast<int>(want.size()), pool), want);
}

TEST(ParityStories, Llama2cConvertedToGgufGivesSameLogits) {
  test::TempDir dir;
  io::LoadOptions opts;
  opts.vocab_from = test::testdata("models/stories260K.gguf");
  io::ModelFile src = io::load_model_file(test::testdata("models/stories260K.llama2c.bin"), opts);
  io::write_gguf(src, dir.file("s.gguf"));
  auto a =
      model::Model::load(io::load_model_file(test::testdata("models/stories260K.llama2c.bin")));
  auto b = model::Model::load(io::load_model_file(dir.file("s.gguf")));
  ThreadPool pool(2);
  std::vector<int32_t> ids = {1, 400, 261, 300, 50, 7, 480, 290, 13, 511};
  std::vector<float> la = test::run_logits(*a, ids, 0, pool);
  std::vector<float> lb = test::run_logits(*b, ids, 0, pool);
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(la, lb);  // same f32 weights, same code: bit-identical
}

}  // namespace
