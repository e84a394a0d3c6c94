// Loading and validation of tokenizer.ggml.* metadata, special-token partitioning, decoding and
// streaming. The two merge algorithms live in spm_bpe.cpp.
#include "io/tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <optional>

#include "core/error.h"
#include "io/tokenizer/pre_tokenizer.h"
#include "io/tokenizer/unicode.h"

namespace brisk::tok {

namespace {

// Typed, source-naming access to the metadata list (keys are looked up once each).
class MetaReader {
 public:
  MetaReader(const io::Metadata& kv, const std::string& source) : kv_(kv), source_(source) {}

  const gguf::Value* find(std::string_view key) const {
    for (const auto& [k, v] : kv_)
      if (k == key) return &v;
    return nullptr;
  }
  [[noreturn]] void bad(std::string_view key, const std::string& what) const {
    fail(source_, ": ", key, ": ", what);
  }
  const std::vector<gguf::Value>* array(std::string_view key, gguf::ValueType elem) const {
    const gguf::Value* v = find(key);
    if (!v) return nullptr;
    if (v->type != gguf::ValueType::ARRAY) bad(key, "expected an array");
    for (const auto& e : v->arr)
      if (e.type != elem) bad(key, str_cat("expected ", gguf::value_type_name(elem), " elements"));
    return &v->arr;
  }
  std::optional<std::string> string(std::string_view key) const {
    const gguf::Value* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != gguf::ValueType::STRING) bad(key, "expected a string");
    return v->str;
  }
  std::optional<bool> boolean(std::string_view key) const {
    const gguf::Value* v = find(key);
    if (!v) return std::nullopt;
    if (v->type == gguf::ValueType::BOOL) return v->u != 0;
    if (v->is_integer()) return integer(key).value() != 0;
    bad(key, "expected a bool");
  }
  std::optional<int64_t> integer(std::string_view key) const {
    const gguf::Value* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer()) bad(key, "expected an integer");
    switch (v->type) {
      case gguf::ValueType::INT8:
      case gguf::ValueType::INT16:
      case gguf::ValueType::INT32:
      case gguf::ValueType::INT64:
        return v->i;
      default:
        if (v->u > static_cast<uint64_t>(INT64_MAX)) bad(key, "value out of range");
        return static_cast<int64_t>(v->u);
    }
  }
  // A token id key: absent -> -1; present -> must index the vocabulary.
  int32_t token_id(std::string_view key, size_t n_vocab) const {
    const auto v = integer(key);
    if (!v) return -1;
    // Some converters write -1 (or UINT32_MAX) for "none".
    if (*v == -1 || *v == 0xFFFFFFFFll) return -1;
    if (*v < 0 || static_cast<uint64_t>(*v) >= n_vocab)
      bad(key, str_cat("token id ", *v, " out of range [0, ", n_vocab, ")"));
    return static_cast<int32_t>(*v);
  }

 private:
  const io::Metadata& kv_;
  const std::string& source_;
};

bool is_special_type(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUnused;
}

// Replaces every U+2581 (SentencePiece's visible space) with ' '.
std::string unescape_spm(std::string_view s) {
  static constexpr std::string_view kSpace = "\xE2\x96\x81";
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += s[i++];
    }
  }
  return out;
}

