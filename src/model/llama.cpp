// llama architecture (Llama 2/3, TinyLlama, SmolLM, Mistral with sliding-window attention):
// pre-norm decoder blocks of RMSNorm -> attention (RoPE on adjacent pairs, GQA) -> residual,
// RMSNorm -> SwiGLU MLP -> residual. Q/K/V biases are used when a file carries them.
#include "model/arch.h"
#include "model/model.h"

namespace brisk::model {

namespace {
void llama_block(BlockContext& c, int layer) {
  const LayerWeights& w = c.model.layer(layer);
  attention_block(c, w, layer);
  swiglu_ffn_block(c, w, layer);
}
}  // namespace

extern const ArchSpec kLlamaArch;
const ArchSpec kLlamaArch{"llama", ops::RopeLayout::Adjacent, /*qkv_bias=*/false,
                          standard_tensor_names(), llama_block};

}  // namespace brisk::model
