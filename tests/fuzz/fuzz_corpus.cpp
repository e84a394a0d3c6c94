// libFuzzer target: the training-corpus readers (text separators, fortune, GCIDE markup
// stripping, chat JSON lines). The first byte picks the format; the rest is the file. Either the
// documents come out or brisk::Error is thrown (chat), never a crash or an out-of-bounds read.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "train/corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace brisk;
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  train::CorpusOptions o;
  static const char* kSeps[] = {"blank", "line", "file", "%", "---"};
  o.format = static_cast<train::CorpusFormat>(data[0] % 4);
  o.doc_separator = kSeps[(data[0] / 4) % 5];
  size_t n = 0;
  try {
    train::split_documents(text, "fuzz", o, [&](train::Document& d) {
      n += d.text.size() + d.messages.size();
      return true;
    });
  } catch (const Error&) {
  }
  volatile size_t sink = n + train::gcide_entry_text(text).size();
  (void)sink;
  return 0;
}