// "<0xAB>" -> 0xAB, or -1.
int parse_byte_token(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = s[i];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

std::shared_ptr<const Tokenizer> Tokenizer::from_metadata(const io::Metadata& kv,
                                                          const std::string& source) {
  std::shared_ptr<Tokenizer> t(new Tokenizer());
  t->load(kv, source);
  return t;
}

void Tokenizer::load(const io::Metadata& kv, const std::string& source) {
  const MetaReader m(kv, source);
  const auto model = m.string("tokenizer.ggml.model");
  if (!model) m.bad("tokenizer.ggml.model", "missing (the file has no tokenizer)");
  model_ = *model;
  if (model_ == "llama") {
    kind_ = Kind::kSpm;
  } else if (model_ == "gpt2") {
    kind_ = Kind::kBpe;
  } else {
    m.bad("tokenizer.ggml.model",
          "unsupported tokenizer model '" + model_ + "' (want llama or gpt2)");
  }

  const auto* toks = m.array("tokenizer.ggml.tokens", gguf::ValueType::STRING);
  if (!toks) m.bad("tokenizer.ggml.tokens", "missing");
  if (toks->empty()) m.bad("tokenizer.ggml.tokens", "empty vocabulary");
  if (toks->size() > static_cast<size_t>(INT32_MAX))
    m.bad("tokenizer.ggml.tokens", "too many tokens");
  const size_t n = toks->size();
  tokens_.reserve(n);
  for (const auto& v : *toks) tokens_.push_back(v.str);

  scores_.assign(n, 0.0f);
  if (const gguf::Value* sv = m.find("tokenizer.ggml.scores")) {
    if (sv->type != gguf::ValueType::ARRAY) m.bad("tokenizer.ggml.scores", "expected an array");
    if (sv->arr.size() != n)
      m.bad("tokenizer.ggml.scores",
            str_cat("has ", sv->arr.size(), " entries for ", n, " tokens"));
    for (size_t i = 0; i < n; ++i) {
      if (!sv->arr[i].is_float() && !sv->arr[i].is_integer())
        m.bad("tokenizer.ggml.scores", "expected numbers");
      scores_[i] = static_cast<float>(sv->arr[i].is_float() ? sv->arr[i].f
                                                            : static_cast<double>(sv->arr[i].i));
    }
  }

  types_.assign(n, TokenType::kNormal);
  if (const gguf::Value* tv = m.find("tokenizer.ggml.token_type")) {
    if (tv->type != gguf::ValueType::ARRAY ||
        !std::all_of(tv->arr.begin(), tv->arr.end(), [](const auto& e) { return e.is_integer(); }))
      m.bad("tokenizer.ggml.token_type", "expected an array of integers");
    if (tv->arr.size() != n)
      m.bad("tokenizer.ggml.token_type",
            str_cat("has ", tv->arr.size(), " entries for ", n, " tokens"));
    for (size_t i = 0; i < n; ++i) {
      const auto& e = tv->arr[i];
      const int64_t x = e.type == gguf::ValueType::INT8 || e.type == gguf::ValueType::INT16 ||
                                e.type == gguf::ValueType::INT32 || e.type == gguf::ValueType::INT64
                            ? e.i
                            : static_cast<int64_t>(e.u);
      if (x < 0 || x > 6)
        m.bad("tokenizer.ggml.token_type", str_cat("token ", i, " has unknown type ", x));
      types_[i] = static_cast<TokenType>(x);
    }
  }

  if (kind_ == Kind::kBpe) {
    const auto* merges = m.array("tokenizer.ggml.merges", gguf::ValueType::STRING);
    if (!merges) m.bad("tokenizer.ggml.merges", "missing (required for gpt2 vocabularies)");
    merges_.reserve(merges->size());
    merge_rank_.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const std::string& s = (*merges)[i].str;
      // Split at the first space after the first character, so a left part may begin with ' '.
      const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos || sp + 1 >= s.size())
        m.bad("tokenizer.ggml.merges", str_cat("entry ", i, " '", s, "' is not 'left right'"));
      std::string key = s.substr(0, sp);
      key += '\xff';
      key.append(s, sp + 1);
      merge_rank_.emplace(std::move(key), static_cast<int>(i));
      merges_.push_back(s);
    }
    pre_ = m.string("tokenizer.ggml.pre").value_or("default");
    if (pre_.empty()) pre_ = "default";
    const PreTokenizerSpec* spec = find_pre_tokenizer(pre_);
    if (!spec) m.bad("tokenizer.ggml.pre", "unknown pre-tokenizer '" + pre_ + "'");
    pre_tok_ = get_pre_tokenizer(*spec);
    ignore_merges_ = spec->ignore_merges;
  } else {
    pre_ = m.string("tokenizer.ggml.pre").value_or("default");
  }

  // Defaults per model type as llama.cpp: SentencePiece adds BOS and a space prefix.
  add_bos_ = kind_ == Kind::kSpm;
  add_eos_ = false;
  add_space_prefix_ = kind_ == Kind::kSpm;
  if (auto v = m.boolean("tokenizer.ggml.add_bos_token")) add_bos_ = *v;
  if (auto v = m.boolean("tokenizer.ggml.add_eos_token")) add_eos_ = *v;
  if (auto v = m.boolean("tokenizer.ggml.add_space_prefix")) add_space_prefix_ = *v;

  bos_ = m.token_id("tokenizer.ggml.bos_token_id", n);
  eos_ = m.token_id("tokenizer.ggml.eos_token_id", n);
  eot_ = m.token_id("tokenizer.ggml.eot_token_id", n);
  eom_ = m.token_id("tokenizer.ggml.eom_token_id", n);
  unk_ = m.token_id("tokenizer.ggml.unknown_token_id", n);
  pad_ = m.token_id("tokenizer.ggml.padding_token_id", n);
  m.token_id("tokenizer.ggml.seperator_token_id", n);  // validated, unused
  if (add_bos_ && bos_ < 0) add_bos_ = false;
  if (add_eos_ && eos_ < 0) add_eos_ = false;
  chat_template_ = m.string("tokenizer.chat_template").value_or("");

  build_tables();

  // llama.cpp strips whitespace after Phi-3's special tokens; the test vectors rely on it.
  std::string name = m.string("general.name").value_or("");
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id : special_) strip_[static_cast<size_t>(id)] |= 2;
    for (const char* t : {"</s>"})
      if (int32_t id = find_token(t); id >= 0) strip_[static_cast<size_t>(id)] |= 2;
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"})
      if (int32_t id = find_token(t); id >= 0) strip_[static_cast<size_t>(id)] &= ~2;
  }
}

