// brisk quantize's model-level pass: every weight matrix of a ModelFile re-stored in the type a
// recipe gives it, from f32 (dequantised input, or weights rewritten by a calibration method),
// optionally with an importance matrix weighting the scale search.
//
// Type rules: 1-D tensors (norms, biases) are left as they are; a matrix takes
// Recipe::type_for(name) (with the closest fitting type when its row length is not a multiple of
// the block, see requantize.h); in a model with tied embeddings (no output.weight) token_embd is
// also the output projection and follows the output rule, as other GGUF quantisers do;
// keep_output_f16 stores that output matrix in F16.
#pragma once
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/model_file.h"
#include "quant/imatrix.h"
#include "quant/recipe.h"
#include "quant/requantize.h"
#include "train/params.h"

namespace brisk::quant {

struct QuantizeOptions {
  Recipe recipe;
  const Imatrix* imatrix = nullptr;
  bool keep_output_f16 = false;
};

int64_t count_layers(const io::ModelFile& m);
// The type tensor t gets (t.type itself for tensors that are not re-stored).
DType target_type(const io::ModelFile& m, const gguf::TensorInfo& t, const QuantizeOptions& o);

// f32 rows -> blocks of `type`, rows in parallel; importance (cols) may be null.
std::vector<uint8_t> quantize_matrix(const float* W, int64_t rows, int64_t cols, DType type,
                                     const float* importance, ThreadPool& pool);

// Replaces tensor `name`'s data (same shape) with owned bytes of type t.
void replace_tensor(io::ModelFile& m, const std::string& name, DType t, std::vector<uint8_t> bytes);

// Writes the trainer-layout parameters back into m as F32 tensors, for the quantisation pass to
// read: all of them (norms and matrices), or only the tensors named in `only`.
void store_params(io::ModelFile& m, const train::ParamLayout& lay, const std::vector<float>& params,
                  const std::set<std::string>* only = nullptr);

// Quantises every matrix not named in `done` (tensors already in their final form, e.g. GPTQ's;
// their block-size fallbacks are still reported).
QuantizeReport quantize_model(
    io::ModelFile& m, const QuantizeOptions& o, ThreadPool& pool,
    const std::set<std::string>& done = {},
    const std::function<void(size_t, size_t, const std::string&)>& progress = {});

}  // namespace brisk::quant
