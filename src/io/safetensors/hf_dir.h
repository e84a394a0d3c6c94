// Hugging Face model directories <-> ModelFile.
//
// A directory holds config.json, the weights (model.safetensors, or shards listed in
// model.safetensors.index.json), and optionally tokenizer.json and tokenizer_config.json.
// Loading maps tensor names to GGUF names, reverses shapes to ggml order ([out, in] -> {in, out},
// same bytes) and, for llama, reorders Q/K rows from HF's half-split RoPE order to GGUF's
// adjacent-pair order (those tensors are copied into ModelFile::owned; all others are views).
// Writing does the inverse, so GGUF -> HF directory -> load gives back identical tensors.
#pragma once
#include <string>

#include "io/model_file.h"

namespace brisk::io {

// Loads a Hugging Face directory; throws brisk::Error naming the file and the fault.
ModelFile load_hf_dir(const std::string& dir);
// Loads one .safetensors file. With a config.json beside it, it is read as a (single-file) Hugging
// Face model; without one, tensors keep their safetensors names (shapes in ggml order, no Q/K
// reordering) and the metadata holds only the __metadata__ entries (as "safetensors.<key>"
// strings, no general.architecture): enough for `brisk inspect`, not for running.
ModelFile load_safetensors_model(const std::string& path);
// Writes config.json, model.safetensors (f32/f16/bf16 tensors only), tokenizer.json and
// tokenizer_config.json (when the model has tokenizer metadata) into `dir` (created if needed).
void write_hf_dir(const ModelFile& m, const std::string& dir);

}  // namespace brisk::io
