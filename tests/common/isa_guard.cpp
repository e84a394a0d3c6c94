// A forced ISA variant (BRISK_ISA) that this CPU lacks skips the whole test binary (exit 77, which
// ctest reports as skipped) instead of failing every test that touches a kernel.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/isa.h"

namespace {

const bool kChecked = [] {
  const char* env = std::getenv("BRISK_ISA");
  if (!env || !*env) return true;
  using brisk::kernels::Isa;
  for (int i = 0; i < brisk::kernels::kIsaCount; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (std::strcmp(env, brisk::kernels::isa_name(isa)) == 0 &&
        !brisk::kernels::cpu_supports(isa)) {
      std::fprintf(stderr, "BRISK_ISA=%s: not supported by this CPU, skipping\n", env);
      std::exit(77);
    }
  }
  return true;
}();

}  // namespace
