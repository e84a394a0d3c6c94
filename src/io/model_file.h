// ModelFile: a model as GGUF sees it, whatever format it came from.
//
// Every loader (GGUF, safetensors / Hugging Face directory, llama2.c checkpoint) produces the same
// thing: metadata under GGUF keys ("general.architecture", "llama.embedding_length",
// "tokenizer.ggml.tokens", ...) and tensors under GGUF names ("token_embd.weight",
// "blk.0.attn_q.weight", ...) in GGUF layout (for llama: Q/K rows in the adjacent-pair RoPE order).
// The model layer and `brisk convert` only ever see this struct.
//
// Tensor data points either into a memory map (no copy) or into a buffer owned here (tensors that
// had to be converted, e.g. permuted Q/K from a Hugging Face checkpoint).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/mapped_file.h"
#include "io/gguf/gguf.h"

namespace brisk::io {

using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

struct ModelFile {
  std::string path;    // what the user passed
  std::string format;  // "gguf", "safetensors", "llama2c"
  Metadata metadata;
  std::vector<gguf::TensorInfo> tensors;
  std::vector<std::shared_ptr<MappedFile>> mappings;         // keep views alive
  std::vector<std::shared_ptr<std::vector<uint8_t>>> owned;  // converted tensor buffers

  const gguf::Value* find(std::string_view key) const;
  const gguf::TensorInfo* find_tensor(std::string_view name) const;
  void set(const std::string& key, gguf::Value v);  // replace or append
  // Adds a tensor whose bytes are moved into an owned buffer.
  void add_owned_tensor(std::string name, DType type, std::vector<int64_t> shape,
                        std::vector<uint8_t> bytes);
};

struct LoadOptions {
  // For formats without a tokenizer (llama2.c): a GGUF whose tokenizer.* metadata is attached.
  std::string vocab_from;
};

// Detects the format (directory -> Hugging Face layout; "GGUF" magic -> GGUF; *.safetensors ->
// safetensors (with config.json/tokenizer.json beside it if present); otherwise llama2.c) and
// loads it. Throws brisk::Error naming the file and the fault.
ModelFile load_model_file(const std::string& path, const LoadOptions& opts = {});

// GGUF -> ModelFile without copying tensor data.
ModelFile model_file_from_gguf(const gguf::GgufFile& f);
// Writes any ModelFile as GGUF v3 (metadata and tensors unchanged).
void write_gguf(const ModelFile& m, const std::string& path);

}  // namespace brisk::io
