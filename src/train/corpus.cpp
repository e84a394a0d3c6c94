#include "train/corpus.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace brisk::train {

namespace {

namespace fs = std::filesystem;

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
  });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Calls fn(line, line_number) for each line without its "\n" (and without a trailing "\r").
template <class F>
void for_each_line(std::string_view text, F&& fn) {
  int64_t no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!fn(line, ++no)) return;
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Documents made of lines, closed by a separator predicate; leading/trailing blank lines dropped.
class LineDocs {
 public:
  LineDocs(const std::string& name, FunctionRef<bool(Document&)> fn) : name_(name), fn_(fn) {}
  void add(std::string_view line) {
    if (cur_.empty() && is_blank(line)) return;
    cur_.append(line);
    cur_ += '\n';
    if (!is_blank(line)) keep_ = cur_.size();
  }
  // Emits the current document; false when the consumer asked to stop.
  bool close() {
    cur_.resize(keep_ > 0 ? keep_ - 1 : 0);  // drop trailing blank lines and the last '\n'
    keep_ = 0;
    if (cur_.empty()) return true;
    Document d;
    d.text = std::move(cur_);
    d.where = name_;
    cur_.clear();
    return fn_(d);
  }

 private:
  const std::string& name_;
  FunctionRef<bool(Document&)> fn_;
  std::string cur_;
  size_t keep_ = 0;
};

void split_text(std::string_view text, const std::string& name, std::string_view sep,
                FunctionRef<bool(Document&)> fn) {
  LineDocs docs(name, fn);
  bool go = true;
  if (sep == "file") {
    for_each_line(text, [&](std::string_view line, int64_t) {
      docs.add(line);
      return true;
    });
  } else if (sep == "line") {
    for_each_line(text, [&](std::string_view line, int64_t) {
      docs.add(line);
      return go = docs.close();
    });
  } else if (sep == "blank") {
    for_each_line(text, [&](std::string_view line, int64_t) {
      if (is_blank(line)) return go = docs.close();
      docs.add(line);
      return true;
    });
  } else {
    for_each_line(text, [&](std::string_view line, int64_t) {
      if (trim(line) == sep) return go = docs.close();
      docs.add(line);
      return true;
    });
  }
  if (go) docs.close();
}

void split_chat(std::string_view text, const std::string& name, FunctionRef<bool(Document&)> fn) {
  using json = nlohmann::json;
  for_each_line(text, [&](std::string_view line, int64_t no) {
    if (is_blank(line)) return true;
    const std::string where = str_cat(name, ":", no);
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail(where, ": not valid JSON");
    if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
      fail(where, ": expected {\"messages\": [...]}");
    Document d;
    d.where = where;
    for (size_t i = 0; i < j["messages"].size(); ++i) {
      const json& m = j["messages"][i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
          !m.contains("content") || !m["content"].is_string())
        fail(where, ": messages[", i, "]: expected {\"role\": string, \"content\": string}");
      tok::ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>()};
      if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
        fail(where, ": messages[", i, "]: role '", msg.role, "' is not system, user or assistant");
      d.messages.push_back(std::move(msg));
    }
    if (d.messages.empty()) return true;
    return fn(d);
  });
}

// A GCIDE entry starts at a line that begins in column 0 after a blank line (or at the start).
void split_gcide(std::string_view text, const std::string& name, FunctionRef<bool(Document&)> fn) {
  std::string entry;
  bool prev_blank = true, go = true;
  auto emit = [&] {
    if (entry.empty()) return true;
    Document d;
    d.text = gcide_entry_text(entry);
    d.where = name;
    entry.clear();
    return d.text.empty() ? true : fn(d);
  };
  for_each_line(text, [&](std::string_view line, int64_t) {
    const bool blank = is_blank(line);
    if (prev_blank && !blank && line[0] != ' ' && line[0] != '\t') {
      if (!(go = emit())) return false;
    }
    entry.append(line);
    entry += '\n';
    prev_blank = blank;
    return true;
  });
  if (go) emit();
}

