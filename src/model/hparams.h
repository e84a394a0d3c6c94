// Hyperparameters of a decoder-only transformer, read from GGUF-keyed metadata
// ("<arch>.embedding_length", ...), validated once at load.
#pragma once
#include <cstdint>
#include <string>

#include "io/model_file.h"
#include "ops/rope.h"

namespace brisk::model {

enum class RopeScalingType { None, Linear, Yarn, Llama3 };
const char* rope_scaling_name(RopeScalingType t);

struct HParams {
  std::string arch;
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  int64_t sliding_window = 0;  // 0 = full attention
  // RoPE
  float rope_base = 10000.0f;
  int64_t rope_dims = 0;
  RopeScalingType rope_scaling = RopeScalingType::None;
  float rope_factor = 1.0f;
  int64_t rope_ctx_orig = 0;
  float rope_attn_factor = 1.0f;
  float yarn_beta_fast = 32.0f, yarn_beta_slow = 1.0f;
  float llama3_low_freq = 1.0f, llama3_high_freq = 4.0f;

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
};

// Reads the hyperparameters of architecture `arch` from the metadata; throws brisk::Error naming
// the file and the key for missing or impossible values.
HParams read_hparams(const io::ModelFile& f, const std::string& arch);

}  // namespace brisk::model
