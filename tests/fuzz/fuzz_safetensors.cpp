// libFuzzer target: safetensors header parsing and validation. Either the file parses (and every
// tensor view lies inside the input) or brisk::Error is thrown; nothing else is allowed.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace brisk;
  try {
    auto f = safetensors::SafetensorsFile::parse(data, size, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const auto& t : f.tensors()) {
      if (t.nbytes == 0) continue;
      sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
    }
  } catch (const Error&) {
  }
  return 0;
}
