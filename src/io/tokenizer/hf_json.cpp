// Hugging Face tokenizer.json <-> GGUF tokenizer.* metadata.
//
// Import understands the two shapes GGUF can express:
//   byte-level BPE: model BPE + a ByteLevel pre-tokenizer (alone, or after Split/Digits steps);
//     the Split regexes are matched against the known pre-tokenizers to name tokenizer.ggml.pre.
//   SentencePiece-style BPE: model BPE with byte_fallback and U+2581 for spaces (a Prepend/Replace
//     normalizer or a Metaspace pre-tokenizer). GGUF's "llama" model merges by piece score, so
//     scores are derived from the merge list: a piece made by merge r scores -r, which gives the
//     same merge order as the merge ranks.
// Export writes the same shapes (an SPM vocabulary gets all merges a+b -> ab with a, b, ab in the
// vocabulary, ordered by the score of ab, as Hugging Face's own SentencePiece converter does).
#include <algorithm>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "io/tokenizer/pre_tokenizer.h"
#include "io/tokenizer/tokenizer.h"
#include "io/tokenizer/unicode.h"

namespace brisk::tok {

namespace {

using json = nlohmann::json;
// Small objects keep their key order for readability; the vocabulary does not need it.
using ojson = nlohmann::ordered_json;
constexpr const char* kSpmSpace = "\xE2\x96\x81";

constexpr const char* kHfGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kHfGpt2NoTail =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";

// Hugging Face spellings of patterns our table writes differently.
const std::map<std::string, std::string>& hf_pattern_aliases() {
  static const std::map<std::string, std::string> m = {
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
      // The trailing "|\s+" never changes a split: whitespace it would take is a gap anyway.
      {kHfGpt2NoTail, kHfGpt2},
  };
  return m;
}

// Patterns compare after writing control characters as escapes (tokenizer.json files hold
// "[\r\n]" both as escapes and as the literal characters) and mapping known aliases.
std::string canonical_pattern(const std::string& raw) {
  std::string p;
  for (char c : raw) {
    if (c == '\r')
      p += "\\r";
    else if (c == '\n')
      p += "\\n";
    else if (c == '\t')
      p += "\\t";
    else
      p += c;
  }
  auto it = hf_pattern_aliases().find(p);
  return it == hf_pattern_aliases().end() ? p : it->second;
}

// Escapes a literal string for use as a regex.
std::string regex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}-").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

class HfReader {
 public:
  explicit HfReader(const std::string& source) : source_(source) {}
  [[noreturn]] void bad(const std::string& field, const std::string& what) const {
    fail(source_, ": ", field, ": ", what);
  }
  // Collects the regexes of a pre_tokenizer tree in application order.
  void collect(const json& pt, const std::string& field, std::vector<std::string>& pats,
               bool& byte_level, bool& metaspace) const {
    if (pt.is_null()) return;
    if (!pt.is_object() || !pt.contains("type") || !pt["type"].is_string())
      bad(field, "expected an object with a type");
    const std::string type = pt["type"].get<std::string>();
    if (type == "Sequence") {
      const json& list = pt.value("pretokenizers", json());
      if (!list.is_array()) bad(field + ".pretokenizers", "expected an array");
      for (size_t i = 0; i < list.size(); ++i)
        collect(list[i], str_cat(field, ".pretokenizers[", i, "]"), pats, byte_level, metaspace);
    } else if (type == "ByteLevel") {
      byte_level = true;
      const json& ur = pt.value("use_regex", json(true));
      if (!ur.is_boolean()) bad(field + ".use_regex", "expected a bool");
      if (ur.get<bool>()) pats.push_back(kHfGpt2);
    } else if (type == "Split") {
      const json& pat = pt.value("pattern", json());
      std::string p;
      if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
        p = pat["Regex"].get<std::string>();
      } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
        p = regex_escape(pat["String"].get<std::string>());
      } else {
        bad(field + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
      }
      const json& beh = pt.value("behavior", json("Isolated"));
      const json& inv = pt.value("invert", json(false));
      if (beh != json("Isolated") || inv != json(false))
        bad(field, "only Split with behavior Isolated and invert false is supported");
      pats.push_back(canonical_pattern(p));
    } else if (type == "Digits") {
      const json& ind = pt.value("individual_digits", json(false));
      pats.push_back(ind == json(true) ? R"(\p{N})" : R"(\p{N}+)");
    } else if (type == "Metaspace") {
      metaspace = true;
    } else {
      bad(field, "unsupported pre-tokenizer type '" + type + "'");
    }
  }

