// Packed int8 GEMM / GEMV for AVX2 + AVX-VNNI (compiled with -mavx2 -mfma -mf16c -mavxvnni): the
// kernels of gemm_impl.h over the 256-bit traits of gemm_v256.h with VEX-encoded vpdpbusd, for CPUs
// with AVX-VNNI but no AVX-512 (Alder Lake and later client cores). Nothing here runs before the
// dispatcher (gemm.cpp) has checked the CPU; packed_gemm_avxvnni is the entry point.
#include "kernels/cpu/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include "kernels/cpu/gemm_v256.h"

namespace brisk::kernels {
namespace {

constexpr GemmTable<V256<true>> kTable{};

}  // namespace

const PackedGemm* packed_gemm_avxvnni(DType t) {
  return kTable.find(t);
}

}  // namespace brisk::kernels

#endif
