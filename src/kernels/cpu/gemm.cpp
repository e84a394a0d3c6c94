// Dispatch of the packed GEMM kernels (see gemm.h): the active ISA's kernel per storage type.
#include "kernels/cpu/gemm.h"

#include <cstdlib>
#include <cstring>

namespace brisk::kernels {

const PackedGemm* packed_gemm_for(DType t, Isa isa) {
  if (!cpu_supports(isa)) return nullptr;
#if defined(__x86_64__) || defined(__i386__)
  switch (isa) {
    case Isa::Avx2:
      return packed_gemm_avx2(t);
    case Isa::AvxVnni:
      return packed_gemm_avxvnni(t);
    case Isa::Avx512:
      return packed_gemm_avx512(t);
    case Isa::Avx512Vnni:
      return packed_gemm_avx512vnni(t);
    case Isa::Scalar:
      break;
  }
#endif
  (void)t;
  return nullptr;
}

const PackedGemm* packed_gemm(DType t) {
  static const bool disabled = [] {
    const char* e = std::getenv("BRISK_PACKED");
    return e && std::strcmp(e, "0") == 0;
  }();
  if (disabled) return nullptr;
  return packed_gemm_for(t, active_isa_kind());
}

}  // namespace brisk::kernels