// GCIDE's ASCII codes for accented and special characters -> plain text, or "" when `code` (the
// text between '[' and ']') is not one (then the brackets are ordinary text).
std::string accent_code(std::string_view c) {
  static const std::map<std::string_view, std::string_view> kNamed = {
      {"ae", "ae"},      {"AE", "AE"},      {"oe", "oe"},   {"OE", "OE"},    {"eth", "th"},
      {"thorn", "th"},   {"ng", "ng"},      {"root", "√"},  {"deg", "°"},    {"sect", "§"},
      {"yogh", "gh"},    {"asl", "a"},      {"add", "a"},   {"udd", "u"},    {"dsdot", "d"},
      {"alpha", "α"},    {"beta", "β"},     {"gamma", "γ"}, {"delta", "δ"},  {"epsilon", "ε"},
      {"zeta", "ζ"},     {"eta", "η"},      {"theta", "θ"}, {"iota", "ι"},   {"kappa", "κ"},
      {"lambda", "λ"},   {"mu", "μ"},       {"nu", "ν"},    {"xi", "ξ"},     {"omicron", "ο"},
      {"pi", "π"},       {"rho", "ρ"},      {"sigma", "σ"}, {"tau", "τ"},    {"upsilon", "υ"},
      {"phi", "φ"},      {"chi", "χ"},      {"psi", "ψ"},   {"omega", "ω"},  {"frac12", "1/2"},
      {"frac14", "1/4"}, {"frac34", "3/4"}, {"cced", "c"},  {"mdash", "--"}, {"ndash", "-"}};
  if (auto it = kNamed.find(c); it != kNamed.end()) return std::string(it->second);
  auto letters = [](std::string_view s) {
    return !s.empty() && s.size() <= 2 && std::all_of(s.begin(), s.end(), [](char ch) {
      return std::isalpha(static_cast<unsigned char>(ch));
    });
  };
  static constexpr std::string_view kMarks = "^='`\"~.-,*";
  if (c.size() >= 2 && kMarks.find(c[0]) != std::string_view::npos && letters(c.substr(1)))
    return std::string(c.substr(1));  // [=a] [.a] ['e] [`e] ["o] [~n] [-o] [,c] [^o]
  if (c.size() >= 2 && c.back() == '^' && letters(c.substr(0, c.size() - 1)))
    return std::string(c.substr(0, c.size() - 1));  // [a^] [oo^]
  for (std::string_view suf : {"uml", "um", "mac", "sl", "dd", "cr", "dot"})
    if (c.size() > suf.size() && ends_with(c, suf) && letters(c.substr(0, c.size() - suf.size())))
      return std::string(c.substr(0, c.size() - suf.size()));  // [aum] [imac]
  return "";
}

// A line holding only a source tag such as [1913 Webster], [WordNet 1.5 +PJC] or [RDH].
bool is_source_tag(std::string_view line) {
  line = trim(line);
  if (line.size() < 3 || line.front() != '[' || line.back() != ']') return false;
  const std::string_view in = line.substr(1, line.size() - 2);
  if (in.find_first_of("[]") != std::string_view::npos) return false;
  for (std::string_view s : {"Webster", "WordNet", "PJC", "Century", "RDH"})
    if (in.find(s) != std::string_view::npos) return true;
  return std::all_of(in.begin(), in.end(),
                     [](char ch) { return std::isupper(static_cast<unsigned char>(ch)); });
}

// Removes \pronunciation\ spans and a respelling in parentheses right after one.
std::string strip_pronunciation(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '\\') {
      out += s[i++];
      continue;
    }
    const size_t close = s.find('\\', i + 1);
    if (close == std::string_view::npos) {
      out += s.substr(i);
      break;
    }
    i = close + 1;
    size_t j = i;
    while (j < s.size() && s[j] == ' ') ++j;
    if (j < s.size() && s[j] == '(') {
      const size_t rp = s.find(')', j);
      if (rp != std::string_view::npos &&
          s.substr(j, rp - j).find_first_of("[*\"`") != std::string_view::npos)
        i = rp + 1;
    }
  }
  return out;
}

