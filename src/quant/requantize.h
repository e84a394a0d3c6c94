// Re-storing a model's weight matrices in another storage type (round-to-nearest through f32):
// `brisk convert --type T`. Norms and biases (1-D) stay f32. A matrix whose row length is not a
// multiple of T's block size falls back to the closest type that fits (as other GGUF tools do),
// and the fallback is reported. Matrices already in their target type are left byte for byte.
// This is quantize_model (quant/quantize_model.h) with a plain one-type recipe.
#pragma once
#include <functional>
#include <string>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "io/model_file.h"

namespace brisk::quant {

struct QuantizeReport {
  int n_quantized = 0, n_imatrix = 0, n_fallback = 0;
  std::string fallbacks;  // "blk.0.ffn_down.weight: q4_K -> q5_0; ..."
};

// The type used for a row length n when `want` does not divide it.
DType fallback_type(DType want, int64_t n);

// progress(i, n, tensor name) is called before each tensor.
QuantizeReport requantize(
    io::ModelFile& m, DType type, ThreadPool& pool,
    const std::function<void(size_t, size_t, const std::string&)>& progress = {});

}  // namespace brisk::quant

namespace brisk::quant {
// The general.file_type value other GGUF tools use for a model "mostly" in type t.
uint32_t gguf_file_type(DType t);
}  // namespace brisk::quant
