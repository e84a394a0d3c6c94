// The trainable parameters of a llama-architecture model: one flat array, with a layout that names
// every tensor as GGUF does (token_embd.weight, blk.N.attn_q.weight, ...).
//
// Layout order: token_embd (V, D), output_norm (D), output (V, D) unless tied, then per layer
// attn_norm (D), attn_q (H*hd, D), attn_k (G*hd, D), attn_v (G*hd, D), attn_output (D, H*hd),
// ffn_norm (D), ffn_gate (F, D), ffn_up (F, D), ffn_down (D, F). Matrices are row-major
// (out, in), which is ggml's [in, out].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace brisk::train {

struct ModelShape {
  int64_t dim = 256, layers = 4, heads = 8, kv_heads = 4, ffn = 768, vocab = 0, context = 512;
  double rope_base = 10000.0, norm_eps = 1e-5;
  bool tied = true;
  int64_t head_dim() const { return dim / heads; }
  // Throws brisk::Error naming the field when the shape is impossible.
  void validate() const;
};

struct ParamInfo {
  std::string name;
  int64_t rows = 1, cols = 0;  // (out, in); norms are (1, D)
  size_t offset = 0;
  bool decay = false;  // weight decay applies (matrices; not norms or embeddings)
  size_t size() const { return static_cast<size_t>(rows * cols); }
};

class ParamLayout {
 public:
  static ParamLayout llama(const ModelShape& s);
  const std::vector<ParamInfo>& params() const { return params_; }
  size_t total() const { return total_; }
  const ParamInfo& at(const std::string& name) const;  // throws when absent
  const ParamInfo* find(const std::string& name) const;
  // Offsets of layer l's tensors (indices into params()).
  struct Layer {
    size_t attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down;
  };
  const Layer& layer(int64_t l) const { return layers_[static_cast<size_t>(l)]; }
  size_t tok_embd() const { return tok_embd_; }
  size_t output_norm() const { return output_norm_; }
  size_t output() const { return output_; }  // == tok_embd() when tied

 private:
  void add(const std::string& name, int64_t rows, int64_t cols, bool decay);
  std::vector<ParamInfo> params_;
  std::vector<Layer> layers_;
  size_t total_ = 0, tok_embd_ = 0, output_norm_ = 0, output_ = 0;
};

// Named shapes: "gpt2-124m" (the GPT-2 small shape as a llama: D 768, 12 layers, 12 heads, FFN
// 2048, vocab 50257, tied: 123.6M parameters), "default" (brisk's embedded model: D 256, 6
// layers, 4 heads / 2 KV heads, FFN 768, vocab 8192, tied: 7.2M), "tiny" (tests). False if unknown.
bool train_preset(const std::string& name, ModelShape& s);

// Standard initialisation, a pure function of the seed: matrices and embeddings ~ N(0, 0.02),
// the residual projections (attn_output, ffn_down) scaled by 1/sqrt(2 * layers), norms 1.
std::vector<float> init_params(const ParamLayout& layout, const ModelShape& s, uint64_t seed);

}  // namespace brisk::train