void Tokenizer::build_tables() {
  const size_t n = tokens_.size();
  text_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) text_to_id_[tokens_[i]] = static_cast<int32_t>(i);
  strip_.assign(n, 0);

  byte_token_.assign(256, -1);
  pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = tokens_[i];
    switch (types_[i]) {
      case TokenType::kByte: {
        const int b = parse_byte_token(t);
        if (b >= 0) {
          if (byte_token_[static_cast<size_t>(b)] < 0)
            byte_token_[static_cast<size_t>(b)] = static_cast<int32_t>(i);
          pieces_[i] = std::string(1, static_cast<char>(b));
        } else {
          pieces_[i] = kind_ == Kind::kBpe ? unicode_text_to_bytes(t) : t;
        }
        break;
      }
      case TokenType::kNormal:
      case TokenType::kUndefined:
        pieces_[i] = kind_ == Kind::kSpm ? unescape_spm(t) : unicode_text_to_bytes(t);
        break;
      default:
        // Special and user-defined tokens stand for their literal text.
        pieces_[i] = t;
        break;
    }
  }

  // Tokens cut out of the text before merging: longest first, so "<|im_end|>" wins over "<".
  for (size_t i = 0; i < n; ++i) {
    const TokenType ty = types_[i];
    if ((ty == TokenType::kControl || ty == TokenType::kUserDefined || ty == TokenType::kUnknown) &&
        !tokens_[i].empty())
      special_.push_back(static_cast<int32_t>(i));
  }
  std::stable_sort(special_.begin(), special_.end(), [&](int32_t a, int32_t b) {
    return tokens_[static_cast<size_t>(a)].size() > tokens_[static_cast<size_t>(b)].size();
  });

  // End-of-generation: EOS, EOT, EOM, and the end-of-turn markers of common chat formats.
  for (int32_t id : {eos_, eot_, eom_})
    if (id >= 0) eog_.push_back(id);
  for (const char* t : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                        "<|eom_id|>", "<EOT>", "<|end_of_text|>", "<｜end▁of▁sentence｜>"}) {
    const int32_t id = find_token(t);
    if (id >= 0 && types_[static_cast<size_t>(id)] == TokenType::kControl) eog_.push_back(id);
  }
  std::sort(eog_.begin(), eog_.end());
  eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());
}

