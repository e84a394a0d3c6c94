// AVX-512 attention tile kernel (compiled with the AVX-512 F/BW/VL/VNNI + AVX2 flags; see
// CMakeLists.txt; no VNNI instruction is used, so Avx512 and Avx512Vnni share it). Tiles of up to
// 8 rows (decoding with small GQA groups) compute q.k and the softmax on 8-float lanes, where 16
// would leave half of every vector idle; p.v has head_dim in its lanes and always uses 16. Nothing
// here runs before the dispatcher (attention.cpp) has checked the CPU.
#include "kernels/cpu/attention_isa.h"

#ifdef BRISK_X86_ATTENTION
// GCC 12's AVX-512 intrinsics self-initialise their "undefined" results (`__m512 __Y = __Y;`),
// which its own -Wuninitialized then reports once inlined; the values are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "kernels/cpu/attention_simd.h"

namespace brisk::kernels {

void attention_tile_avx512(const AttnTile& tile, const KvView& k, const KvView& v, float* work) {
  if (tile.n_q * tile.group <= 8) {
    AttnKernel<V8, V16>::run(tile, k, v, work);
  } else {
    AttnKernel<V16>::run(tile, k, v, work);
  }
}

void attention_exp2_avx512(const float* x, float* y, int64_t n) {
  AttnKernel<V16>::exp2_array(x, y, n);
}

}  // namespace brisk::kernels
#endif
