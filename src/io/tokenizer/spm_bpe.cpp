// The two merge algorithms.
//
// Both keep the word as a doubly linked list of symbols (byte ranges of one string) and a priority
// queue of candidate adjacent pairs. A popped pair is stale when either side has since been
// merged into something else (its recorded combined length no longer matches), which is cheaper
// than deleting entries from the queue. Cost per word: O(n log n) in its characters.
//
// SentencePiece: a pair is a candidate when the concatenation is a vocabulary piece; the highest
// piece score wins, ties go to the leftmost pair. Symbols left that are not pieces are emitted as
// <0xNN> byte tokens (byte fallback).
// Byte-level BPE: a pair is a candidate when it is listed in the merges; the lowest rank wins,
// ties go to the leftmost pair.
#include <algorithm>
#include <queue>

#include "io/tokenizer/pre_tokenizer.h"
#include "io/tokenizer/tokenizer.h"
#include "io/tokenizer/unicode.h"

namespace brisk::tok {

namespace {

struct Symbol {
  int32_t prev, next;
  uint32_t off, len;
};

struct Candidate {
  float priority;  // higher first (SPM score, or -rank for BPE)
  int32_t left, right;
  uint32_t len;  // combined byte length when queued
  bool operator<(const Candidate& o) const {
    // std::priority_queue pops the largest: higher priority, then smaller left index.
    if (priority != o.priority) return priority < o.priority;
    return left > o.left;
  }
};

// SentencePiece walks UTF-8 by the lead byte's high nibble and clamps at the end of the text.
size_t spm_char_len(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

std::vector<Symbol> split_symbols(std::string_view text, bool spm) {
  std::vector<Symbol> syms;
  syms.reserve(text.size());
  for (size_t off = 0; off < text.size();) {
    const auto lead = static_cast<uint8_t>(text[off]);
    const size_t len = std::min(spm ? spm_char_len(lead) : utf8_len(lead), text.size() - off);
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back({idx - 1, off + len < text.size() ? idx + 1 : -1, static_cast<uint32_t>(off),
                    static_cast<uint32_t>(len)});
    off += len;
  }
  return syms;
}

// Runs the merge loop; `priority_of(left, right)` returns false when the pair is not mergeable.
template <class PriorityFn>
void merge_symbols(std::vector<Symbol>& syms, PriorityFn&& priority_of) {
  std::priority_queue<Candidate> queue;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    float pr;
    if (priority_of(syms[static_cast<size_t>(l)], syms[static_cast<size_t>(r)], &pr))
      queue.push({pr, l, r, syms[static_cast<size_t>(l)].len + syms[static_cast<size_t>(r)].len});
  };
  for (size_t i = 1; i < syms.size(); ++i)
    try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = syms[static_cast<size_t>(c.left)];
    Symbol& r = syms[static_cast<size_t>(c.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != c.len || l.next != c.right) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = c.left;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }
}

}  // namespace

int32_t Tokenizer::spm_byte_token(uint8_t b) const {
  if (byte_token_[b] >= 0) return byte_token_[b];
  const int32_t id = find_token(std::string_view(reinterpret_cast<const char*>(&b), 1));
  return id >= 0 ? id : unk_;
}

void Tokenizer::encode_spm(std::string_view raw, bool prefix_space,
                           std::vector<int32_t>& out) const {
  // SentencePiece sees spaces as U+2581, with one added in front when asked.
  static constexpr std::string_view kSpace = "\xE2\x96\x81";
  std::string text;
  text.reserve(raw.size() + 8);
  if (prefix_space) text += kSpace;
  for (char c : raw) {
    if (c == ' ')
      text += kSpace;
    else
      text += c;
  }
  if (text.empty()) return;

  std::vector<Symbol> syms = split_symbols(text, true);
  std::string scratch;
  merge_symbols(syms, [&](const Symbol& l, const Symbol& r, float* pr) {
    scratch.assign(text, l.off, l.len + r.len);
    auto it = text_to_id_.find(scratch);
    if (it == text_to_id_.end()) return false;
    *pr = scores_[static_cast<size_t>(it->second)];
    return true;
  });

  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const Symbol& s = syms[static_cast<size_t>(i)];
    scratch.assign(text, s.off, s.len);
    auto it = text_to_id_.find(scratch);
    if (it != text_to_id_.end()) {
      out.push_back(it->second);
      continue;
    }
    for (char c : scratch) {
      const int32_t id = spm_byte_token(static_cast<uint8_t>(c));
      if (id >= 0) out.push_back(id);
    }
  }
}

int Tokenizer::bpe_rank(std::string_view left, std::string_view right) const {
  std::string key;
  key.reserve(left.size() + right.size() + 1);
  key.append(left);
  key += '\xff';
  key.append(right);
  auto it = merge_rank_.find(key);
  return it == merge_rank_.end() ? -1 : it->second;
}

void Tokenizer::bpe_word(const std::string& word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    // Llama 3 style: a pre-token that is itself a vocabulary entry is taken whole.
    auto it = text_to_id_.find(word);
    if (it != text_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<Symbol> syms = split_symbols(word, false);
  const std::string_view w = word;
  merge_symbols(syms, [&](const Symbol& l, const Symbol& r, float* pr) {
    const int rank = bpe_rank(w.substr(l.off, l.len), w.substr(r.off, r.len));
    if (rank < 0) return false;
    *pr = -static_cast<float>(rank);
    return true;
  });
  std::string scratch;
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const Symbol& s = syms[static_cast<size_t>(i)];
    scratch.assign(word, s.off, s.len);
    auto it = text_to_id_.find(scratch);
    if (it != text_to_id_.end()) {
      out.push_back(it->second);
      continue;
    }
    // Not a token (a merge produced an entry missing from the vocabulary, or a byte image is
    // missing): fall back to one token per character, or <unk>.
    for (size_t off = 0; off < scratch.size();) {
      const size_t len =
          std::min(utf8_len(static_cast<uint8_t>(scratch[off])), scratch.size() - off);
      const int32_t id = find_token(std::string_view(scratch).substr(off, len));
      if (id >= 0)
        out.push_back(id);
      else if (unk_ >= 0)
        out.push_back(unk_);
      off += len;
    }
  }
}

void Tokenizer::encode_bpe(std::string_view raw, std::vector<int32_t>& out) const {
  for (std::string_view piece : pre_tok_->split(raw)) bpe_word(bytes_to_unicode_text(piece), out);
}

}  // namespace brisk::tok
