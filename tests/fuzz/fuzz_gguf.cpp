// libFuzzer target: GGUF parsing. Any input must either parse (and then every tensor view lies
// inside the input) or throw brisk::Error; anything else (crash, ASan/UBSan report, another
// exception type) is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/gguf/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace brisk;
  try {
    gguf::GgufFile f = gguf::GgufFile::parse(data, size, "fuzz.gguf");
    volatile uint8_t sink = 0;
    for (const auto& t : f.tensors()) {
      if (t.nbytes == 0) continue;
      sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];  // ASan checks the view's both ends
    }
    for (const auto& [k, v] : f.metadata()) (void)v.to_display();
    (void)f.get_int("general.alignment");
  } catch (const Error&) {
  }
  return 0;
}
