// The architecture table: architecture name -> tensor names, RoPE layout, required biases, and the
// function that runs one transformer block. One file per architecture (llama.cpp, qwen2.cpp)
// defines its ArchSpec from the shared layers in src/ops.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ops/rope.h"

namespace brisk::model {

enum class TensorRole {
  TokenEmbd,
  OutputNorm,
  Output,
  RopeFreqs,
  AttnNorm,
  AttnQ,
  AttnK,
  AttnV,
  AttnOut,
  AttnQBias,
  AttnKBias,
  AttnVBias,
  FfnNorm,
  FfnGate,
  FfnUp,
  FfnDown,
};

struct TensorName {
  TensorRole role;
  const char* pattern;  // "%d" is the layer index for per-layer tensors
};

struct BlockContext;  // defined in model/model.h
using BlockFn = void (*)(BlockContext& ctx, int layer);

struct ArchSpec {
  const char* name;
  ops::RopeLayout rope_layout;
  bool qkv_bias;  // q/k/v biases are required (qwen2) rather than absent
  std::span<const TensorName> tensor_names;
  BlockFn block;
};

const ArchSpec* find_arch(std::string_view name);
std::string supported_arch_list();  // "llama, qwen2"
// The GGUF name of a tensor role for this architecture ("blk.3.attn_q.weight").
std::string tensor_name(const ArchSpec& a, TensorRole role, int layer = -1);

// The standard GGUF decoder tensor names, shared by llama-family architectures.
std::span<const TensorName> standard_tensor_names();

}  // namespace brisk::model
