// Helpers shared by the tokenizer tests: the vocab test-vector format of ../shared/testdata.
#pragma once
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/testdata.h"
#include "io/gguf/gguf.h"
#include "io/tokenizer/tokenizer.h"

namespace brisk::test {
struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::vector<VocabCase> load_cases(const std::string& gguf_path) {
  const std::string inp = read_text_file(gguf_path + ".inp");
  const std::string out = read_text_file(gguf_path + ".out");
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0;;) {
    const size_t next = inp.find(kSep, pos);
    if (next == std::string::npos) {
      texts.push_back(inp.substr(pos));
      break;
    }
    texts.push_back(inp.substr(pos, next - pos));
    pos = next + kSep.size();
  }
  std::vector<std::string> lines;
  std::istringstream os(out);
  for (std::string line; std::getline(os, line);) lines.push_back(line);
  std::vector<VocabCase> cases;
  for (size_t i = 0; i < texts.size(); ++i) {
    VocabCase c{texts[i], {}};
    if (i < lines.size()) {
      std::istringstream ls(lines[i]);
      for (int32_t id; ls >> id;) c.ids.push_back(id);
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

inline std::shared_ptr<const tok::Tokenizer> load_vocab(const std::string& rel) {
  const std::string path = testdata(rel);
  auto f = gguf::GgufFile::open(path);
  return tok::Tokenizer::from_metadata(f.metadata(), path);
}

}  // namespace brisk::test
