#include "train/bpe_trainer.h"

#include "train/export.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "io/gguf/gguf.h"
#include "io/tokenizer/pre_tokenizer.h"
#include "io/tokenizer/unicode.h"
#include "train/export.h"
#include "train/rng.h"

namespace brisk::train {

namespace {

// Pre-tokenizing decodes a piece into code points (8 bytes each plus a regex memo), so long
// texts are cut into pieces of about this many bytes first.
constexpr size_t kChunkBytes = 64 * 1024;

bool is_ascii_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v';
}

// A cut right after a '\n' that is followed by a non-space byte never splits a pre-token of the
// gpt2 / llama3 / qwen2 patterns: none of them lets a match run from a newline into the
// non-space that follows it. Returns the cut position nearest to `target`, or npos.
size_t find_safe_cut(std::string_view s, size_t target) {
  for (size_t i = std::min(target, s.size() - 1); i > 0; --i)
    if (s[i - 1] == '\n' && !is_ascii_space(s[i])) return i;
  for (size_t i = target + 1; i < s.size(); ++i)
    if (s[i - 1] == '\n' && !is_ascii_space(s[i])) return i;
  return std::string_view::npos;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct PairHash {
  size_t operator()(uint64_t k) const { return static_cast<size_t>(mix64(k)); }
};

struct PairData {
  int64_t count = 0;
  std::vector<int32_t> words;  // words that held the pair when it was added (may be stale)
};

struct HeapEntry {
  int64_t count;
  int32_t a, b;
};
// std heap functions keep the "largest" on top: highest count, then smallest (a, b).
bool heap_less(const HeapEntry& x, const HeapEntry& y) {
  if (x.count != y.count) return x.count < y.count;
  if (x.a != y.a) return x.a > y.a;
  return x.b > y.b;
}

}  // namespace

void BpeTrainerConfig::validate() const {
  if (special_tokens.empty()) fail("bpe: at least one special token (<|endoftext|>) is needed");
  std::set<std::string> seen;
  for (const auto& s : special_tokens) {
    if (s.empty()) fail("bpe: empty special token");
    if (!seen.insert(s).second) fail("bpe: special token '", s, "' given twice");
  }
  const int64_t min_vocab = static_cast<int64_t>(special_tokens.size()) + 256;
  if (vocab_size < min_vocab)
    fail("bpe: --vocab-size ", vocab_size, " is below the ", min_vocab,
         " tokens of the special tokens and the 256 bytes");
  if (!tok::find_pre_tokenizer(pre)) fail("bpe: unknown pre-tokenizer '", pre, "'");
  if (min_frequency < 1) fail("bpe: min frequency must be at least 1");
}

std::string chatml_jinja_template(bool with_bos) {
  std::string t = with_bos ? "{{ bos_token }}" : "";
  t += "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
       "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
       "{{ '<|im_start|>assistant\\n' }}{% endif %}";
  return t;
}

BpeTrainer::BpeTrainer(BpeTrainerConfig cfg) : cfg_(std::move(cfg)) {
  cfg_.validate();
  pre_tok_ = tok::get_pre_tokenizer(*tok::find_pre_tokenizer(cfg_.pre));
}

BpeTrainer::~BpeTrainer() = default;

void BpeTrainer::add_text(std::string_view text) {
  n_bytes_ += static_cast<int64_t>(text.size());
  // Cut out special-token strings (the leftmost occurrence, longest on ties), as encode does.
  while (!text.empty()) {
    size_t best = std::string_view::npos, best_len = 0;
    for (const auto& s : cfg_.special_tokens) {
      const size_t p = text.find(s);
      if (p < best || (p == best && s.size() > best_len)) {
        best = p;
        best_len = s.size();
      }
    }
    if (best == std::string_view::npos) {
      add_piece(text);
      return;
    }
    add_piece(text.substr(0, best));
    text.remove_prefix(best + best_len);
  }
}

void BpeTrainer::add_piece(std::string_view piece) {
  while (!piece.empty()) {
    std::string_view chunk = piece;
    if (piece.size() > kChunkBytes) {
      const size_t cut = find_safe_cut(piece, kChunkBytes);
      if (cut != std::string_view::npos) chunk = piece.substr(0, cut);
    }
    for (std::string_view w : pre_tok_->split(chunk)) {
      auto it = words_.find(w);
      if (it == words_.end())
        words_.emplace(std::string(w), 1);
      else
        ++it->second;
    }
    piece.remove_prefix(chunk.size());
  }
}

BpeVocab BpeTrainer::train(const std::function<void(int64_t, int64_t)>& progress,
                           BpeTrainStats* stats) const {
  const auto n_special = static_cast<int32_t>(cfg_.special_tokens.size());
  const int64_t wanted = cfg_.vocab_size - n_special - 256;

  // Words in byte order, so ids and ties never depend on hash-map iteration order.
  std::vector<std::pair<std::string_view, int64_t>> sorted;
  sorted.reserve(words_.size());
  for (const auto& [w, c] : words_) sorted.emplace_back(w, c);
  std::sort(sorted.begin(), sorted.end());

  // Words as runs of internal symbol ids (0..255 bytes, then merges) in one flat buffer; a
  // word shrinks in place as merges apply.
  std::vector<int32_t> sym;
  std::vector<size_t> start;
  std::vector<uint32_t> len;
  std::vector<int64_t> freq;
  for (const auto& [w, c] : sorted) {
    start.push_back(sym.size());
    len.push_back(static_cast<uint32_t>(w.size()));
    freq.push_back(c);
    for (unsigned char b : w) sym.push_back(b);
  }
  const auto n_words = static_cast<int32_t>(sorted.size());

  std::vector<std::string> tok_bytes(256);
  std::unordered_map<std::string, int32_t> bytes_to_id;
  for (int b = 0; b < 256; ++b) {
    tok_bytes[static_cast<size_t>(b)] = std::string(1, static_cast<char>(b));
    bytes_to_id.emplace(tok_bytes[static_cast<size_t>(b)], b);
  }

  std::unordered_map<uint64_t, PairData, PairHash> pairs;
  for (int32_t w = 0; w < n_words; ++w) {
    const int32_t* s = sym.data() + start[static_cast<size_t>(w)];
    for (uint32_t i = 0; i + 1 < len[static_cast<size_t>(w)]; ++i) {
      PairData& p = pairs[pair_key(s[i], s[i + 1])];
      p.count += freq[static_cast<size_t>(w)];
      if (p.words.empty() || p.words.back() != w) p.words.push_back(w);
    }
  }
  std::vector<HeapEntry> heap;
  heap.reserve(pairs.size());
  for (const auto& [k, p] : pairs)
    heap.push_back({p.count, static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xFFFFFFFF)});
  std::make_heap(heap.begin(), heap.end(), heap_less);

  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<uint64_t> old_keys, new_keys, touched;
  bool hit_min = false;
  while (static_cast<int64_t>(tok_bytes.size()) - 256 < wanted) {
    // The most frequent pair whose heap entry is current.
    HeapEntry best{0, -1, -1};
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), heap_less);
      const HeapEntry e = heap.back();
      heap.pop_back();
      auto it = pairs.find(pair_key(e.a, e.b));
      const int64_t cur = it == pairs.end() ? 0 : it->second.count;
      if (cur == e.count) {
        best = e;
        break;
      }
      // A larger current count has its own, newer entry; a smaller one is re-queued.
      if (cur > 0 && cur < e.count) {
        heap.push_back({cur, e.a, e.b});
        std::push_heap(heap.begin(), heap.end(), heap_less);
      }
    }
    if (best.a < 0 || best.count < cfg_.min_frequency) {
      hit_min = true;
      break;
    }
    const int32_t a = best.a, b = best.b;
    std::string joined = tok_bytes[static_cast<size_t>(a)] + tok_bytes[static_cast<size_t>(b)];
    int32_t c;
    if (auto it = bytes_to_id.find(joined); it != bytes_to_id.end()) {
      c = it->second;
    } else {
      c = static_cast<int32_t>(tok_bytes.size());
      bytes_to_id.emplace(joined, c);
      tok_bytes.push_back(std::move(joined));
    }
    merges.emplace_back(a, b);

    const uint64_t ab = pair_key(a, b);
    std::vector<int32_t> holders = std::move(pairs.find(ab)->second.words);
    pairs.erase(ab);
    touched.clear();
    for (int32_t w : holders) {
      int32_t* s = sym.data() + start[static_cast<size_t>(w)];
      const uint32_t n = len[static_cast<size_t>(w)];
      bool has = false;
      for (uint32_t i = 0; i + 1 < n && !has; ++i) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;  // a stale holder: an earlier merge already rewrote the pair away
      old_keys.clear();
      for (uint32_t i = 0; i + 1 < n; ++i) old_keys.push_back(pair_key(s[i], s[i + 1]));
      uint32_t out = 0;
      for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
          s[out++] = c;
          i += 2;
        } else {
          s[out++] = s[i++];
        }
      }
      len[static_cast<size_t>(w)] = out;
      new_keys.clear();
      for (uint32_t i = 0; i + 1 < out; ++i) new_keys.push_back(pair_key(s[i], s[i + 1]));
      // Multiset difference of the word's pairs before and after, applied with its frequency.
      std::sort(old_keys.begin(), old_keys.end());
      std::sort(new_keys.begin(), new_keys.end());
      const int64_t f = freq[static_cast<size_t>(w)];
      size_t i = 0, j = 0;
      while (i < old_keys.size() || j < new_keys.size()) {
        uint64_t k;
        if (j == new_keys.size() || (i < old_keys.size() && old_keys[i] < new_keys[j]))
          k = old_keys[i];
        else
          k = new_keys[j];
        int64_t n_old = 0, n_new = 0;
        while (i < old_keys.size() && old_keys[i] == k) ++n_old, ++i;
        while (j < new_keys.size() && new_keys[j] == k) ++n_new, ++j;
        if (k == ab || n_old == n_new) continue;
        auto it = pairs.find(k);
        if (it == pairs.end()) it = pairs.emplace(k, PairData{}).first;
        it->second.count += (n_new - n_old) * f;
        if (n_old == 0) it->second.words.push_back(w);
        if (n_new > n_old) touched.push_back(k);
        if (it->second.count == 0) pairs.erase(it);
      }
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched) {
      auto it = pairs.find(k);
      if (it == pairs.end()) continue;
      heap.push_back(
          {it->second.count, static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xFFFFFFFF)});
      std::push_heap(heap.begin(), heap.end(), heap_less);
    }
    if (progress && merges.size() % 256 == 0)
      progress(static_cast<int64_t>(tok_bytes.size()) - 256, wanted);
  }
  if (progress) progress(static_cast<int64_t>(tok_bytes.size()) - 256, wanted);

  BpeVocab v;
  v.pre = tok::find_pre_tokenizer(cfg_.pre)->name;
  for (const auto& s : cfg_.special_tokens) {
    v.tokens.push_back(s);
    v.types.push_back(tok::TokenType::kControl);
  }
  for (const auto& bytes : tok_bytes) {
    v.tokens.push_back(tok::bytes_to_unicode_text(bytes));
    v.types.push_back(tok::TokenType::kNormal);
  }
  v.merges.reserve(merges.size());
  for (const auto& [a, b] : merges)
    v.merges.push_back(tok::bytes_to_unicode_text(tok_bytes[static_cast<size_t>(a)]) + " " +
                       tok::bytes_to_unicode_text(tok_bytes[static_cast<size_t>(b)]));
  auto special_id = [&](std::string_view s) -> int32_t {
    for (int32_t i = 0; i < n_special; ++i)
      if (cfg_.special_tokens[static_cast<size_t>(i)] == s) return i;
    return -1;
  };
  v.bos = v.eos = v.pad = 0;
  v.eot = special_id("<|im_end|>");
  v.add_bos = cfg_.add_bos;
  if (special_id("<|im_start|>") >= 0 && v.eot >= 0)
    v.chat_template = chatml_jinja_template(v.add_bos);
  if (stats) {
    stats->n_words = n_words;
    stats->n_merges = static_cast<int64_t>(merges.size());
    stats->hit_min_frequency = hit_min;
  }
  return v;
}

