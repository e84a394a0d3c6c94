// Byte-level BPE tokenizer training (GPT-2 style), producing a vocabulary brisk's Tokenizer loads.
//
// Text is cut at special-token strings, split into pre-tokens by one of brisk's pre-tokenizers
// (io/tokenizer/pre_tokenizer.h; default "llama3": letters with one leading non-letter, digits
// in groups of up to three, punctuation runs, newlines, spaces), and each pre-token is counted
// once per distinct byte string. Training then works on the unique words with their
// frequencies: a word is a sequence of symbol ids (initially its bytes), and
//   pair counts:  (left, right) -> sum of freq over occurrences, plus the words holding the pair;
//   a max-heap of (count, left, right) with lazy invalidation (stale entries are re-pushed with
//   their current count when popped).
// Each step pops the most frequent pair (ties: smaller left id, then smaller right id), rewrites
// only the words that hold it (left to right, non-overlapping), and updates the counts of the
// pairs those words lose and gain. Cost per merge: the total length of the affected words, so an
// 8k vocabulary on ~20 MB of text trains in seconds; memory is dominated by the unique words.
//
// Vocabulary layout: the special tokens first (ids 0..S-1, CONTROL), then the 256 bytes in byte
// order (as GPT-2's printable code points, NORMAL), then one token per merge in merge order. Two
// merges that spell the same bytes (ab+c and a+bc) share one token, as Hugging Face does.
// The default special tokens are <|endoftext|> (BOS, EOS, padding), <|im_start|> and <|im_end|>
// (ChatML; end of turn), and the ChatML template is stored so brisk renders chats with it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/model_file.h"
#include "io/tokenizer/tokenizer.h"

namespace brisk::tok {
class PreTokenizer;
}

namespace brisk::train {

struct BpeTrainerConfig {
  int32_t vocab_size = 8192;   // all tokens: specials + 256 bytes + merges
  std::string pre = "llama3";  // a tokenizer.ggml.pre name brisk knows
  int64_t min_frequency = 2;   // stop when the best pair occurs fewer times than this
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  bool add_bos = true;  // tokenizer.ggml.add_bos_token (BOS = the first special token)
  // Throws brisk::Error for an impossible setting (vocab smaller than specials + 256, unknown
  // pre-tokenizer, empty or duplicate special tokens).
  void validate() const;
};

// A trained vocabulary: everything tokenizer.ggml.* needs.
struct BpeVocab {
  std::vector<std::string> tokens;  // GGUF text: bytes as GPT-2 printable code points
  std::vector<tok::TokenType> types;
  std::vector<std::string> merges;  // "left right" in the same printable form, rank order
  std::string pre;
  int32_t bos = -1, eos = -1, eot = -1, pad = -1;
  bool add_bos = false;
  std::string chat_template;  // Jinja text (ChatML)
  int32_t n_vocab() const { return static_cast<int32_t>(tokens.size()); }
};

// The ChatML template stored in tokenizer.chat_template (with `{{ bos_token }}` in front when the
// vocabulary adds BOS, so Hugging Face renders what brisk's encode produces).
std::string chatml_jinja_template(bool with_bos);

// tokenizer.ggml.* (and tokenizer.chat_template) keys of the vocabulary, in GGUF order: what the
// model trainer copies into the GGUF files it exports.
io::Metadata bpe_vocab_metadata(const BpeVocab& v);
// The tokenizer.* keys of any model file brisk loads (a vocab-only GGUF written below, a model
// GGUF, a Hugging Face directory): what an exported model copies. Throws when it has none.
io::Metadata read_tokenizer_metadata(const std::string& path);
// A vocab-only GGUF (the keys above plus general.name).
void write_vocab_gguf(const BpeVocab& v, const std::string& path);
// Hugging Face tokenizer.json and tokenizer_config.json texts (brisk's hf_json export of the
// metadata above), which tokenizer_metadata_from_hf reads back to identical encodings.
std::string bpe_vocab_tokenizer_json(const BpeVocab& v);
std::string bpe_vocab_tokenizer_config_json(const BpeVocab& v);

struct BpeTrainStats {
  int64_t n_words = 0;             // unique pre-tokens
  int64_t n_merges = 0;            // merges learned
  bool hit_min_frequency = false;  // stopped early: no pair occurs min_frequency times
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerConfig cfg);
  ~BpeTrainer();
  BpeTrainer(const BpeTrainer&) = delete;
  BpeTrainer& operator=(const BpeTrainer&) = delete;

  // Counts the pre-tokens of `text` (special-token strings in it are cut out, not learned).
  void add_text(std::string_view text);
  int64_t n_bytes() const { return n_bytes_; }
  int64_t n_unique_words() const { return static_cast<int64_t>(words_.size()); }

  // Learns merges until the vocabulary reaches vocab_size or no pair is frequent enough.
  // progress(merges_done, merges_wanted) is called every 256 merges and at the end.
  BpeVocab train(const std::function<void(int64_t, int64_t)>& progress = {},
                 BpeTrainStats* stats = nullptr) const;

 private:
  void add_piece(std::string_view piece);
  BpeTrainerConfig cfg_;
  std::shared_ptr<const tok::PreTokenizer> pre_tok_;
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  // pre-token bytes -> count (string_view lookups: no allocation for words already seen)
  std::unordered_map<std::string, int64_t, StrHash, std::equal_to<>> words_;
  int64_t n_bytes_ = 0;
};

}  // namespace brisk::train
