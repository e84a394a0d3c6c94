#include "io/tokenizer/regex.h"

#include <memory>

#include "core/error.h"
#include "io/tokenizer/unicode.h"

namespace brisk::tok {

CpText CpText::from_utf8(std::string_view text) {
  CpText t;
  t.cps.reserve(text.size());
  t.flags.reserve(text.size());
  t.byte_off.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    const char32_t cp = utf8_decode_one(text, i, &len);
    t.cps.push_back(cp);
    t.flags.push_back(codepoint_flags(cp));
    t.byte_off.push_back(static_cast<uint32_t>(i));
    i += len;
  }
  t.byte_off.push_back(static_cast<uint32_t>(text.size()));
  return t;
}

bool CpRegex::ClassSet::matches(char32_t cp, uint8_t fl) const {
  bool m = (fl & any_flags) != 0 || (none_flags & ~fl) != 0 || (dot && cp != U'\n');
  for (size_t i = 0; !m && i < ranges.size(); ++i)
    m = cp >= ranges[i].first && cp <= ranges[i].second;
  return m != negated;
}

// Parses the pattern into a tree, then emits instructions for it.
class RegexCompiler {
 public:
  RegexCompiler(CpRegex& re, std::string_view pattern) : re_(re) {
    for (size_t i = 0; i < pattern.size();) {
      size_t len = 0;
      cps_.push_back(utf8_decode_one(pattern, i, &len));
      i += len;
    }
  }

  void compile() {
    auto root = parse_alt();
    if (pos_ != cps_.size()) error("unbalanced ')'");
    re_.programs_.emplace_back();
    CpRegex::Program prog;
    emit(*root, prog);
    prog.push_back({CpRegex::Op::kMatch});
    re_.programs_[0] = std::move(prog);
  }

 private:
  enum class Kind { kClass, kSeq, kAlt, kRepeat, kLook, kEnd };
  struct Node {
    Kind kind;
    int32_t cls = 0;
    int32_t min = 0, max = 0;  // kRepeat; max -1 = unbounded
    bool neg = false;          // kLook
    std::vector<std::unique_ptr<Node>> kids;
  };
  using NodeP = std::unique_ptr<Node>;

  [[noreturn]] void error(const char* what) const {
    fail("pre-tokenizer regex '", re_.pattern_, "': ", what, " at code point ", pos_);
  }
  bool at_end() const { return pos_ >= cps_.size(); }
  char32_t peek() const { return at_end() ? 0 : cps_[pos_]; }

