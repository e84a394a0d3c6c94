// Between the trainer's flat f32 parameters and model files.
//
// Export builds an in-memory io::ModelFile in brisk's GGUF llama layout (general.architecture =
// "llama", llama.* hyperparameters, the tokenizer's tokenizer.* metadata, norms in F32, matrices in
// the chosen storage type): io::write_gguf writes it as GGUF, io::write_hf_dir as a Hugging Face
// directory (model.safetensors + config.json + tokenizer.json, Q/K rows permuted to HF order).
// Import reads any model brisk loads (GGUF in any storage type, HF directories), dequantised to
// f32, for fine-tuning, distillation teachers and QLoRA bases.
#pragma once
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/model_file.h"
#include "train/params.h"

namespace brisk::train {

io::ModelFile export_model(const ModelShape& s, const ParamLayout& layout, const float* params,
                           const io::Metadata& tokenizer_metadata, DType matrix_type,
                           const std::string& name);

// The tokenizer.* entries of a model or vocab file's metadata.
io::Metadata tokenizer_metadata(const io::ModelFile& f);

struct ImportedModel {
  ModelShape shape;
  std::vector<float> params;  // layout ParamLayout::llama(shape)
  io::Metadata tokenizer;     // tokenizer.* metadata of the file
};
// Throws brisk::Error unless the file is a llama-architecture model without biases.
ImportedModel import_model(const std::string& path);

}  // namespace brisk::train
