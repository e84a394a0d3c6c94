// Tokenizer conformance: the shared test vectors (llama.cpp's vocab tests), the model prompts of
// the parity references, decode round trips, streaming and metadata validation.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "common/testdata.h"
#include "core/error.h"
#include "io/gguf/gguf.h"
#include "io/tokenizer/tokenizer.h"
#include "unit/tokenizer_test_util.h"

using namespace brisk;

namespace {

using test::load_cases;
using test::load_vocab;

void check_vectors(const tok::Tokenizer& t, const std::string& path, const std::string& label) {
  const auto cases = load_cases(path);
  ASSERT_GT(cases.size(), 10u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto ids = t.encode(c.text, false, false);
    EXPECT_EQ(ids, c.ids) << label << " case " << i << ": '" << c.text << "'";
    EXPECT_EQ(t.decode(ids), c.text) << label << " round trip, case " << i;
  }
}

class TokenizerVocab : public ::testing::TestWithParam<const char*> {};

}  // namespace

TEST_P(TokenizerVocab, MatchesReferenceVectors) {
  const std::string rel = std::string("tokenizer/ggml-vocab-") + GetParam() + ".gguf";
  auto t = load_vocab(rel);
  check_vectors(*t, test::testdata(rel), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerVocab,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "falcon",
                                           "deepseek-llm"));

TEST(Tokenizer, TinyLlamaPromptWithBos) {
  auto t = load_vocab("models/tiny-llama-f16.gguf");
  const auto ref = nlohmann::json::parse(
      test::read_text_file(test::testdata("reference/ref-tiny-llama-f16.json")));
  const std::string text =
      "In the beginning the engine read every weight from disk, and then it learned to batch "
      "requests, page its cache, and speak quickly.";
  const auto ids = t->encode(text, true, false);
  EXPECT_EQ(ids, ref["prompt_tokens"].get<std::vector<int32_t>>());
  EXPECT_EQ(ids.front(), t->bos_id());
  EXPECT_EQ(t->decode(ids, true), text);
}

TEST(Tokenizer, TinyQwen2PromptWithoutBos) {
  auto t = load_vocab("models/tiny-qwen2-f16.gguf");
  const auto ref = nlohmann::json::parse(
      test::read_text_file(test::testdata("reference/ref-tiny-qwen2-f16.json")));
  const std::string text =
      "def quick_sort(items):\n    return sorted(items)  # The engine speaks JSON, too: {\"ok\": "
      "true}";
  const auto ids = t->encode(text, true, false);
  EXPECT_EQ(ids, ref["prompt_tokens"].get<std::vector<int32_t>>());
  EXPECT_EQ(t->decode(ids), text);
}

namespace {

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    size_t n = b < 0x80             ? 1
               : (b & 0xE0) == 0xC0 ? 2
               : (b & 0xF0) == 0xE0 ? 3
               : (b & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

}  // namespace

TEST(Tokenizer, StreamDecoderHoldsPartialCharacters) {
  auto t = load_vocab("tokenizer/ggml-vocab-llama-spm.gguf");
  // The llama and the CJK extension-B character are not pieces: they fall back to byte tokens.
  const std::string text = "Hi 🦙 and 𠀋 ok é";
  const auto ids = t->encode(text, true, false);
  size_t byte_tokens = 0;
  for (int32_t id : ids) byte_tokens += t->token_type(id) == tok::TokenType::kByte;
  ASSERT_GE(byte_tokens, 8u);
  tok::StreamDecoder sd(*t, /*skip_special=*/true);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string part = sd.push(id);
    EXPECT_TRUE(valid_utf8(part)) << "partial UTF-8 emitted after token " << id;
    streamed += part;
  }
  streamed += sd.flush();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(streamed, t->decode(ids, true));

  // A byte-level BPE splits multi-byte characters into pieces too.
  auto g = load_vocab("tokenizer/ggml-vocab-gpt-2.gguf");
  const std::string text2 = "llama 🦙🦙 ½ € done";
  tok::StreamDecoder sd2(*g);
  std::string s2;
  for (int32_t id : g->encode(text2, false, false)) {
    const std::string part = sd2.push(id);
    EXPECT_TRUE(valid_utf8(part));
    s2 += part;
  }
  EXPECT_EQ(s2 + sd2.flush(), text2);
}

TEST(Tokenizer, SpecialTokensAndAccessors) {
  auto t = load_vocab("tokenizer/ggml-vocab-phi-3.gguf");
  EXPECT_EQ(t->model(), "llama");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 32000);
  EXPECT_TRUE(t->add_bos());
  EXPECT_FALSE(t->add_eos());
  EXPECT_FALSE(t->chat_template().empty());
  const int32_t end = t->find_token("<|end|>");
  ASSERT_GE(end, 0);
  EXPECT_TRUE(t->is_eog(end));
  EXPECT_TRUE(t->is_eog(32000));
  EXPECT_FALSE(t->is_eog(1));
  // With parse_special the control token is one id; without it, it is ordinary text.
  const auto with = t->encode("<|user|>\nHi<|end|>", false, true);
  EXPECT_EQ(with.front(), t->find_token("<|user|>"));
  EXPECT_EQ(with.back(), end);
  const auto without = t->encode("<|user|>\nHi<|end|>", false, false);
  EXPECT_EQ(std::count(without.begin(), without.end(), end), 0);
  EXPECT_EQ(t->decode(without), "<|user|>\nHi<|end|>");
  EXPECT_EQ(t->decode(with, /*skip_special=*/true), "Hi");
  // BOS is added by add_special and dropped by skip_special.
  const auto ids = t->encode("Hello", true, false);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(t->decode(ids, true), "Hello");
  EXPECT_EQ(t->token_to_piece(ids[1]), " Hello");
  EXPECT_EQ(t->token_text(ids[1]), "\xE2\x96\x81Hello");
  EXPECT_EQ(t->token_to_piece(t->find_token("<0x41>")), "A");

  auto g = load_vocab("tokenizer/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(g->model(), "gpt2");
  EXPECT_EQ(g->pre(), "gpt-2");
  EXPECT_FALSE(g->add_bos());
  EXPECT_EQ(g->encode("<|endoftext|>", false, true), std::vector<int32_t>{50256});
  EXPECT_GT(g->encode("<|endoftext|>", false, false).size(), 1u);
  EXPECT_TRUE(g->is_eog(50256));
}
