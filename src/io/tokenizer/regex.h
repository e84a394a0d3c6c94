// CpRegex: a small backtracking regex matcher over Unicode code points, written for the
// pre-tokenizer patterns of byte-level BPE vocabularies (GPT-2, Llama 3, Qwen2, DeepSeek, ...).
//
// Supported syntax: literals (UTF-8), escapes \r \n \t \f \v and escaped punctuation, classes
// [...] / [^...] with ranges, \s \S \d \D \p{L} \p{N} \p{P} (and \P{..}) inside or outside
// classes, '.', groups (...) (?:...), case-insensitive groups (?i:...) (ASCII letters only),
// lookahead (?=...) (?!...), end anchor '$', quantifiers ? * + {n} {n,} {n,m} (greedy only).
// Semantics are Perl/Oniguruma leftmost-first, which is what Hugging Face tokenizers use.
//
// The pattern compiles to a tiny instruction list (class test, split, jump, lookahead, end,
// match); matching runs it with an explicit backtrack stack, so a long run of letters costs one
// stack entry per character rather than one C++ frame. Matching is confined to a fragment
// [begin, end): '$' and lookaheads see the fragment end as the end of the text, as they do when
// Hugging Face applies a sequence of Split pre-tokenizers to pieces produced by earlier ones.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace brisk::tok {

// Text decoded once into code points and their category flags (see unicode.h); byte_off has one
// more entry than cps so that [i, j) in code points maps to bytes [byte_off[i], byte_off[j]).
struct CpText {
  std::vector<char32_t> cps;
  std::vector<uint8_t> flags;
  std::vector<uint32_t> byte_off;
  static CpText from_utf8(std::string_view text);
};

class CpRegex {
 public:
  // Throws brisk::Error on syntax outside the supported subset.
  explicit CpRegex(std::string_view pattern);

  // Length in code points of the leftmost-first match starting exactly at `pos`, or -1.
  int64_t match_at(const CpText& t, size_t pos, size_t end) const;

  // Splits every fragment [b, e) of `frags` into matches and the gaps between them (both kept,
  // in order), the "Isolated" behaviour of a Split pre-tokenizer. Empty matches are ignored.
  std::vector<std::pair<uint32_t, uint32_t>> split(
      const CpText& t, const std::vector<std::pair<uint32_t, uint32_t>>& frags) const;

  const std::string& pattern() const { return pattern_; }

  struct ClassSet {
    std::vector<std::pair<char32_t, char32_t>> ranges;
    uint8_t any_flags = 0;   // matches when the code point has one of these category bits
    uint8_t none_flags = 0;  // matches when the code point lacks one of these bits (\S, \P{..})
    bool negated = false;
    bool dot = false;  // '.': anything but '\n'
    bool matches(char32_t cp, uint8_t fl) const;
  };
  enum class Op : uint8_t { kClass, kSplit, kJmp, kLook, kEnd, kMatch };
  struct Inst {
    Op op;
    bool neg = false;  // kLook: negative lookahead
    int32_t x = 0;     // kClass: class index; kSplit/kJmp: preferred target; kLook: sub-program
    int32_t y = 0;     // kSplit: alternative target
  };
  using Program = std::vector<Inst>;

 private:
  // Failed-state memo for the main program over one fragment: bit (pc, pos - base) set means
  // "continuing from instruction pc at pos cannot match". Without captures or backreferences
  // that holds whatever the start position, so it is shared by all attempts in a fragment and
  // keeps patterns like \s+$ linear on long whitespace runs (otherwise quadratic).
  struct Memo {
    std::vector<uint64_t> bits;
    std::vector<size_t> touched;  // set during the current attempt
    size_t base = 0, width = 0;
  };
  int64_t run(const Program& p, const CpText& t, size_t pos, size_t end, Memo* memo) const;

  std::string pattern_;
  std::vector<ClassSet> classes_;
  std::vector<Program> programs_;  // [0] is the main program, the rest are lookaheads
  friend class RegexCompiler;
};

}  // namespace brisk::tok
