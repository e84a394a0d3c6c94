// Packed int8 GEMM / GEMV for AVX2 + FMA + F16C: the kernels of gemm_impl.h over the 256-bit traits
// of gemm_v256.h, products by vpmaddubsw + vpmaddwd. Nothing here runs before the dispatcher
// (gemm.cpp) has checked the CPU; packed_gemm_avx2 is the entry point.
#include "kernels/cpu/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "kernels/cpu/gemm_v256.h"

namespace brisk::kernels {
namespace {

constexpr GemmTable<V256<false>> kTable{};

}  // namespace

const PackedGemm* packed_gemm_avx2(DType t) {
  return kTable.find(t);
}

}  // namespace brisk::kernels

#endif
