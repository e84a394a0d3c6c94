// Per-storage-type kernels: the "traits table" of the design. One row per DType:
//   to_float   : n elements (a multiple of the block size) of blocks -> f32
//   from_float : f32 -> blocks (round-to-nearest with the standard per-block scale search)
//   vec_dot    : dot product of one weight row (blocks of `type`) with one activation row already
//                converted to `vec_dot_type` (e.g. Q4_0 rows dot Q8_0 activations, k-quants dot
//                Q8_K, F16 dot F16, F32 dot F32), n elements.
// Block layouts are bit-compatible with ggml/GGUF files written by other tools.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cpu/isa.h"

namespace brisk::kernels {

using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);
using VecDotFn = float (*)(int64_t n, const void* w, const void* a);

struct QuantKernels {
  DType type;
  ToFloatFn to_float;
  FromFloatFn from_float;
  VecDotFn vec_dot;
  DType vec_dot_type;
};

// The row of the active ISA variant (see isa.h): vectorised members where that variant has them,
// scalar reference members elsewhere. Resolved once, then a table lookup.
// Throws brisk::Error for a type without kernels (e.g. i32), or when BRISK_ISA is invalid.
const QuantKernels& quant_kernels(DType t);
// The row of one specific variant, for tests and benchmarks; nullptr when the type has no kernels
// or the variant is not compiled in or not supported by this CPU (cpu_supports).
const QuantKernels* quant_kernels_for(DType t, Isa isa);
bool has_quant_kernels(DType t);

// from_float with a per-element importance (n floats, e.g. an imatrix row; larger = this element's
// error matters more). The k-quants, Q4_0 and Q5_0 weigh their scale search with it; other types
// (Q4_1, Q5_1, Q8_0, floats) ignore it.
// importance == nullptr is exactly quant_kernels(t).from_float.
void quantize_row_weighted(DType t, const float* src, void* dst, int64_t n,
                           const float* importance);

}  // namespace brisk::kernels
