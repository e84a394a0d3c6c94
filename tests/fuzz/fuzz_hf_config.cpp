// libFuzzer target: Hugging Face config.json -> GGUF metadata, and back. Invalid JSON or an
// unsupported / out-of-range config must be a brisk::Error, never another exception.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace brisk;
  auto cfg = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded()) return 0;
  try {
    io::hf::HfConfig c = io::hf::config_to_metadata(cfg, "config.json", "fuzz");
    io::ModelFile m;
    m.path = "fuzz";
    m.metadata = c.metadata;
    (void)io::hf::metadata_to_config(m, true, "float16").dump();
  } catch (const Error&) {
  }
  return 0;
}