 private:
  const std::string& source_;
};

// Reads a token given as "text" or {"content": "text"} (tokenizer_config.json style).
std::optional<std::string> token_string(const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

bool contains_prepend_space(const json& norm) {
  if (!norm.is_object()) return false;
  const std::string type = norm.value("type", std::string());
  if (type == "Prepend") return norm.value("prepend", std::string()) == kSpmSpace;
  if (type == "Sequence" && norm.contains("normalizers") && norm["normalizers"].is_array())
    for (const auto& n : norm["normalizers"])
      if (contains_prepend_space(n)) return true;
  return false;
}

bool metaspace_prefix(const json& pt) {
  if (!pt.is_object()) return false;
  const std::string type = pt.value("type", std::string());
  if (type == "Metaspace") {
    if (pt.contains("prepend_scheme") && pt["prepend_scheme"].is_string())
      return pt["prepend_scheme"].get<std::string>() != "never";
    return pt.value("add_prefix_space", true);
  }
  if (type == "Sequence" && pt.contains("pretokenizers") && pt["pretokenizers"].is_array())
    for (const auto& p : pt["pretokenizers"])
      if (metaspace_prefix(p)) return true;
  return false;
}

}  // namespace

io::Metadata tokenizer_metadata_from_hf(std::string_view tokenizer_json,
                                        std::string_view tokenizer_config_json,
                                        const std::string& source) {
  const HfReader r(source);
  const json tj = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (tj.is_discarded() || !tj.is_object()) fail(source, ": not a valid JSON object");
  json cfg = json::object();
  if (!tokenizer_config_json.empty()) {
    cfg = json::parse(tokenizer_config_json, nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object())
      fail(source, ": tokenizer_config.json is not a valid JSON object");
  }

  const json& model = tj.value("model", json());
  if (!model.is_object()) r.bad("model", "missing or not an object");
  const std::string mtype = model.contains("type") && model["type"].is_string()
                                ? model["type"].get<std::string>()
                                : "BPE";
  if (mtype != "BPE") r.bad("model.type", "'" + mtype + "' is not supported (only BPE)");
  const json& vocab = model.value("vocab", json());
  if (!vocab.is_object() || vocab.empty()) r.bad("model.vocab", "missing or empty");
  const json& merges_j = model.value("merges", json::array());
  if (!merges_j.is_array()) r.bad("model.merges", "expected an array");
  const json& added = tj.value("added_tokens", json::array());
  if (!added.is_array()) r.bad("added_tokens", "expected an array");

  // Vocabulary: ids may have holes (filled with [PADn] placeholders, as llama.cpp's converter).
  constexpr int64_t kMaxVocab = 1 << 24;
  std::vector<std::string> tokens;
  std::vector<char> present;
  auto place = [&](int64_t id, const std::string& text, const std::string& field) {
    if (id < 0 || id >= kMaxVocab) r.bad(field, str_cat("token id ", id, " out of range"));
    const auto i = static_cast<size_t>(id);
    if (i >= tokens.size()) {
      tokens.resize(i + 1);
      present.resize(i + 1, 0);
    }
    tokens[i] = text;
    present[i] = 1;
  };
  for (const auto& [text, id] : vocab.items()) {
    if (!id.is_number_integer()) r.bad("model.vocab", "id of '" + text + "' is not an integer");
    place(id.get<int64_t>(), text, "model.vocab");
  }
  std::vector<std::pair<size_t, bool>> added_ids;  // id, special
  for (size_t k = 0; k < added.size(); ++k) {
    const json& a = added[k];
    const std::string field = str_cat("added_tokens[", k, "]");
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string())
      r.bad(field, "expected {\"id\": int, \"content\": string}");
    place(a["id"].get<int64_t>(), a["content"].get<std::string>(), field);
    added_ids.push_back({a["id"].get<size_t>(), a.value("special", false)});
  }
  const size_t n = tokens.size();
  // Holes become placeholder tokens; refuse ids so sparse that placeholders would dominate.
  const size_t n_present = static_cast<size_t>(std::count(present.begin(), present.end(), 1));
  if (n > 2 * n_present + 1024)
    r.bad("model.vocab",
          str_cat("ids are sparse: largest is ", n - 1, " for ", n_present, " tokens"));

  std::vector<std::string> pats;
  bool byte_level = false, metaspace = false;
  r.collect(tj.value("pre_tokenizer", json()), "pre_tokenizer", pats, byte_level, metaspace);
  const json& dec = tj.value("decoder", json());
  if (!byte_level && dec.is_object() && dec.value("type", std::string()) == "ByteLevel")
    byte_level = true;
  const bool spm = !byte_level;

  // Merges: "a b" strings or ["a", "b"] pairs.
  std::vector<std::string> merges;
  merges.reserve(merges_j.size());
  for (size_t k = 0; k < merges_j.size(); ++k) {
    const json& m = merges_j[k];
    std::string s;
    if (m.is_string()) {
      s = m.get<std::string>();
      const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos || sp + 1 >= s.size())
        r.bad(str_cat("model.merges[", k, "]"), "expected 'left right'");
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      if (m[0].get<std::string>().empty() || m[1].get<std::string>().empty())
        r.bad(str_cat("model.merges[", k, "]"), "empty merge part");
      s = m[0].get<std::string>() + " " + m[1].get<std::string>();
    } else {
      r.bad(str_cat("model.merges[", k, "]"), "expected a string or a pair of strings");
    }
    merges.push_back(std::move(s));
  }

  std::map<std::string, size_t> text_to_id;
  for (size_t i = 0; i < n; ++i)
    if (present[i]) text_to_id.emplace(tokens[i], i);
  auto id_of = [&](const std::string& t) -> int64_t {
    auto it = text_to_id.find(t);
    return it == text_to_id.end() ? -1 : static_cast<int64_t>(it->second);
  };

  const bool byte_fallback = model.value("byte_fallback", false) == true;
  std::optional<std::string> unk_text;
  if (model.contains("unk_token") && model["unk_token"].is_string())
    unk_text = model["unk_token"].get<std::string>();
  if (!unk_text) unk_text = token_string(cfg, "unk_token");
  const int64_t unk_id = unk_text ? id_of(*unk_text) : -1;

  std::vector<int32_t> types(n, static_cast<int32_t>(TokenType::kNormal));
  for (size_t i = 0; i < n; ++i) {
    if (!present[i]) {
      tokens[i] = str_cat("[PAD", i, "]");
      types[i] = static_cast<int32_t>(TokenType::kUnused);
    } else if (spm && byte_fallback && tokens[i].size() == 6 && tokens[i].rfind("<0x", 0) == 0 &&
               tokens[i][5] == '>') {
      types[i] = static_cast<int32_t>(TokenType::kByte);
    }
  }
  for (const auto& [id, special] : added_ids)
    types[id] = static_cast<int32_t>(special ? TokenType::kControl : TokenType::kUserDefined);
  if (unk_id >= 0) types[static_cast<size_t>(unk_id)] = static_cast<int32_t>(TokenType::kUnknown);

  io::Metadata md;
  auto set = [&](const std::string& k, gguf::Value v) { md.emplace_back(k, std::move(v)); };
  set("tokenizer.ggml.model", gguf::Value::string(spm ? "llama" : "gpt2"));
  if (spm) {
    set("tokenizer.ggml.pre", gguf::Value::string("default"));
  } else {
    if (pats.empty())
      r.bad("pre_tokenizer", "a byte-level tokenizer without a splitting pattern is not supported");
    const PreTokenizerSpec* found = nullptr;
    for (const auto& spec : pre_tokenizer_specs()) {
      if (spec.patterns.size() != pats.size()) continue;
      bool same = true;
      for (size_t i = 0; same && i < pats.size(); ++i)
        same = canonical_pattern(spec.patterns[i]) == pats[i];
      if (same) {
        found = &spec;
        break;
      }
    }
    if (!found)
      r.bad("pre_tokenizer",
            "split patterns do not match any known pre-tokenizer (first: " + pats[0] + ")");
    set("tokenizer.ggml.pre", gguf::Value::string(found->name));
  }
  set("tokenizer.ggml.tokens", gguf::Value::strings(tokens));
  if (spm) {
    // Score of a piece = -(rank of the first merge producing it); unmergeable pieces score lowest.
    std::vector<float> scores(n, -1e9f);
    std::vector<char> scored(n, 0);
    for (size_t k = 0; k < merges.size(); ++k) {
      const size_t sp = merges[k].find(' ', 1);
      const int64_t id = id_of(merges[k].substr(0, sp) + merges[k].substr(sp + 1));
      if (id < 0 || scored[static_cast<size_t>(id)]) continue;
      scored[static_cast<size_t>(id)] = 1;
      scores[static_cast<size_t>(id)] = -static_cast<float>(k);
    }
    for (size_t i = 0; i < n; ++i)
      if (types[i] != static_cast<int32_t>(TokenType::kNormal)) scores[i] = 0.0f;
    set("tokenizer.ggml.scores", gguf::Value::f32s(scores));
  }
  set("tokenizer.ggml.token_type", gguf::Value::i32s(types));
  if (!spm) set("tokenizer.ggml.merges", gguf::Value::strings(merges));

  // Special ids: tokenizer_config.json first, then the post-processor template.
  auto set_id = [&](const char* key, int64_t id) {
    if (id >= 0) set(key, gguf::Value::u32(static_cast<uint32_t>(id)));
  };
  std::optional<bool> add_bos, add_eos;
  int64_t bos = -1, eos = -1;
  const json& post = tj.value("post_processor", json());
  std::vector<json> procs;
  if (post.is_object() && post.value("type", std::string()) == "Sequence" &&
      post.contains("processors") && post["processors"].is_array())
    for (const auto& p : post["processors"]) procs.push_back(p);
  else if (post.is_object())
    procs.push_back(post);
  for (const auto& p : procs) {
    if (!p.is_object() || p.value("type", std::string()) != "TemplateProcessing") continue;
    const json& single = p.value("single", json());
    if (!single.is_array() || single.empty()) continue;
    auto special_id = [&](const json& item) -> int64_t {
      if (!item.is_object() || !item.contains("SpecialToken") || !item["SpecialToken"].is_object())
        return -1;
      const json& st = item["SpecialToken"];
      if (!st.contains("id") || !st["id"].is_string()) return -1;
      return id_of(st["id"].get<std::string>());
    };
    const int64_t first = special_id(single.front()), last = special_id(single.back());
    add_bos = first >= 0;
    add_eos = last >= 0 && single.size() > 1;
    if (first >= 0) bos = first;
    if (last >= 0 && single.size() > 1) eos = last;
  }
  if (auto t = token_string(cfg, "bos_token")) bos = id_of(*t);
  if (auto t = token_string(cfg, "eos_token")) eos = id_of(*t);
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
    add_bos = cfg["add_bos_token"].get<bool>();
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean())
    add_eos = cfg["add_eos_token"].get<bool>();
  set_id("tokenizer.ggml.bos_token_id", bos);
  set_id("tokenizer.ggml.eos_token_id", eos);
  set_id("tokenizer.ggml.unknown_token_id", unk_id);
  if (auto t = token_string(cfg, "pad_token")) set_id("tokenizer.ggml.padding_token_id", id_of(*t));
  if (add_bos) set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(*add_bos && bos >= 0));
  if (add_eos) set("tokenizer.ggml.add_eos_token", gguf::Value::boolean(*add_eos && eos >= 0));
  if (spm) {
    const bool prefix = contains_prepend_space(tj.value("normalizer", json())) ||
                        metaspace_prefix(tj.value("pre_tokenizer", json()));
    set("tokenizer.ggml.add_space_prefix", gguf::Value::boolean(prefix));
  }

  if (cfg.contains("chat_template")) {
    const json& ct = cfg["chat_template"];
    std::string text;
    if (ct.is_string()) {
      text = ct.get<std::string>();
    } else if (ct.is_array()) {
      // A list of {"name", "template"}: the "default" one, else the first.
      for (const auto& e : ct)
        if (e.is_object() && e.value("name", std::string()) == "default" &&
            e.contains("template") && e["template"].is_string())
          text = e["template"].get<std::string>();
      if (text.empty() && !ct.empty() && ct[0].is_object() && ct[0].contains("template") &&
          ct[0]["template"].is_string())
        text = ct[0]["template"].get<std::string>();
    }
    if (!text.empty()) set("tokenizer.chat_template", gguf::Value::string(text));
  }
  return md;
}