  static NodeP make(Kind k) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    return n;
  }
  NodeP class_node(CpRegex::ClassSet cs) {
    auto n = make(Kind::kClass);
    n->cls = static_cast<int32_t>(re_.classes_.size());
    re_.classes_.push_back(std::move(cs));
    return n;
  }
  CpRegex::ClassSet literal_set(char32_t c) const {
    CpRegex::ClassSet cs;
    cs.ranges.push_back({c, c});
    if (icase_ && c < 0x80 && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
      const char32_t other = c ^ 0x20;
      cs.ranges.push_back({other, other});
    }
    return cs;
  }

  NodeP parse_alt() {
    auto first = parse_seq();
    if (peek() != U'|') return first;
    auto alt = make(Kind::kAlt);
    alt->kids.push_back(std::move(first));
    while (!at_end() && peek() == U'|') {
      ++pos_;
      alt->kids.push_back(parse_seq());
    }
    return alt;
  }

  NodeP parse_seq() {
    auto seq = make(Kind::kSeq);
    while (!at_end() && peek() != U'|' && peek() != U')') {
      auto atom = parse_atom();
      seq->kids.push_back(parse_quant(std::move(atom)));
    }
    return seq;
  }

  int32_t parse_int() {
    int32_t v = 0;
    bool any = false;
    while (!at_end() && peek() >= U'0' && peek() <= U'9') {
      v = v * 10 + static_cast<int32_t>(peek() - U'0');
      if (v > 1000) error("repeat count too large");
      ++pos_;
      any = true;
    }
    if (!any) error("expected a number");
    return v;
  }

  NodeP parse_quant(NodeP atom) {
    while (!at_end()) {
      int32_t mn = 0, mx = 0;
      const char32_t c = peek();
      if (c == U'?') {
        mn = 0, mx = 1;
      } else if (c == U'*') {
        mn = 0, mx = -1;
      } else if (c == U'+') {
        mn = 1, mx = -1;
      } else if (c == U'{') {
        ++pos_;
        mn = parse_int();
        mx = mn;
        if (peek() == U',') {
          ++pos_;
          mx = peek() == U'}' ? -1 : parse_int();
        }
        if (peek() != U'}') error("expected '}'");
        if (mx != -1 && mx < mn) error("bad repeat range");
      } else {
        break;
      }
      ++pos_;
      if (peek() == U'?' || peek() == U'+') error("lazy/possessive quantifiers are not supported");
      if (atom->kind == Kind::kLook || atom->kind == Kind::kEnd) error("quantified assertion");
      if (mx == -1 && nullable(*atom)) error("unbounded repeat of an expression that matches ''");
      auto rep = make(Kind::kRepeat);
      rep->min = mn;
      rep->max = mx;
      rep->kids.push_back(std::move(atom));
      atom = std::move(rep);
    }
    return atom;
  }

  static bool nullable(const Node& n) {
    switch (n.kind) {
      case Kind::kClass:
        return false;
      case Kind::kSeq:
        for (const auto& k : n.kids)
          if (!nullable(*k)) return false;
        return true;
      case Kind::kAlt:
        for (const auto& k : n.kids)
          if (nullable(*k)) return true;
        return false;
      case Kind::kRepeat:
        return n.min == 0 || nullable(*n.kids[0]);
      case Kind::kLook:
      case Kind::kEnd:
        return true;
    }
    return true;
  }

  NodeP parse_atom() {
    const char32_t c = cps_[pos_++];
    switch (c) {
      case U'(': {
        bool look = false, neg = false, icase = false;
        if (peek() == U'?') {
          ++pos_;
          const char32_t k = at_end() ? 0 : cps_[pos_++];
          if (k == U'=') {
            look = true;
          } else if (k == U'!') {
            look = neg = true;
          } else if (k == U'i' && peek() == U':') {
            ++pos_;
            icase = true;
          } else if (k != U':') {
            error("unsupported group syntax");
          }
        }
        const bool saved = icase_;
        icase_ = icase_ || icase;
        auto inner = parse_alt();
        icase_ = saved;
        if (peek() != U')') error("missing ')'");
        ++pos_;
        if (!look) return inner;
        auto n = make(Kind::kLook);
        n->neg = neg;
        n->kids.push_back(std::move(inner));
        return n;
      }
      case U'[':
        return class_node(parse_class());
      case U'.': {
        CpRegex::ClassSet cs;
        cs.dot = true;
        return class_node(std::move(cs));
      }
      case U'$':
        return make(Kind::kEnd);
      case U'\\': {
        CpRegex::ClassSet cs;
        if (!parse_escape(cs)) error("bad escape");
        return class_node(std::move(cs));
      }
      case U'*':
      case U'+':
      case U'?':
      case U'{':
        error("nothing to repeat");
      case U'^':
        error("'^' anchors are not supported");
      default:
        return class_node(literal_set(c));
    }
  }

  // After a backslash: adds what the escape denotes to `cs`. Returns false on a bad escape.
  bool parse_escape(CpRegex::ClassSet& cs) {
    if (at_end()) return false;
    const char32_t e = cps_[pos_++];
    auto add = [&](char32_t c) {
      auto lit = literal_set(c);
      cs.ranges.insert(cs.ranges.end(), lit.ranges.begin(), lit.ranges.end());
    };
    switch (e) {
      case U'r':
        add(U'\r');
        return true;
      case U'n':
        add(U'\n');
        return true;
      case U't':
        add(U'\t');
        return true;
      case U'f':
        add(U'\f');
        return true;
      case U'v':
        add(U'\v');
        return true;
      case U's':
        cs.any_flags |= kSpace;
        return true;
      case U'S':
        cs.none_flags |= kSpace;
        return true;
      case U'd':
        cs.ranges.push_back({U'0', U'9'});
        return true;
      case U'p':
      case U'P': {
        if (peek() != U'{' || pos_ + 2 >= cps_.size() || cps_[pos_ + 2] != U'}') return false;
        const char32_t name = cps_[pos_ + 1];
        pos_ += 3;
        uint8_t bit = 0;
        if (name == U'L')
          bit = kLetter;
        else if (name == U'N')
          bit = kNumber;
        else if (name == U'P')
          bit = kPunct;
        else
          error("unsupported \\p category");
        (e == U'p' ? cs.any_flags : cs.none_flags) |= bit;
        return true;
      }
      default:
        // Escaped punctuation or symbol stands for itself; letters and digits are reserved.
        if (e < 0x80 && ((e | 0x20) >= 'a' && (e | 0x20) <= 'z')) return false;
        if (e >= U'0' && e <= U'9') return false;
        add(e);
        return true;
    }
  }

  CpRegex::ClassSet parse_class() {
    CpRegex::ClassSet cs;
    if (peek() == U'^') {
      cs.negated = true;
      ++pos_;
    }
    bool first = true;
    while (true) {
      if (at_end()) error("missing ']'");
      char32_t c = cps_[pos_];
      if (c == U']' && !first) {
        ++pos_;
        break;
      }
      first = false;
      ++pos_;
      char32_t lo = c;
      if (c == U'\\') {
        // A single-character escape may start a range; category escapes may not.
        CpRegex::ClassSet esc;
        const bool saved = icase_;
        icase_ = false;
        if (!parse_escape(esc)) error("bad escape in class");
        icase_ = saved;
        if (esc.any_flags || esc.none_flags || esc.ranges.size() != 1 ||
            esc.ranges[0].first != esc.ranges[0].second) {
          cs.any_flags |= esc.any_flags;
          cs.none_flags |= esc.none_flags;
          cs.ranges.insert(cs.ranges.end(), esc.ranges.begin(), esc.ranges.end());
          continue;
        }
        lo = esc.ranges[0].first;
      }
      char32_t hi = lo;
      if (peek() == U'-' && pos_ + 1 < cps_.size() && cps_[pos_ + 1] != U']') {
        ++pos_;
        hi = cps_[pos_++];
        if (hi == U'\\') {
          CpRegex::ClassSet esc;
          if (!parse_escape(esc) || esc.ranges.size() != 1) error("bad range end in class");
          hi = esc.ranges[0].first;
        }
        if (hi < lo) error("reversed range in class");
      }
      cs.ranges.push_back({lo, hi});
      if (icase_) {
        // Add the other case of any ASCII letters in the range.
        for (char32_t x = lo; x <= hi && x < 0x80; ++x)
          if ((x | 0x20) >= 'a' && (x | 0x20) <= 'z') cs.ranges.push_back({x ^ 0x20, x ^ 0x20});
      }
    }
    return cs;
  }

  // Emits `n` into `p`. Targets are absolute instruction indices.
  void emit(const Node& n, CpRegex::Program& p) {
    using Op = CpRegex::Op;
    switch (n.kind) {
      case Kind::kClass:
        p.push_back({Op::kClass, false, n.cls, 0});
        return;
      case Kind::kEnd:
        p.push_back({Op::kEnd});
        return;
      case Kind::kSeq:
        for (const auto& k : n.kids) emit(*k, p);
        return;
      case Kind::kAlt: {
        std::vector<size_t> jumps;
        for (size_t i = 0; i < n.kids.size(); ++i) {
          size_t split = 0;
          const bool last = i + 1 == n.kids.size();
          if (!last) {
            split = p.size();
            p.push_back({Op::kSplit, false, static_cast<int32_t>(p.size() + 1), 0});
          }
          emit(*n.kids[i], p);
          if (!last) {
            jumps.push_back(p.size());
            p.push_back({Op::kJmp});
            p[split].y = static_cast<int32_t>(p.size());
          }
        }
        for (size_t j : jumps) p[j].x = static_cast<int32_t>(p.size());
        return;
      }
      case Kind::kRepeat: {
        const Node& body = *n.kids[0];
        for (int32_t i = 0; i < n.min; ++i) emit(body, p);
        if (n.max == -1) {
          const size_t loop = p.size();
          p.push_back({Op::kSplit, false, static_cast<int32_t>(loop + 1), 0});
          emit(body, p);
          p.push_back({Op::kJmp, false, static_cast<int32_t>(loop), 0});
          p[loop].y = static_cast<int32_t>(p.size());
        } else {
          std::vector<size_t> splits;
          for (int32_t i = n.min; i < n.max; ++i) {
            splits.push_back(p.size());
            p.push_back({Op::kSplit, false, static_cast<int32_t>(p.size() + 1), 0});
            emit(body, p);
          }
          for (size_t s : splits) p[s].y = static_cast<int32_t>(p.size());
        }
        return;
      }
      case Kind::kLook: {
        CpRegex::Program sub;
        emit(*n.kids[0], sub);
        sub.push_back({Op::kMatch});
        const auto idx = static_cast<int32_t>(re_.programs_.size());
        re_.programs_.push_back(std::move(sub));
        p.push_back({Op::kLook, n.neg, idx, 0});
        return;
      }
    }
  }

  CpRegex& re_;
  std::vector<char32_t> cps_;
  size_t pos_ = 0;
  bool icase_ = false;
};