io::Metadata bpe_vocab_metadata(const BpeVocab& v) {
  io::Metadata md;
  auto set = [&](const char* k, gguf::Value val) { md.emplace_back(k, std::move(val)); };
  std::vector<int32_t> types;
  types.reserve(v.types.size());
  for (auto t : v.types) types.push_back(static_cast<int32_t>(t));
  set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
  set("tokenizer.ggml.pre", gguf::Value::string(v.pre));
  set("tokenizer.ggml.tokens", gguf::Value::strings(v.tokens));
  set("tokenizer.ggml.token_type", gguf::Value::i32s(types));
  set("tokenizer.ggml.merges", gguf::Value::strings(v.merges));
  auto set_id = [&](const char* k, int32_t id) {
    if (id >= 0) set(k, gguf::Value::u32(static_cast<uint32_t>(id)));
  };
  set_id("tokenizer.ggml.bos_token_id", v.bos);
  set_id("tokenizer.ggml.eos_token_id", v.eos);
  set_id("tokenizer.ggml.eot_token_id", v.eot);
  set_id("tokenizer.ggml.padding_token_id", v.pad);
  set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(v.add_bos && v.bos >= 0));
  set("tokenizer.ggml.add_eos_token", gguf::Value::boolean(false));
  if (!v.chat_template.empty())
    set("tokenizer.chat_template", gguf::Value::string(v.chat_template));
  return md;
}

io::Metadata read_tokenizer_metadata(const std::string& path) {
  io::ModelFile mf = io::load_model_file(path);
  if (!mf.find("tokenizer.ggml.tokens"))
    fail(path, ": no tokenizer metadata (tokenizer.ggml.tokens)");
  return tokenizer_metadata(mf);
}

void write_vocab_gguf(const BpeVocab& v, const std::string& path) {
  gguf::GgufWriter w;
  w.set("general.name", gguf::Value::string(str_cat("brisk-bpe-", v.n_vocab())));
  for (auto& [k, val] : bpe_vocab_metadata(v)) w.set(k, std::move(val));
  w.write(path);
}

std::string bpe_vocab_tokenizer_json(const BpeVocab& v) {
  return tok::tokenizer_json_from_metadata(bpe_vocab_metadata(v));
}

std::string bpe_vocab_tokenizer_config_json(const BpeVocab& v) {
  return tok::tokenizer_config_json_from_metadata(bpe_vocab_metadata(v));
}

}  // namespace brisk::train
