// Tokenizer: text <-> token ids for the two vocabulary families GGUF files carry.
//
//   "llama" (SentencePiece BPE): pieces with scores; the text is prefixed with one space
//     (tokenizer.ggml.add_space_prefix, default on), spaces become U+2581, and adjacent symbols
//     are merged greedily by the score of the merged piece; characters that no piece covers fall
//     back to <0xNN> byte tokens.
//   "gpt2" (byte-level BPE): text is split by the pre-tokenizer regexes named by
//     tokenizer.ggml.pre, every byte is mapped to a printable code point (the GPT-2 table) and
//     each pre-token is merged by merge rank (tokenizer.ggml.merges, earlier = higher priority).
//
// Special tokens (CONTROL, USER_DEFINED, UNKNOWN) are cut out of the text before either
// algorithm runs, longest text first, as llama.cpp does: USER_DEFINED tokens always, CONTROL and
// UNKNOWN only with parse_special. Loading builds hash maps (text -> id, merge pair -> rank), so
// a 100k vocabulary loads in tens of milliseconds; encoding runs a priority queue per word.
//
// A Tokenizer is immutable after from_metadata(), so one instance is shared by all threads.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/model_file.h"

namespace brisk::tok {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

class PreTokenizer;

class Tokenizer {
 public:
  enum class Kind { kSpm, kBpe };

  // Builds a tokenizer from tokenizer.ggml.* metadata; `source` (a file name) prefixes errors.
  static std::shared_ptr<const Tokenizer> from_metadata(const io::Metadata& kv,
                                                        const std::string& source);

  // add_special: BOS / EOS as the vocabulary asks (add_bos() / add_eos()).
  // parse_special: CONTROL tokens written in the text (e.g. "<|im_end|>") become their ids.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  // skip_special drops CONTROL / UNKNOWN / UNUSED tokens; otherwise their text is written.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The bytes this token contributes to decoded text (possibly part of a UTF-8 character);
  // special tokens give their text. Out-of-range ids give "".
  std::string token_to_piece(int32_t id) const;

  int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos_id() const { return bos_; }
  int32_t eos_id() const { return eos_; }
  int32_t eot_id() const { return eot_; }
  int32_t unk_id() const { return unk_; }
  int32_t pad_id() const { return pad_; }
  bool is_eog(int32_t id) const;
  bool is_special(int32_t id) const;  // CONTROL, UNKNOWN or UNUSED
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  Kind kind() const { return kind_; }
  const std::string& chat_template() const { return chat_template_; }
  std::string_view model() const { return model_; }
  std::string_view pre() const { return pre_; }
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  float token_score(int32_t id) const;
  // -1 when no token has exactly this text.
  int32_t find_token(std::string_view text) const;

 private:
  friend class StreamDecoder;
  Tokenizer() = default;
  void load(const io::Metadata& kv, const std::string& source);
  void build_tables();

  struct Fragment {
    int32_t token;  // -1: raw text
    std::string_view text;
  };
  std::vector<Fragment> partition_special(std::string_view text, bool parse_special) const;
  void encode_spm(std::string_view raw, bool prefix_space, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view raw, std::vector<int32_t>& out) const;
  void bpe_word(const std::string& word, std::vector<int32_t>& out) const;
  int32_t spm_byte_token(uint8_t b) const;
  int bpe_rank(std::string_view left, std::string_view right) const;
  // Whether a leading space of the piece following token `prev` (-1: start) is the one encode
  // added (SPM with add_space_prefix) and should be dropped on decode.
  bool strips_space_after(int32_t prev) const;
  void append_piece(int32_t prev, int32_t id, bool skip_special, std::string& out) const;

  Kind kind_ = Kind::kSpm;
  std::string model_, pre_, chat_template_;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::vector<std::string> pieces_;  // decoded bytes per token
  std::vector<uint8_t> strip_;       // per token: bit 0 lstrip, bit 1 rstrip (special matching)
  std::unordered_map<std::string, int32_t> text_to_id_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // left + '\xff' + right -> rank
  std::vector<std::string> merges_;                      // as stored (for export)
  std::vector<int32_t> special_;  // special tokens to cut out, longest text first
  std::vector<int32_t> eog_;
  std::vector<int32_t> byte_token_;  // SPM: id of <0xNN> per byte, -1 if absent
  std::shared_ptr<const PreTokenizer> pre_tok_;
  bool ignore_merges_ = false;
  int32_t bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1, pad_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
};

// Incremental detokenizer for streaming: push() returns the text that became complete with this
// token and holds back a trailing incomplete UTF-8 sequence until later bytes complete it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false)
      : tok_(tok), skip_special_(skip_special) {}
  std::string push(int32_t id);
  // Returns whatever is held back (an incomplete sequence is returned as is) and resets.
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  int32_t prev_ = -1;
  std::string pending_;
};

// Hugging Face tokenizer.json (+ tokenizer_config.json, may be empty) -> GGUF tokenizer.* keys.
io::Metadata tokenizer_metadata_from_hf(std::string_view tokenizer_json,
                                        std::string_view tokenizer_config_json,
                                        const std::string& source);
// GGUF tokenizer.* keys -> tokenizer.json text that tokenizer_metadata_from_hf reads back into a
// tokenizer with identical encodings (and that Hugging Face tokenizers can load).
std::string tokenizer_json_from_metadata(const io::Metadata& kv);
// The matching tokenizer_config.json: bos/eos tokens, add_bos/add_eos, chat_template.
std::string tokenizer_config_json_from_metadata(const io::Metadata& kv);

}  // namespace brisk::tok
