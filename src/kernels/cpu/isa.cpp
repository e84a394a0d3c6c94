// CPU feature detection (cpuid + xgetbv) and the BRISK_ISA override.
#include "kernels/cpu/isa.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "kernels/cpu/quant_isa.h"

#ifdef BRISK_X86_KERNELS
#include <cpuid.h>
#endif

namespace brisk::kernels {
namespace {

struct Features {
  bool supported[kIsaCount] = {true, false, false, false, false};
  bool avx512_bf16 = false;
};

#ifdef BRISK_X86_KERNELS
// XCR0: which register states the OS saves on context switch. Reading it is only legal when
// CPUID says OSXSAVE. Inline asm rather than _xgetbv, which would need -mxsave on this file.
uint64_t read_xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

Features detect() {
  Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;  // + opmask, ZMM0-15 upper halves, ZMM16-31
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned max_subleaf = a;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31), vnni = c & (1u << 11);
  __cpuid_count(7, 1, a, b, c, d);
  const bool avx_vnni = a & (1u << 4), avx512_bf16 = max_subleaf >= 1 && (a & (1u << 5));
  auto& sup = f.supported;
  sup[static_cast<int>(Isa::Avx2)] = os_ymm && avx2 && fma && f16c;
  sup[static_cast<int>(Isa::AvxVnni)] = sup[static_cast<int>(Isa::Avx2)] && avx_vnni;
  sup[static_cast<int>(Isa::Avx512)] =
      sup[static_cast<int>(Isa::Avx2)] && os_zmm && avx512f && avx512bw && avx512vl;
  sup[static_cast<int>(Isa::Avx512Vnni)] = sup[static_cast<int>(Isa::Avx512)] && vnni;
  f.avx512_bf16 = sup[static_cast<int>(Isa::Avx512)] && avx512_bf16;
  return f;
}
#else
Features detect() {
  return {};
}
#endif

const Features& features() {
  static const Features f = detect();
  return f;
}

Isa resolve_active() {
  const char* env = std::getenv("BRISK_ISA");
  if (!env || !*env) return best_isa();
  for (int i = 0; i < kIsaCount; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (std::strcmp(env, isa_name(isa)) != 0) continue;
    if (!isa_compiled(isa)) fail("BRISK_ISA=", env, ": this build has no ", env, " kernels");
    if (!cpu_supports(isa))
      fail("BRISK_ISA=", env, ": this CPU does not support ", env,
           " (best available: ", isa_name(best_isa()), ")");
    return isa;
  }
  fail("BRISK_ISA=", env,
       ": unknown instruction set (expected scalar, avx2, avxvnni, avx512 or avx512vnni)");
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return "scalar";
    case Isa::Avx2:
      return "avx2";
    case Isa::AvxVnni:
      return "avxvnni";
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx512Vnni:
      return "avx512vnni";
  }
  return "?";
}

bool isa_compiled(Isa isa) {
#ifdef BRISK_X86_KERNELS
  return static_cast<int>(isa) >= 0 && static_cast<int>(isa) < kIsaCount;
#else
  return isa == Isa::Scalar;
#endif
}

bool cpu_supports(Isa isa) {
  const int i = static_cast<int>(isa);
  return i >= 0 && i < kIsaCount && isa_compiled(isa) && features().supported[i];
}

Isa best_isa() {
  for (int i = kIsaCount - 1; i > 0; --i)
    if (cpu_supports(static_cast<Isa>(i))) return static_cast<Isa>(i);
  return Isa::Scalar;
}

Isa active_isa_kind() {
  static const Isa isa = resolve_active();  // a throw leaves it unset, so every call reports it
  return isa;
}

const char* active_isa() {
  return isa_name(active_isa_kind());
}

bool cpu_has_avx512_bf16() {
  return features().avx512_bf16;
}

}  // namespace brisk::kernels
