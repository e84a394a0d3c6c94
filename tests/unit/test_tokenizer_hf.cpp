// tokenizer.json import/export and metadata validation.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>

#include "core/error.h"
#include "io/tokenizer/tokenizer.h"
#include "unit/tokenizer_test_util.h"

using namespace brisk;

namespace {

io::Metadata vocab_metadata(const std::string& rel) {
  return gguf::GgufFile::open(test::testdata(rel)).metadata();
}

// Expects `fn` to throw brisk::Error whose message contains every one of `parts`.
template <class Fn>
void expect_error(Fn&& fn, std::initializer_list<const char*> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const char* p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << msg << "' lacks '" << p << "'";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

io::Metadata replace_key(io::Metadata kv, const std::string& key, gguf::Value v) {
  for (auto& [k, old] : kv)
    if (k == key) {
      old = std::move(v);
      return kv;
    }
  kv.emplace_back(key, std::move(v));
  return kv;
}

io::Metadata drop_key(io::Metadata kv, const std::string& key) {
  std::erase_if(kv, [&](const auto& p) { return p.first == key; });
  return kv;
}

class TokenizerHfRoundTrip : public ::testing::TestWithParam<const char*> {};

}  // namespace

// GGUF metadata -> tokenizer.json (+ config) -> metadata: same encodings on every test vector.
TEST_P(TokenizerHfRoundTrip, SameEncodings) {
  const std::string rel = std::string("tokenizer/ggml-vocab-") + GetParam() + ".gguf";
  const io::Metadata kv = vocab_metadata(rel);
  const std::string tj = tok::tokenizer_json_from_metadata(kv);
  const std::string tc = tok::tokenizer_config_json_from_metadata(kv);
  ASSERT_TRUE(nlohmann::json::accept(tj));
  const io::Metadata back = tok::tokenizer_metadata_from_hf(tj, tc, "exported/tokenizer.json");
  auto a = tok::Tokenizer::from_metadata(kv, rel);
  auto b = tok::Tokenizer::from_metadata(back, "exported/tokenizer.json");
  EXPECT_EQ(a->n_vocab(), b->n_vocab());
  EXPECT_EQ(a->model(), b->model());
  EXPECT_EQ(a->pre(), b->pre());
  EXPECT_EQ(a->bos_id(), b->bos_id());
  EXPECT_EQ(a->eos_id(), b->eos_id());
  EXPECT_EQ(a->add_bos(), b->add_bos());
  EXPECT_EQ(a->add_space_prefix(), b->add_space_prefix());
  EXPECT_EQ(a->chat_template(), b->chat_template());
  const auto cases = test::load_cases(test::testdata(rel));
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(b->encode(cases[i].text, false, false), cases[i].ids)
        << "case " << i << ": '" << cases[i].text << "'";
    EXPECT_EQ(b->encode(cases[i].text, true, true), a->encode(cases[i].text, true, true))
        << "case " << i;
  }
  // The tokenizer.json alone (no config) still gives BOS handling through the post-processor.
  auto c =
      tok::Tokenizer::from_metadata(tok::tokenizer_metadata_from_hf(tj, "", "t.json"), "t.json");
  EXPECT_EQ(c->encode("Hello world", true, false), a->encode("Hello world", true, false));
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerHfRoundTrip,
                         ::testing::Values("llama-spm", "gpt-2", "phi-3", "falcon",
                                           "deepseek-llm"));

TEST(TokenizerHf, ImportsHandWrittenByteLevelBpe) {
  // A miniature Llama-3 style tokenizer.json, as Hugging Face writes it.
  const std::string tj = R"({
    "version": "1.0",
    "added_tokens": [{"id": 8, "content": "<|eot_id|>", "special": true}],
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4, "c": 5, "1": 6, "2": 7},
              "merges": [["a", "b"], "Ġ ab"]}
  })";
  const std::string cfg = R"({"bos_token": {"content": "<|eot_id|>"}, "eos_token": "<|eot_id|>",
                              "add_bos_token": false, "chat_template": [{"name": "default", "template": "T"}]})";
  const auto kv = tok::tokenizer_metadata_from_hf(tj, cfg, "mini/tokenizer.json");
  auto t = tok::Tokenizer::from_metadata(kv, "mini");
  EXPECT_EQ(t->model(), "gpt2");
  EXPECT_EQ(t->pre(), "llama3");
  EXPECT_EQ(t->n_vocab(), 9);
  EXPECT_EQ(t->eos_id(), 8);
  EXPECT_TRUE(t->is_eog(8));
  EXPECT_EQ(t->chat_template(), "T");
  EXPECT_EQ(t->encode("ab abc<|eot_id|>", true, true), (std::vector<int32_t>{3, 4, 5, 8}));
  EXPECT_EQ(t->decode(t->encode("ab abc", false, false)), "ab abc");
}

