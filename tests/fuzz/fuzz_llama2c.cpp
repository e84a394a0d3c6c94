// libFuzzer target: llama2.c checkpoint import from memory. Either the header and exact size
// check pass (and every tensor view lies inside the input) or brisk::Error is thrown.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/llama2c/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace brisk;
  try {
    io::ModelFile m = llama2c::parse(data, size, "fuzz.bin");
    volatile uint8_t sink = 0;
    for (const auto& t : m.tensors) {
      if (t.nbytes == 0) continue;
      sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
    }
  } catch (const Error&) {
  }
  return 0;
}
