// Pre-tokenizer splits for the families without vocabulary test files. Expected pieces were
// checked against an independent regex engine (Python's `regex` module) applying the same
// pattern sequence, and by hand for the properties named in each case.
#include <gtest/gtest.h>

#include <chrono>

#include "core/error.h"
#include "io/tokenizer/pre_tokenizer.h"
#include "io/tokenizer/regex.h"

using namespace brisk;

namespace {

struct SplitCase {
  const char* pre;
  const char* text;
  std::vector<std::string> pieces;
};

std::vector<std::string> split(const char* pre, const std::string& text) {
  const tok::PreTokenizerSpec* spec = tok::find_pre_tokenizer(pre);
  if (!spec) ADD_FAILURE() << "unknown pre-tokenizer " << pre;
  if (!spec) return {};
  std::vector<std::string> out;
  for (auto v : tok::get_pre_tokenizer(*spec)->split(text)) out.emplace_back(v);
  return out;
}

}  // namespace

TEST(TokenizerPre, SplitsMatchReference) {
  const std::vector<SplitCase> cases = {
      // Llama 3: numbers in groups of 1-3 digits, case-insensitive contractions, newline runs kept
      // with preceding whitespace, a space before a letter joins the word.
      {"llama3",
       "I'm 1234567 THEY'LL go",
       {"I", "'m", " ", "123", "456", "7", " THEY", "'LL", " go"}},
      {"llama3", "a  \n\n  b\t\tc   ", {"a", "  \n\n", " ", " b", "\t", "\tc", "   "}},
      {"llama3", "中文 한국어!!\n", {"中文", " 한국어", "!!\n"}},
      // Qwen2: like Llama 3 but every digit alone.
      {"qwen2",
       "x 2024-11-22 we've",
       {"x", " ", "2", "0", "2", "4", "-", "1", "1", "-", "2", "2", " we", "'ve"}},
      {"qwen2", "  hi\r\n\r\n!?", {" ", " hi", "\r\n\r\n", "!?"}},
      // DeepSeek Coder: newlines alone, letters / punctuation runs with one optional leading
      // space, CJK runs split from other letters, single digits.
      {"deepseek-coder",
       "int x1 = 42;\nfoo(bar)",
       {"int", " x", "1", " = ", "4", "2", ";", "\n", "foo", "(", "bar", ")"}},
      {"deepseek-coder", "中文abc 한국", {"中文", "abc", " ", "한국"}},
      // StarCoder / Refact: single digits first, then GPT-2 splitting.
      {"starcoder", "x = 1234 + y's", {"x", " =", " ", "1", "2", "3", "4", " +", " y", "'s"}},
      {"refact",
       "def f(a1):  return 99",
       {"def", " f", "(", "a", "1", "):", " ", " return", " ", "9", "9"}},
      // MPT / GPT-2: whole numbers, whitespace runs leave their last space to the next word.
      {"mpt", "Hello   world 2024 it's", {"Hello", "  ", " world", " 2024", " it", "'s"}},
      {"gpt-2", "Hello   world 2024 it's  ", {"Hello", "  ", " world", " 2024", " it", "'s", "  "}},
      // Falcon / default: punctuation and symbols split first, digits in groups of three.
      {"falcon", "a+b=1234567 (x)", {"a", "+", "b", "=", "123", "456", "7", " ", "(", "x", ")"}},
      {"default", "a+b=1234567 (x)", {"a", "+", "b", "=", "123", "456", "7", " ", "(", "x", ")"}},
      {"deepseek-llm", "Hello 世界 123 ü!", {"Hello", " ", "世界", " ", "123", " ü", "!"}},
  };
  for (const auto& c : cases)
    EXPECT_EQ(split(c.pre, c.text), c.pieces) << c.pre << ": '" << c.text << "'";
}

TEST(TokenizerPre, AliasesResolve) {
  EXPECT_STREQ(tok::find_pre_tokenizer("llama-bpe")->name, "llama3");
  EXPECT_STREQ(tok::find_pre_tokenizer("smollm")->name, "starcoder");
  EXPECT_STREQ(tok::find_pre_tokenizer("refact")->name, "starcoder");
  EXPECT_STREQ(tok::find_pre_tokenizer("olmo")->name, "mpt");
  EXPECT_STREQ(tok::find_pre_tokenizer("gpt2")->name, "gpt-2");
  EXPECT_TRUE(tok::find_pre_tokenizer("llama3")->ignore_merges);
  EXPECT_EQ(tok::find_pre_tokenizer("no-such-pre"), nullptr);
}

TEST(TokenizerPre, PiecesCoverTheTextExactly) {
  // Invalid UTF-8 and every kind of character: the pieces always concatenate back to the input.
  const std::string text = "ok \xff\xfe bad \xe2\x82 cut 🦙 \t\n x";
  for (const auto& spec : tok::pre_tokenizer_specs()) {
    std::string joined;
    for (const auto& p : split(spec.name, text)) {
      EXPECT_FALSE(p.empty()) << spec.name;
      joined += p;
    }
    EXPECT_EQ(joined, text) << spec.name;
  }
}

TEST(TokenizerPre, RegexRejectsUnsupportedSyntax) {
  EXPECT_THROW(tok::CpRegex("(a"), Error);
  EXPECT_THROW(tok::CpRegex("a)"), Error);
  EXPECT_THROW(tok::CpRegex("[abc"), Error);
  EXPECT_THROW(tok::CpRegex("(?<=a)b"), Error);
  EXPECT_THROW(tok::CpRegex("a*?"), Error);
  EXPECT_THROW(tok::CpRegex("(a?)*"), Error);
  EXPECT_THROW(tok::CpRegex("\\p{Zs}"), Error);
  EXPECT_NO_THROW(
      tok::CpRegex("(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|\\s+(?!\\S)|\\s+$"));
}

TEST(TokenizerPre, RegexCaseInsensitiveGroupAndLookahead) {
  const tok::CpRegex re("(?i:'ll)|\\s+(?!\\S)");
  const auto t = tok::CpText::from_utf8("'LL   x");
  EXPECT_EQ(re.match_at(t, 0, t.cps.size()), 3);
  EXPECT_EQ(re.match_at(t, 3, t.cps.size()), 2);  // leaves one space before 'x'
  EXPECT_EQ(re.match_at(t, 6, t.cps.size()), -1);
}

TEST(TokenizerPre, LongWhitespaceRunsStayLinear) {
  // "\s+$" and "\s*[\r\n]+" would backtrack quadratically over a long run of spaces that ends in
  // a character no rule takes; the failed-state memo keeps this in milliseconds.
  std::string text(100000, ' ');
  text += "\xE2\x82\xAC";  // Euro sign
  for (const char* pre : {"deepseek-llm", "llama3", "qwen2", "gpt-2"}) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto pieces = split(pre, text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 2.0) << pre;
    std::string joined;
    for (const auto& p : pieces) joined += p;
    EXPECT_EQ(joined, text) << pre;
  }
}
