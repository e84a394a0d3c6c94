// AVX2 + FMA + F16C attention tile kernel (compiled with -mavx2 -mfma -mf16c; see CMakeLists.txt):
// the shared vector kernel of attention_simd.h on 8-float lanes. Nothing here runs before the
// dispatcher (attention.cpp) has checked the CPU.
#include "kernels/cpu/attention_isa.h"

#ifdef BRISK_X86_ATTENTION
#include "kernels/cpu/attention_simd.h"

namespace brisk::kernels {

void attention_tile_avx2(const AttnTile& tile, const KvView& k, const KvView& v, float* work) {
  AttnKernel<V8>::run(tile, k, v, work);
}

void attention_exp2_avx2(const float* x, float* y, int64_t n) {
  AttnKernel<V8>::exp2_array(x, y, n);
}

}  // namespace brisk::kernels
#endif
