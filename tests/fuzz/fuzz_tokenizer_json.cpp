// libFuzzer target: arbitrary bytes as tokenizer.json (optionally followed by a NUL byte and a
// tokenizer_config.json). Any input must either be rejected with brisk::Error (or a JSON library
// exception) or give a tokenizer that encodes and decodes without crashing.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/error.h"
#include "io/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  std::string_view tj = all, cfg;
  if (const size_t nul = all.find('\0'); nul != std::string_view::npos) {
    tj = all.substr(0, nul);
    cfg = all.substr(nul + 1);
  }
  try {
    const brisk::io::Metadata kv =
        brisk::tok::tokenizer_metadata_from_hf(tj, cfg, "fuzz/tokenizer.json");
    auto tok = brisk::tok::Tokenizer::from_metadata(kv, "fuzz/tokenizer.json");
    const auto ids = tok->encode("Hello world! 123 \xC3\xA9t\xC3\xA9 <s>\n  x", true, true);
    (void)tok->decode(ids);
    brisk::tok::StreamDecoder sd(*tok);
    for (int32_t id : ids) (void)sd.push(id);
    (void)sd.flush();
    // Export must accept whatever import produced.
    (void)brisk::tok::tokenizer_json_from_metadata(kv);
  } catch (const brisk::Error&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
