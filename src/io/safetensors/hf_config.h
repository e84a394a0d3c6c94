// Hugging Face config.json <-> GGUF hyperparameter metadata (internal to io/safetensors).
//
// Supported: LlamaForCausalLM and MistralForCausalLM (GGUF arch "llama"), Qwen2ForCausalLM
// ("qwen2"). Keys produced, with <a> the GGUF arch:
//   general.architecture, general.name, <a>.vocab_size, <a>.context_length
//   (max_position_embeddings), <a>.embedding_length (hidden_size), <a>.block_count,
//   <a>.feed_forward_length, <a>.attention.head_count, <a>.attention.head_count_kv,
//   <a>.attention.layer_norm_rms_epsilon, <a>.attention.key_length / value_length (only when
//   head_dim != hidden_size / heads), <a>.rope.freq_base (rope_theta), <a>.rope.dimension_count
//   (head_dim), <a>.attention.sliding_window (Mistral's sliding_window; Qwen2's only when
//   use_sliding_window), rope_scaling {rope_type|type, factor, original_max_position_embeddings,
//   ...} ->
//     <a>.rope.scaling.type ("linear" | "yarn" | "llama3"), <a>.rope.scaling.factor,
//     <a>.rope.scaling.original_context_length,
//     llama3: <a>.rope.scaling.low_freq_factor, <a>.rope.scaling.high_freq_factor,
//     yarn:   <a>.rope.scaling.yarn_beta_fast, <a>.rope.scaling.yarn_beta_slow (beta_fast/slow),
//             <a>.rope.scaling.attn_factor (attention_factor).
// These are the names model/hparams.cpp reads. Integers are stored as u32, floats as f32 (what
// llama.cpp's converter writes), strings as strings.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "io/model_file.h"

namespace brisk::io::hf {

struct HfConfig {
  std::string arch;         // GGUF architecture: "llama" or "qwen2"
  bool permute_qk = false;  // true for llama: HF half-split rows -> GGUF adjacent-pair rows
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0;
  Metadata metadata;
};

// `ctx` (the config.json path) names the file in error messages; `default_name` is used for
// general.name when the config carries no _name_or_path.
HfConfig config_to_metadata(const nlohmann::json& cfg, const std::string& ctx,
                            const std::string& default_name);

// The inverse: a config.json for a ModelFile of arch llama or qwen2. `tied` says whether the
// output projection is shared with the embedding; `torch_dtype` is "float16", "bfloat16" or
// "float32".
nlohmann::json metadata_to_config(const ModelFile& m, bool tied, const std::string& torch_dtype);

// The HF Q/K row order <-> GGUF llama order, per head of `head_dim` rows of `row_bytes` each:
// GGUF row 2*i+j of a head is HF row j*(head_dim/2)+i (i < head_dim/2, j in {0, 1}).
// `to_gguf` picks the direction. `n_rows` must be a multiple of head_dim (checked by the caller).
std::vector<uint8_t> permute_qk_rows(const uint8_t* src, size_t n_rows, size_t row_bytes,
                                     int64_t head_dim, bool to_gguf);

}  // namespace brisk::io::hf
