// Pre-tokenizers of byte-level BPE vocabularies, chosen by tokenizer.ggml.pre.
//
// Each pre-tokenizer is an ordered list of regexes applied in sequence: the first splits the text,
// each later one splits every piece produced so far (matches and the gaps between them are both
// kept). This is the Hugging Face Sequence-of-Split behaviour and what llama.cpp implements; the
// pattern lists follow llama.cpp's table so GGUF files converted by it tokenize identically.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer/regex.h"

namespace brisk::tok {

struct PreTokenizerSpec {
  const char* name;                   // canonical name (what we write back to GGUF)
  std::vector<const char*> aliases;   // other tokenizer.ggml.pre values meaning the same
  std::vector<const char*> patterns;  // applied in order
  bool ignore_merges = false;         // a whole pre-token found in the vocab is emitted as is
};

// nullptr when `pre` is not a known value.
const PreTokenizerSpec* find_pre_tokenizer(std::string_view pre);
const std::vector<PreTokenizerSpec>& pre_tokenizer_specs();

// Patterns compiled once per spec (shared between tokenizers of the same kind).
class PreTokenizer {
 public:
  explicit PreTokenizer(const PreTokenizerSpec& spec);
  const PreTokenizerSpec& spec() const { return *spec_; }
  // Splits `text` into pre-tokens (views into `text`).
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  const PreTokenizerSpec* spec_;
  std::vector<CpRegex> regexes_;
};

std::shared_ptr<const PreTokenizer> get_pre_tokenizer(const PreTokenizerSpec& spec);

}  // namespace brisk::tok