// Braces of cross-references go, accent codes become letters, runs of spaces become one, and
// spaces before punctuation left by removed spans go.
std::string clean_gcide_text(std::string_view s) {
  std::string t;
  for (size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    if (ch == '{' || ch == '}') continue;
    if (ch == '[') {
      const size_t close = s.find(']', i + 1);
      if (close != std::string_view::npos && close - i <= 9) {
        const std::string rep = accent_code(s.substr(i + 1, close - i - 1));
        if (!rep.empty()) {
          t += rep;
          i = close;
          continue;
        }
      }
    }
    t += ch;
  }
  std::string out;
  for (char ch : t) {
    if (ch == ' ' && (out.empty() || out.back() == ' ')) continue;
    if ((ch == ',' || ch == '.' || ch == ';' || ch == ':') && !out.empty() && out.back() == ' ')
      out.pop_back();
    out += ch;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

std::optional<CorpusFormat> corpus_format_from_name(std::string_view name) {
  if (name == "text") return CorpusFormat::kText;
  if (name == "fortune") return CorpusFormat::kFortune;
  if (name == "gcide") return CorpusFormat::kGcide;
  if (name == "chat") return CorpusFormat::kChat;
  return std::nullopt;
}

const char* corpus_format_name(CorpusFormat f) {
  switch (f) {
    case CorpusFormat::kText:
      return "text";
    case CorpusFormat::kFortune:
      return "fortune";
    case CorpusFormat::kGcide:
      return "gcide";
    case CorpusFormat::kChat:
      return "chat";
  }
  return "?";
}

std::string read_file_maybe_gz(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(path, ": not found or not a regular file");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail(path, ": cannot open");
  gzbuffer(f, 1 << 18);
  std::string out;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      const std::string what = msg ? msg : "read error";
      gzclose(f);
      fail(path, ": ", what);
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  // gzread stops quietly at a truncated gzip member; gzclose reports it.
  const int rc = gzclose(f);
  if (rc != Z_OK && rc != Z_BUF_ERROR) fail(path, ": gzip data is corrupt");
  if (rc == Z_BUF_ERROR) fail(path, ": gzip data is truncated");
  return out;
}

std::vector<InputFile> expand_inputs(const std::vector<std::string>& specs,
                                     CorpusFormat default_format) {
  std::vector<InputFile> files;
  for (const auto& spec : specs) {
    std::string p = spec;
    CorpusFormat fmt = default_format;
    if (const size_t colon = spec.find(':'); colon != std::string::npos) {
      if (auto f = corpus_format_from_name(std::string_view(spec).substr(0, colon))) {
        fmt = *f;
        p = spec.substr(colon + 1);
      }
    }
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : fs::directory_iterator(p, ec)) {
        const std::string fname = e.path().filename().string();
        if (fname.empty() || fname[0] == '.' || ends_with(fname, ".dat") || ends_with(fname, ".u8"))
          continue;
        std::error_code ec2;
        if (fs::is_regular_file(e.path(), ec2)) in_dir.push_back(e.path().string());
      }
      if (ec) fail(p, ": cannot list directory: ", ec.message());
      std::sort(in_dir.begin(), in_dir.end());
      if (in_dir.empty()) fail(p, ": directory has no input files");
      for (auto& f : in_dir) files.push_back({std::move(f), fmt});
    } else if (fs::is_regular_file(p, ec)) {
      files.push_back({p, fmt});
    } else {
      fail(p, ": no such file or directory");
    }
  }
  if (files.empty()) fail("no input files given");
  return files;
}

void split_documents(std::string_view text, const std::string& name, const CorpusOptions& opts,
                     FunctionRef<bool(Document&)> fn) {
  switch (opts.format) {
    case CorpusFormat::kText:
      if (opts.doc_separator.empty()) fail("--doc-separator must not be empty");
      split_text(text, name, opts.doc_separator, fn);
      break;
    case CorpusFormat::kFortune:
      split_text(text, name, "%", fn);
      break;
    case CorpusFormat::kGcide:
      split_gcide(text, name, fn);
      break;
    case CorpusFormat::kChat:
      split_chat(text, name, fn);
      break;
  }
}

void read_documents(const std::string& path, const CorpusOptions& opts,
                    FunctionRef<bool(Document&)> fn) {
  const std::string text = read_file_maybe_gz(path);
  split_documents(text, path, opts, fn);
}

std::string gcide_entry_text(std::string_view entry) {
  {
    const std::string_view head = trim(entry.substr(0, entry.find('\n')));
    if (head.rfind("00-database", 0) == 0 || head.rfind("00database", 0) == 0) return "";
  }
  // Paragraphs (runs of non-blank lines), each joined into one line.
  std::vector<std::string> paras;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) paras.push_back(std::move(cur));
    cur.clear();
  };
  for_each_line(entry, [&](std::string_view line, int64_t) {
    if (is_blank(line)) {
      flush();
    } else if (!is_source_tag(line)) {
      if (!cur.empty()) cur += ' ';
      cur.append(trim(line));
    }
    return true;
  });
  flush();
  std::string out;
  for (const auto& p : paras) {
    const std::string t = clean_gcide_text(strip_pronunciation(p));
    if (t.empty()) continue;
    if (!out.empty()) out += '\n';
    out += t;
  }
  return out;
}

}  // namespace brisk::train
