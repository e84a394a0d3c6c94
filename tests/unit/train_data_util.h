// Helpers shared by the training-data tests: a small deterministic corpus and a BPE tokenizer
// trained on it (trained once per test binary; a few milliseconds).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/tokenizer/tokenizer.h"
#include "train/bpe_trainer.h"
#include "train/rng.h"

namespace brisk::test {

// `n_docs` pseudo-English paragraphs drawn from a fixed word list (same text on every platform).
inline std::vector<std::string> small_corpus(int n_docs = 200, uint64_t seed = 7) {
  static const char* kWords[] = {
      "the",  "quick", "brown", "fox",   "jumps", "over",  "lazy",  "dog",    "and",
      "then", "runs",  "away",  "from",  "a",     "small", "house", "with",   "green",
      "door", "while", "rain",  "falls", "on",    "roof",  "of",    "old",    "barn",
      "it's", "I'll",  "don't", "1984",  "3.14",  "42",    "café",  "naïve",  "über",
      "日本", "語",    "—",     "...",   "!",     "?",     "(yes)", "\"no\"", "x+y=z"};
  constexpr size_t kN = sizeof(kWords) / sizeof(kWords[0]);
  train::SplitMix64 rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < n_docs; ++d) {
    std::string s;
    const int n = 5 + static_cast<int>(rng.below(40));
    for (int i = 0; i < n; ++i) {
      if (i) s += rng.below(12) == 0 ? "\n" : " ";
      // Skewed choice so some pairs are much more frequent than others.
      const size_t k = static_cast<size_t>(rng.below(kN) * rng.below(kN) / kN);
      s += kWords[k];
    }
    s += '.';
    docs.push_back(std::move(s));
  }
  return docs;
}

inline train::BpeVocab small_vocab(int32_t vocab_size = 400) {
  train::BpeTrainerConfig cfg;
  cfg.vocab_size = vocab_size;
  train::BpeTrainer t(cfg);
  for (const auto& d : small_corpus()) t.add_text(d);
  return t.train();
}

inline std::shared_ptr<const tok::Tokenizer> small_tokenizer() {
  static const std::shared_ptr<const tok::Tokenizer> tk =
      tok::Tokenizer::from_metadata(train::bpe_vocab_metadata(small_vocab()), "small-bpe");
  return tk;
}

}  // namespace brisk::test
