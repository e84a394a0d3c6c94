// BPE trainer: hand-checkable merges, determinism, round trips, and the GGUF / tokenizer.json
// outputs loading in brisk's Tokenizer with identical ids.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/testdata.h"
#include "core/error.h"
#include "io/model_file.h"
#include "io/tokenizer/chat_template.h"
#include "train/bpe_trainer.h"
#include "train/rng.h"
#include "train_data_util.h"

namespace brisk {
namespace {

train::BpeVocab train_on(const std::vector<std::string>& docs, int32_t vocab_size,
                         int64_t min_frequency = 2, train::BpeTrainStats* st = nullptr) {
  train::BpeTrainerConfig cfg;
  cfg.vocab_size = vocab_size;
  cfg.min_frequency = min_frequency;
  train::BpeTrainer t(cfg);
  for (const auto& d : docs) t.add_text(d);
  return t.train({}, st);
}

TEST(BpeTrainer, LearnsTheMostFrequentPairFirst) {
  // Pre-tokens (llama3 split): "ab", " ab", " ab", " cd". Pairs: a+b 3, space+a 2, space+c 1,
  // c+d 1. After a+b: space+ab 2, then nothing occurs twice.
  train::BpeTrainStats st;
  const train::BpeVocab v = train_on({"ab ab ab cd"}, 300, 2, &st);
  ASSERT_EQ(v.merges.size(), 2u);
  EXPECT_EQ(v.merges[0], "a b");
  EXPECT_EQ(v.merges[1], "\xC4\xA0 ab");  // U+0120 is GPT-2's image of the space byte
  EXPECT_TRUE(st.hit_min_frequency);
  EXPECT_EQ(v.n_vocab(), 3 + 256 + 2);
  EXPECT_EQ(v.tokens[3 + 256], "ab");
  EXPECT_EQ(v.tokens[3 + 257],
            "\xC4\xA0"
            "ab");
  // With min_frequency 1 the single pairs are learned too, ties by smaller ids first:
  // space+c (32, 99) before c+d (99, 100).
  const train::BpeVocab all = train_on({"ab ab ab cd"}, 300, 1);
  ASSERT_GE(all.merges.size(), 3u);
  EXPECT_EQ(all.merges[2], "\xC4\xA0 c");
}

TEST(BpeTrainer, CountsAreOverWordFrequencies) {
  // Pre-tokens "hall" + 4 x " hall" and "oooo" + " oooo". Pair counts: h+a, a+l, l+l 5 each;
  // o+o 6 (3 per "oooo" word: counted per occurrence, times the word's frequency); space+h 4.
  // o+o wins; then the 5-way tie goes to the smaller left id: a (97) before h and l.
  const train::BpeVocab v = train_on({"hall hall hall hall hall", "oooo oooo"}, 300);
  ASSERT_GE(v.merges.size(), 4u);
  EXPECT_EQ(v.merges[0], "o o");
  EXPECT_EQ(v.merges[1], "a l");
  // "oooo" became oo+oo (left to right), so oo+oo occurs twice and is learned too.
  EXPECT_NE(std::find(v.merges.begin(), v.merges.end(), "oo oo"), v.merges.end());
}

TEST(BpeTrainer, IsDeterministicAndIndependentOfDocumentOrder) {
  auto docs = test::small_corpus();
  const train::BpeVocab a = train_on(docs, 400);
  const train::BpeVocab b = train_on(docs, 400);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.merges, b.merges);
  train::seeded_shuffle(docs, 99);
  const train::BpeVocab c = train_on(docs, 400);
  EXPECT_EQ(a.merges, c.merges);
  EXPECT_EQ(a.n_vocab(), 400);
  // Another corpus gives other merges (the test can fail).
  const train::BpeVocab d = train_on(test::small_corpus(200, 8), 400);
  EXPECT_NE(a.merges, d.merges);
}

TEST(BpeTrainer, VocabularyLayoutAndSpecialTokens) {
  const train::BpeVocab v = test::small_vocab();
  ASSERT_EQ(v.n_vocab(), 400);
  EXPECT_EQ(v.tokens[0], "<|endoftext|>");
  EXPECT_EQ(v.tokens[1], "<|im_start|>");
  EXPECT_EQ(v.tokens[2], "<|im_end|>");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(v.types[static_cast<size_t>(i)], tok::TokenType::kControl);
  EXPECT_EQ(v.bos, 0);
  EXPECT_EQ(v.eos, 0);
  EXPECT_EQ(v.eot, 2);
  EXPECT_TRUE(v.add_bos);
  EXPECT_EQ(tok::detect_chat_family(v.chat_template), tok::ChatFamily::ChatML);

  const auto tk = test::small_tokenizer();
  EXPECT_EQ(tk->bos_id(), 0);
  EXPECT_EQ(tk->eos_id(), 0);
  EXPECT_TRUE(tk->add_bos());
  EXPECT_TRUE(tk->is_eog(2));
  const auto ids = tk->encode("<|im_start|>user\nthe dog<|im_end|>\n", false, true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
  EXPECT_EQ(tk->encode("<|endoftext|>", true, true), (std::vector<int32_t>{0, 0}));
  // Without parse_special the text is ordinary text (many tokens, none special).
  const auto plain = tk->encode("<|im_end|>", false, false);
  EXPECT_GT(plain.size(), 1u);
  for (int32_t id : plain) EXPECT_FALSE(tk->is_special(id));
  // The stored template renders as brisk's ChatML family.
  const std::vector<tok::ChatMessage> msgs = {{"user", "hi"}, {"assistant", "yo"}};
  EXPECT_EQ(tok::apply_chat_template(tk->chat_template(), msgs, true, "<|endoftext|>", ""),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(BpeTrainer, RoundTripsArbitraryTextAndBytes) {
  const auto tk = test::small_tokenizer();
  train::SplitMix64 rng(123);
  std::vector<std::string> texts = {"",
                                    " ",
                                    "\n\n",
                                    "the quick brown fox",
                                    "naïve café — 日本語",
                                    "tabs\tand\r\nCRLF",
                                    "emoji 😀 and \xF0\x9F\x98",
                                    "1234567"};
  for (int i = 0; i < 200; ++i) {
    std::string s;
    const size_t n = static_cast<size_t>(rng.below(64));
    for (size_t j = 0; j < n; ++j) s += static_cast<char>(rng.below(256));  // any bytes
    texts.push_back(s);
  }
  for (const auto& s : test::small_corpus(20, 3)) texts.push_back(s);
  for (const auto& s : texts) {
    const auto ids = tk->encode(s, false, false);
    EXPECT_EQ(tk->decode(ids), s);
    // Encoding the decoded text again gives the same ids (the encoding is canonical).
    EXPECT_EQ(tk->encode(tk->decode(ids), false, false), ids);
  }
  // Common words of the corpus compress: well under one token per byte.
  const std::string text = test::small_corpus(1, 1)[0];
  EXPECT_LT(tk->encode(text, false, false).size() * 2, text.size());
}

TEST(BpeTrainer, GgufAndTokenizerJsonLoadToIdenticalIds) {
  const train::BpeVocab v = test::small_vocab();
  test::TempDir dir;
  const std::string path = dir.file("vocab.gguf");
  train::write_vocab_gguf(v, path);
  // As the CLI loads a vocab-only file (cli::load(path, false)).
  const io::ModelFile mf = io::load_model_file(path);
  const auto from_gguf = tok::Tokenizer::from_metadata(mf.metadata, path);
  // The tokenizer keys read back are the ones written.
  const io::Metadata keys = train::read_tokenizer_metadata(path);
  const io::Metadata want = train::bpe_vocab_metadata(v);
  ASSERT_EQ(keys.size(), want.size());
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(keys[i].first, want[i].first);
  EXPECT_THROW(train::read_tokenizer_metadata(dir.file("missing.gguf")), Error);
  const io::Metadata hf_md = tok::tokenizer_metadata_from_hf(
      train::bpe_vocab_tokenizer_json(v), train::bpe_vocab_tokenizer_config_json(v), "hf");
  const auto from_hf = tok::Tokenizer::from_metadata(hf_md, "hf");

  EXPECT_EQ(from_gguf->n_vocab(), v.n_vocab());
  EXPECT_EQ(from_hf->n_vocab(), v.n_vocab());
  EXPECT_EQ(from_gguf->pre(), "llama3");
  EXPECT_EQ(from_hf->pre(), "llama3");
  for (const auto* t : {from_gguf.get(), from_hf.get()}) {
    EXPECT_EQ(t->bos_id(), 0);
    EXPECT_EQ(t->eos_id(), 0);
    EXPECT_TRUE(t->add_bos());
    EXPECT_EQ(tok::detect_chat_family(t->chat_template()), tok::ChatFamily::ChatML);
  }
  std::vector<std::string> texts = test::small_corpus(30, 5);
  texts.push_back("<|im_start|>user\nwhat's 1984?<|im_end|>\n<|im_start|>assistant\n");
  texts.push_back("unknown wörds ＡＢＣ 12345 \t\t  spaces   ");
  for (const auto& s : texts) {
    const auto a = from_gguf->encode(s, true, true);
    EXPECT_EQ(a, from_hf->encode(s, true, true)) << s;
    EXPECT_EQ(a, test::small_tokenizer()->encode(s, true, true));
  }
}

TEST(BpeTrainer, RejectsImpossibleSettings) {
  train::BpeTrainerConfig cfg;
  cfg.vocab_size = 100;
  EXPECT_THROW(train::BpeTrainer{cfg}, Error);
  cfg = {};
  cfg.pre = "no-such-pre";
  EXPECT_THROW(train::BpeTrainer{cfg}, Error);
  cfg = {};
  cfg.special_tokens = {"<a>", "<a>"};
  EXPECT_THROW(train::BpeTrainer{cfg}, Error);
}

TEST(BpeTrainer, SpecialTokenTextIsNotLearned) {
  // The special strings are cut out before counting, so no merge spells part of them.
  std::vector<std::string> docs(50, "<|endoftext|><|endoftext|> zz");
  const train::BpeVocab v = train_on(docs, 300);
  // Only " zz" is left to learn: space+z and z+z tie at 50, the space (32) goes first.
  EXPECT_EQ(v.merges, (std::vector<std::string>{"\xC4\xA0 z", "\xC4\xA0z z"}));
}

TEST(BpeTrainer, LongTextIsChunkedWithoutChangingCounts) {
  // One ~300 KB text is cut into pre-tokenizer chunks after a '\n' followed by a non-space; such
  // a cut never splits a pre-token, so it trains exactly like its documents fed one by one.
  const auto docs = test::small_corpus(3000, 11);
  std::string all;
  for (const auto& d : docs) all += d + "\n";
  ASSERT_GT(all.size(), 200000u);
  train::BpeTrainerConfig cfg;
  cfg.vocab_size = 400;
  train::BpeTrainer one(cfg), many(cfg);
  one.add_text(all);
  for (const auto& d : docs) many.add_text(d + "\n");
  EXPECT_EQ(one.n_bytes(), many.n_bytes());
  EXPECT_EQ(one.n_unique_words(), many.n_unique_words());
  const auto a = one.train(), b = many.train();
  EXPECT_EQ(a.n_vocab(), 400);
  EXPECT_EQ(a.merges, b.merges);
}

}  // namespace
}  // namespace brisk