CpRegex::CpRegex(std::string_view pattern) : pattern_(pattern) {
  RegexCompiler c(*this, pattern);
  c.compile();
}

int64_t CpRegex::run(const Program& p, const CpText& t, size_t pos, size_t end, Memo* memo) const {
  // Backtrack stack of (instruction, position) alternatives, most recent = highest priority.
  std::vector<std::pair<int32_t, size_t>> stack;
  int32_t pc = 0;
  if (memo) memo->touched.clear();
  while (true) {
    bool ok = true;
    if (memo) {
      const size_t bit = static_cast<size_t>(pc) * memo->width + (pos - memo->base);
      uint64_t& word = memo->bits[bit >> 6];
      const uint64_t mask = uint64_t{1} << (bit & 63);
      if (word & mask) {
        ok = false;  // explored before without success
      } else {
        word |= mask;
        memo->touched.push_back(bit);
      }
    }
    if (ok) {
      const Inst& in = p[static_cast<size_t>(pc)];
      switch (in.op) {
        case Op::kClass:
          ok = pos < end && classes_[static_cast<size_t>(in.x)].matches(t.cps[pos], t.flags[pos]);
          if (ok) ++pos, ++pc;
          break;
        case Op::kSplit:
          stack.push_back({in.y, pos});
          pc = in.x;
          break;
        case Op::kJmp:
          pc = in.x;
          break;
        case Op::kEnd:
          ok = pos == end;
          ++pc;
          break;
        case Op::kLook:
          ok = (run(programs_[static_cast<size_t>(in.x)], t, pos, end, nullptr) >= 0) != in.neg;
          ++pc;
          break;
        case Op::kMatch:
          // States on the successful path did not fail: forget them (the failed ones too; that
          // only costs a little re-exploration).
          if (memo)
            for (size_t bit : memo->touched) memo->bits[bit >> 6] &= ~(uint64_t{1} << (bit & 63));
          return static_cast<int64_t>(pos);
      }
    }
    if (!ok) {
      if (stack.empty()) return -1;
      pc = stack.back().first;
      pos = stack.back().second;
      stack.pop_back();
    }
  }
}