TEST(TokenizerHf, RejectsBadInput) {
  expect_error([] { tok::tokenizer_metadata_from_hf("{not json", "", "x/tokenizer.json"); },
               {"x/tokenizer.json"});
  expect_error(
      [] {
        tok::tokenizer_metadata_from_hf(R"({"model": {"type": "Unigram", "vocab": [["a", 0]]}})",
                                        "", "u.json");
      },
      {"u.json", "model.type", "Unigram"});
  expect_error(
      [] {
        tok::tokenizer_metadata_from_hf(
            R"({"model": {"type": "BPE", "vocab": {"a": -4}, "merges": []}})", "", "v.json");
      },
      {"v.json", "model.vocab"});
  expect_error(
      [] {
        tok::tokenizer_metadata_from_hf(
            R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["nospace"]}})", "",
            "m.json");
      },
      {"m.json", "model.merges[0]"});
  expect_error(
      [] {
        tok::tokenizer_metadata_from_hf(
            R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false},
            "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
            "", "p.json");
      },
      {"p.json", "pre_tokenizer"});
  expect_error(
      [] {
        tok::tokenizer_metadata_from_hf(R"({"model": {"vocab": {"a": 0}}})", "[1,2", "c.json");
      },
      {"c.json", "tokenizer_config"});
}

TEST(TokenizerMetadata, RejectsBadMetadata) {
  const io::Metadata spm = vocab_metadata("tokenizer/ggml-vocab-llama-spm.gguf");
  const io::Metadata bpe = vocab_metadata("tokenizer/ggml-vocab-gpt-2.gguf");
  auto load = [](const io::Metadata& kv) { tok::Tokenizer::from_metadata(kv, "bad.gguf"); };
  expect_error([&] { load(drop_key(spm, "tokenizer.ggml.tokens")); },
               {"bad.gguf", "tokenizer.ggml.tokens", "missing"});
  expect_error([&] { load(drop_key(spm, "tokenizer.ggml.model")); },
               {"bad.gguf", "tokenizer.ggml.model"});
  expect_error([&] { load(replace_key(spm, "tokenizer.ggml.model", gguf::Value::string("bert"))); },
               {"bad.gguf", "tokenizer.ggml.model", "bert"});
  expect_error(
      [&] {
        load(replace_key(spm, "tokenizer.ggml.scores", gguf::Value::f32s({1.0f, 2.0f})));
      },
      {"bad.gguf", "tokenizer.ggml.scores", "2 entries"});
  expect_error(
      [&] { load(replace_key(spm, "tokenizer.ggml.bos_token_id", gguf::Value::u32(99999))); },
      {"bad.gguf", "tokenizer.ggml.bos_token_id", "99999"});
  expect_error(
      [&] {
        load(replace_key(spm, "tokenizer.ggml.token_type", gguf::Value::i32s({1, 1})));
      },
      {"bad.gguf", "tokenizer.ggml.token_type"});
  expect_error(
      [&] {
        load(replace_key(spm, "tokenizer.ggml.tokens", gguf::Value::i32s({1, 2})));
      },
      {"bad.gguf", "tokenizer.ggml.tokens"});
  expect_error([&] { load(drop_key(bpe, "tokenizer.ggml.merges")); },
               {"bad.gguf", "tokenizer.ggml.merges"});
  expect_error(
      [&] {
        load(replace_key(bpe, "tokenizer.ggml.merges", gguf::Value::strings({"a b", "ab"})));
      },
      {"bad.gguf", "tokenizer.ggml.merges", "entry 1"});
  expect_error(
      [&] { load(replace_key(bpe, "tokenizer.ggml.pre", gguf::Value::string("klingon"))); },
      {"bad.gguf", "tokenizer.ggml.pre", "klingon"});
  expect_error([&] { tok::Tokenizer::from_metadata(spm, "x")->decode(std::vector<int32_t>{-1}); },
               {"-1"});
}

TEST(TokenizerMetadata, LoadsLargeVocabQuickly) {
  const io::Metadata kv =
      vocab_metadata("tokenizer/ggml-vocab-deepseek-llm.gguf");  // 102400 tokens
  const auto t0 = std::chrono::steady_clock::now();
  auto t = tok::Tokenizer::from_metadata(kv, "deepseek");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(t->n_vocab(), 102400);
  EXPECT_LT(s, 1.0);
}

TEST(TokenizerHf, RecognisesDeepseekCoderPreTokenizer) {
  // As in DeepSeek Coder's tokenizer.json: the first pattern holds literal CR/LF characters and
  // digits are split by a Digits step.
  const std::string tj = R"({
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "[\r\n]"}, "behavior": "Isolated", "invert": false},
      {"type": "Split", "pattern": {"Regex": "\\s?\\p{L}+"}, "behavior": "Isolated", "invert": false},
      {"type": "Split", "pattern": {"Regex": "\\s?\\p{P}+"}, "behavior": "Isolated", "invert": false},
      {"type": "Split", "pattern": {"Regex": "[一-龥ࠀ-一가-퟿]+"}, "behavior": "Isolated", "invert": false},
      {"type": "Digits", "individual_digits": true},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "model": {"type": "BPE", "vocab": {"a": 0, "1": 1}, "merges": []}
  })";
  auto t =
      tok::Tokenizer::from_metadata(tok::tokenizer_metadata_from_hf(tj, "", "dsc.json"), "dsc");
  EXPECT_EQ(t->pre(), "deepseek-coder");
  EXPECT_EQ(t->encode("a11", false, false), (std::vector<int32_t>{0, 1, 1}));
}
