#include "cli.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace brisk::cli {

Loaded load(const std::string& path, bool with_weights, const std::string& vocab_from) {
  io::LoadOptions opts;
  opts.vocab_from = vocab_from;
  io::ModelFile mf = io::load_model_file(path, opts);
  Loaded l;
  if (mf.find("tokenizer.ggml.tokens"))
    l.tokenizer = tok::Tokenizer::from_metadata(mf.metadata, path);
  if (with_weights) {
    l.model = model::Model::load(std::move(mf));
    if (l.tokenizer && l.tokenizer->n_vocab() > l.model->n_vocab())
      fail(path, ": tokenizer has ", l.tokenizer->n_vocab(), " tokens but the model only ",
           l.model->n_vocab(), " embedding rows");
  }
  return l;
}

std::vector<int32_t> parse_token_list(const std::string& s) {
  std::vector<int32_t> ids;
  std::string cur;
  auto flush = [&] {
    if (cur.empty()) return;
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(cur, &used);
    } catch (...) {
      used = 0;
    }
    if (used != cur.size() || v < 0 || v > INT32_MAX) fail("bad token id '", cur, "' in --tokens");
    ids.push_back(static_cast<int32_t>(v));
    cur.clear();
  };
  for (char c : s) {
    if (c == ' ' || c == ',' || c == '\t' || c == '\n') {
      flush();
    } else {
      cur += c;
    }
  }
  flush();
  return ids;
}

std::string read_file_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string default_model_path() {
  if (const char* e = std::getenv("BRISK_DEFAULT_MODEL"); e && *e) return e;
#ifdef BRISK_DEFAULT_MODEL
  return BRISK_DEFAULT_MODEL;
#else
  return "models/brisk-default.gguf";
#endif
}

std::string model_or_default(const std::string& model) {
  if (!model.empty()) return model;
  const std::string d = default_model_path();
  check(std::filesystem::exists(d), "no -m given and the default model ", d,
        " is missing (make default-model trains it)");
  return d;
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min(n, 64u));
}

}  // namespace brisk::cli
