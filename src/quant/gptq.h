// GPTQ (Frantar et al. 2022): quantises one weight matrix column by column, and after each column
// spreads its rounding error over the columns not yet quantised, weighted by the inverse Hessian
// of the layer's reconstruction loss ||X W^T - X Wq^T||^2, so that later columns compensate for
// earlier ones. The output is exactly the GGUF blocks of the chosen type (block_grid.h types).
//
// Scales: at the start of each quantisation block (32 or 256 columns) its scales are fixed by the
// type's own from_float applied to the weights as they are then (already error-corrected); the
// columns of the block are then rounded to that block's grid. With act_order the columns are
// visited in order of decreasing H_ii, so blocks are no longer visited contiguously: all scales
// are then fixed up front from the original weights ("static groups").
//
// Costs: one (cols, cols) Cholesky factorisation of H^-1 in double (O(cols^3 / 3) x 3, LAPACK),
// 8 cols^2 bytes for it plus 4 cols^2 for its f32 copy; then O(rows cols^2) multiply-adds, most
// of them in f32 GEMMs, spread over fixed chunks of rows (so results do not depend on threads).
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace brisk::quant {

struct GptqOptions {
  double damp = 0.01;  // fraction of mean(diag H) added to the diagonal
  int64_t block =
      128;  // lazy-batch width in columns (rounded up to a multiple of the type's block)
  bool act_order = false;  // visit columns by decreasing H_ii (with static scale groups)
};

// W: (rows, cols) f32 row-major, GGUF layout (rows = output features, cols = input features; the
// quantisation blocks run along cols). H: (cols, cols), symmetric positive semi-definite,
// = (2/N) X^T X of the layer's N input rows X (N, cols).
// Returns rows * row_bytes(type, cols) bytes of `type` blocks (exactly what GGUF stores); W is
// overwritten with their dequantised values. Rows are processed in parallel on `pool` (nullptr =
// serially); the result does not depend on the thread count. With a pool of more than one thread
// OpenBLAS is set to one thread of its own (openblas_set_num_threads(1)), as training does.
// Throws brisk::Error for a type without a block grid, cols not a multiple of its block, bad
// options, or an H that stays indefinite after damping.
std::vector<uint8_t> gptq_quantize(float* W, int64_t rows, int64_t cols, const float* H, DType type,
                                   const GptqOptions& o, ThreadPool* pool);

}  // namespace brisk::quant
