// qwen2 architecture (Qwen1.5 / Qwen2 / Qwen2.5): llama's block with required Q/K/V biases and
// RoPE on NeoX (half-split) pairs, which is how GGUF stores qwen2's Q/K rows.
#include "model/arch.h"
#include "model/model.h"

namespace brisk::model {

namespace {
void qwen2_block(BlockContext& c, int layer) {
  const LayerWeights& w = c.model.layer(layer);
  attention_block(c, w, layer);  // biases were checked present at load (qkv_bias = true)
  swiglu_ffn_block(c, w, layer);
}
}  // namespace

extern const ArchSpec kQwen2Arch;
const ArchSpec kQwen2Arch{"qwen2", ops::RopeLayout::NeoX, /*qkv_bias=*/true,
                          standard_tensor_names(), qwen2_block};

}  // namespace brisk::model
