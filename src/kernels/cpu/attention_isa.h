// Internal: entry points of the per-ISA attention files (attention_avx2.cpp, attention_avx512.cpp).
// Only the dispatcher in attention.cpp calls them, and only after cpu_supports() confirmed the ISA
// and head_dim % 16 == 0 (the vector kernels' only shape requirement).
#pragma once
#include "kernels/cpu/attention.h"

namespace brisk::kernels {

#if defined(__x86_64__) || defined(__i386__)
#define BRISK_X86_ATTENTION 1
void attention_tile_avx2(const AttnTile& tile, const KvView& k, const KvView& v, float* work);
void attention_tile_avx512(const AttnTile& tile, const KvView& k, const KvView& v, float* work);
void attention_exp2_avx2(const float* x, float* y, int64_t n);
void attention_exp2_avx512(const float* x, float* y, int64_t n);
#endif

}  // namespace brisk::kernels