const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string kEmpty;
  if (id < 0 || id >= n_vocab()) return kEmpty;
  return tokens_[static_cast<size_t>(id)];
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return TokenType::kUndefined;
  return types_[static_cast<size_t>(id)];
}

float Tokenizer::token_score(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return 0.0f;
  return scores_[static_cast<size_t>(id)];
}

int32_t Tokenizer::find_token(std::string_view text) const {
  auto it = text_to_id_.find(std::string(text));
  return it == text_to_id_.end() ? -1 : it->second;
}

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(eog_.begin(), eog_.end(), id);
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < n_vocab() && is_special_type(types_[static_cast<size_t>(id)]);
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return "";
  return pieces_[static_cast<size_t>(id)];
}

std::vector<Tokenizer::Fragment> Tokenizer::partition_special(std::string_view text,
                                                              bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, text});
  for (int32_t id : special_) {
    const TokenType ty = types_[static_cast<size_t>(id)];
    // Without parse_special only user-defined tokens are cut out (they are ordinary words of
    // the vocabulary that the merges cannot produce, e.g. DeepSeek's added Latin letters).
    if (!parse_special && ty != TokenType::kUserDefined) continue;
    const std::string& st = tokens_[static_cast<size_t>(id)];
    const bool lstrip = strip_[static_cast<size_t>(id)] & 1;
    const bool rstrip = strip_[static_cast<size_t>(id)] & 2;
    std::vector<Fragment> next;
    bool changed = false;
    for (const Fragment& f : frags) {
      if (f.token >= 0 || f.text.size() < st.size()) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      size_t pos;
      while (!rest.empty() && (pos = rest.find(st)) != std::string_view::npos) {
        changed = true;
        std::string_view left = rest.substr(0, pos);
        if (lstrip)
          while (!left.empty() && std::isspace(static_cast<unsigned char>(left.back())))
            left.remove_suffix(1);
        if (!left.empty()) next.push_back({-1, left});
        next.push_back({id, {}});
        rest = rest.substr(pos + st.size());
        if (rstrip)
          while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front())))
            rest.remove_prefix(1);
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    if (changed) frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && add_bos_) out.push_back(bos_);
  bool prev_special = true;  // SPM: the start of text counts as "after a special token"
  for (const Fragment& f : partition_special(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    if (kind_ == Kind::kSpm) {
      encode_spm(f.text, add_space_prefix_ && prev_special, out);
    } else {
      encode_bpe(f.text, out);
    }
    prev_special = false;
  }
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

bool Tokenizer::strips_space_after(int32_t prev) const {
  if (kind_ != Kind::kSpm || !add_space_prefix_) return false;
  if (prev < 0) return true;
  const TokenType t = types_[static_cast<size_t>(prev)];
  return t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown;
}

void Tokenizer::append_piece(int32_t prev, int32_t id, bool skip_special, std::string& out) const {
  if (id < 0 || id >= n_vocab())
    fail("decode: token id ", id, " out of range [0, ", n_vocab(), ")");
  const size_t i = static_cast<size_t>(id);
  const TokenType ty = types_[i];
  if (skip_special && is_special_type(ty)) return;
  std::string_view p = pieces_[i];
  // Undo the space encode() put before text at the start or after a special token (SPM).
  const bool is_text =
      ty == TokenType::kNormal || ty == TokenType::kByte || ty == TokenType::kUndefined;
  if (is_text && !p.empty() && p[0] == ' ' && strips_space_after(prev)) p.remove_prefix(1);
  out += p;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  int32_t prev = -1;
  for (int32_t id : ids) {
    append_piece(prev, id, skip_special, out);
    prev = id;
  }
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  // Keeps the previous token as context so the stream equals decode() of the whole list.
  tok_.append_piece(prev_, id, skip_special_, pending_);
  prev_ = id;
  const size_t hold = utf8_incomplete_tail(pending_);
  std::string ready = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return ready;
}

std::string StreamDecoder::flush() {
  std::string rest;
  rest.swap(pending_);
  prev_ = -1;
  return rest;
}

}  // namespace brisk::tok
