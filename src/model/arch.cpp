#include "model/arch.h"

#include <array>
#include <cstdio>

#include "core/error.h"

namespace brisk::model {

extern const ArchSpec kLlamaArch;  // llama.cpp
extern const ArchSpec kQwen2Arch;  // qwen2.cpp

namespace {

constexpr std::array<TensorName, 16> kStandardNames{{
    {TensorRole::TokenEmbd, "token_embd.weight"},
    {TensorRole::OutputNorm, "output_norm.weight"},
    {TensorRole::Output, "output.weight"},
    {TensorRole::RopeFreqs, "rope_freqs.weight"},
    {TensorRole::AttnNorm, "blk.%d.attn_norm.weight"},
    {TensorRole::AttnQ, "blk.%d.attn_q.weight"},
    {TensorRole::AttnK, "blk.%d.attn_k.weight"},
    {TensorRole::AttnV, "blk.%d.attn_v.weight"},
    {TensorRole::AttnOut, "blk.%d.attn_output.weight"},
    {TensorRole::AttnQBias, "blk.%d.attn_q.bias"},
    {TensorRole::AttnKBias, "blk.%d.attn_k.bias"},
    {TensorRole::AttnVBias, "blk.%d.attn_v.bias"},
    {TensorRole::FfnNorm, "blk.%d.ffn_norm.weight"},
    {TensorRole::FfnGate, "blk.%d.ffn_gate.weight"},
    {TensorRole::FfnUp, "blk.%d.ffn_up.weight"},
    {TensorRole::FfnDown, "blk.%d.ffn_down.weight"},
}};

const ArchSpec* const kArchs[] = {&kLlamaArch, &kQwen2Arch};

}  // namespace

std::span<const TensorName> standard_tensor_names() {
  return kStandardNames;
}

const ArchSpec* find_arch(std::string_view name) {
  for (const ArchSpec* a : kArchs)
    if (name == a->name) return a;
  return nullptr;
}

std::string supported_arch_list() {
  std::string s;
  for (const ArchSpec* a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a->name);
  return s;
}

std::string tensor_name(const ArchSpec& a, TensorRole role, int layer) {
  for (const TensorName& t : a.tensor_names) {
    if (t.role != role) continue;
    char buf[128];
    std::snprintf(buf, sizeof(buf), t.pattern, layer);
    return buf;
  }
  fail("architecture ", a.name, " has no tensor for role ", static_cast<int>(role));
}

}  // namespace brisk::model