int64_t CpRegex::match_at(const CpText& t, size_t pos, size_t end) const {
  const int64_t e = run(programs_[0], t, pos, end, nullptr);
  return e < 0 ? -1 : e - static_cast<int64_t>(pos);
}

std::vector<std::pair<uint32_t, uint32_t>> CpRegex::split(
    const CpText& t, const std::vector<std::pair<uint32_t, uint32_t>>& frags) const {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  out.reserve(frags.size() * 2);
  Memo memo;
  const size_t n_inst = programs_[0].size();
  for (const auto& [b, e] : frags) {
    // Memoize only fragments long enough for backtracking to matter, and not beyond 64 MiB of
    // bits (a fragment of some ten million characters would run unmemoized).
    const bool use_memo = e - b > 64 && n_inst * (e - b + 1) < (size_t{1} << 29);
    if (use_memo) {
      memo.base = b;
      memo.width = e - b + 1;
      memo.bits.assign((n_inst * memo.width + 63) / 64, 0);
    }
    uint32_t gap = b;
    uint32_t pos = b;
    while (pos < e) {
      const int64_t end = run(programs_[0], t, pos, e, use_memo ? &memo : nullptr);
      const int64_t len = end < 0 ? -1 : end - pos;
      if (len <= 0) {
        ++pos;
        continue;
      }
      if (pos > gap) out.push_back({gap, pos});
      out.push_back({pos, pos + static_cast<uint32_t>(len)});
      pos += static_cast<uint32_t>(len);
      gap = pos;
    }
    if (gap < e) out.push_back({gap, e});
  }
  return out;
}

}  // namespace brisk::tok