std::string tokenizer_json_from_metadata(const io::Metadata& kv) {
  const auto tp = Tokenizer::from_metadata(kv, "tokenizer metadata");
  const Tokenizer& t = *tp;
  const bool spm = t.kind() == Tokenizer::Kind::kSpm;
  const auto n = static_cast<size_t>(t.n_vocab());

  ojson added = ojson::array();
  for (size_t i = 0; i < n; ++i) {
    const TokenType ty = t.token_type(static_cast<int32_t>(i));
    if (ty != TokenType::kControl && ty != TokenType::kUserDefined && ty != TokenType::kUnknown)
      continue;
    added.push_back({{"id", i},
                     {"content", t.token_text(static_cast<int32_t>(i))},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", ty != TokenType::kUserDefined}});
  }

  // A plain (sorted) object: ordered_json's linear key lookup would make this quadratic.
  // Duplicate texts keep the last id, as the text -> id map of the tokenizer does.
  json vocab = json::object();
  for (size_t i = 0; i < n; ++i) vocab[t.token_text(static_cast<int32_t>(i))] = i;

  ojson merges = ojson::array();
  if (spm) {
    // Every split ab = a + b of a piece into two pieces, ordered by the score of ab (then by id),
    // so that merge-rank order equals SentencePiece's score order.
    struct M {
      float score;
      int32_t id;
      int32_t left;
      std::string text;
    };
    std::vector<M> ms;
    for (size_t i = 0; i < n; ++i) {
      const auto id = static_cast<int32_t>(i);
      if (t.token_type(id) != TokenType::kNormal) continue;
      const std::string& s = t.token_text(id);
      for (size_t cut = utf8_len(static_cast<uint8_t>(s[0])); cut < s.size();
           cut += utf8_len(static_cast<uint8_t>(s[cut]))) {
        const int32_t l = t.find_token(std::string_view(s).substr(0, cut));
        const int32_t r = t.find_token(std::string_view(s).substr(cut));
        if (l >= 0 && r >= 0)
          ms.push_back({t.token_score(id), id, l, s.substr(0, cut) + " " + s.substr(cut)});
      }
    }
    std::stable_sort(ms.begin(), ms.end(), [](const M& a, const M& b) {
      if (a.score != b.score) return a.score > b.score;
      if (a.id != b.id) return a.id < b.id;
      return a.left < b.left;
    });
    for (auto& m : ms) merges.push_back(std::move(m.text));
  } else {
    for (const auto& [k, v] : kv)
      if (k == "tokenizer.ggml.merges")
        for (const auto& e : v.arr) merges.push_back(e.str);
  }

  ojson model = {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", t.unk_id() >= 0 ? ojson(t.token_text(t.unk_id())) : ojson(nullptr)},
                 {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr},
                 {"fuse_unk", spm},
                 {"byte_fallback", spm},
                 {"ignore_merges", false},
                 {"vocab", nullptr},
                 {"merges", std::move(merges)}};

  ojson normalizer = nullptr, pre = nullptr, decoder;
  if (spm) {
    ojson norms = ojson::array();
    if (t.add_space_prefix()) norms.push_back({{"type", "Prepend"}, {"prepend", kSpmSpace}});
    norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpmSpace}});
    normalizer = {{"type", "Sequence"}, {"normalizers", std::move(norms)}};
    ojson decs = ojson::array();
    decs.push_back({{"type", "Replace"}, {"pattern", {{"String", kSpmSpace}}}, {"content", " "}});
    decs.push_back({{"type", "ByteFallback"}});
    decs.push_back({{"type", "Fuse"}});
    if (t.add_space_prefix())
      decs.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    decoder = {{"type", "Sequence"}, {"decoders", std::move(decs)}};
  } else {
    const PreTokenizerSpec* spec = find_pre_tokenizer(t.pre());
    model["ignore_merges"] = spec->ignore_merges;
    ojson steps = ojson::array();
    for (const char* p : spec->patterns)
      steps.push_back({{"type", "Split"},
                       {"pattern", {{"Regex", p}}},
                       {"behavior", "Isolated"},
                       {"invert", false}});
    steps.push_back({{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", false}});
    pre = {{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
    decoder = {{"type", "ByteLevel"},
               {"add_prefix_space", true},
               {"trim_offsets", true},
               {"use_regex", true}};
  }

  ojson post = nullptr;
  if (t.add_bos() || t.add_eos()) {
    ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
    auto special = [&](int32_t id, int type_id) {
      const std::string& s = t.token_text(id);
      specials[s] = {{"id", s}, {"ids", {id}}, {"tokens", {s}}};
      return ojson{{"SpecialToken", {{"id", s}, {"type_id", type_id}}}};
    };
    if (t.add_bos()) single.push_back(special(t.bos_id(), 0));
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (t.add_eos()) single.push_back(special(t.eos_id(), 0));
    pair = single;
    if (t.add_bos()) pair.push_back(special(t.bos_id(), 1));
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    if (t.add_eos()) pair.push_back(special(t.eos_id(), 1));
    post = {{"type", "TemplateProcessing"},
            {"single", std::move(single)},
            {"pair", std::move(pair)},
            {"special_tokens", std::move(specials)}};
  }

  // Splice the sorted vocabulary in as text: ordered_json cannot hold a json value directly.
  ojson out = {{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", std::move(added)},
               {"normalizer", std::move(normalizer)},
               {"pre_tokenizer", std::move(pre)},
               {"post_processor", std::move(post)},
               {"decoder", std::move(decoder)},
               {"model", std::move(model)}};
  // Token text may hold bytes that are not UTF-8; replace rather than throw.
  std::string text = out.dump(2, ' ', false, ojson::error_handler_t::replace);
  static constexpr std::string_view kHole = "\"vocab\": null";
  const size_t at = text.rfind(kHole);
  text.replace(at, kHole.size(),
               "\"vocab\": " + vocab.dump(-1, ' ', false, json::error_handler_t::replace));
  return text + "\n";
}

std::string tokenizer_config_json_from_metadata(const io::Metadata& kv) {
  const auto tp = Tokenizer::from_metadata(kv, "tokenizer metadata");
  const Tokenizer& t = *tp;
  ojson c = ojson::object();
  c["add_bos_token"] = t.add_bos();
  c["add_eos_token"] = t.add_eos();
  if (t.bos_id() >= 0) c["bos_token"] = t.token_text(t.bos_id());
  if (t.eos_id() >= 0) c["eos_token"] = t.token_text(t.eos_id());
  if (t.unk_id() >= 0) c["unk_token"] = t.token_text(t.unk_id());
  if (t.pad_id() >= 0) c["pad_token"] = t.token_text(t.pad_id());
  if (!t.chat_template().empty()) c["chat_template"] = t.chat_template();
  return c.dump(2, ' ', false, ojson::error_handler_t::replace) + "\n";
}

}  // namespace brisk::tok
