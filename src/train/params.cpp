#include "train/params.h"

#include <cmath>

#include "core/error.h"
#include "train/rng.h"

namespace brisk::train {
void ModelShape::validate() const {
  check(dim > 0 && layers > 0 && heads > 0 && kv_heads > 0 && ffn > 0 && vocab > 0 && context > 0,
        "model shape: dim, layers, heads, kv_heads, ffn, vocab and context must be positive");
  check(dim % heads == 0, "model shape: dim ", dim, " is not a multiple of heads ", heads);
  check(heads % kv_heads == 0, "model shape: heads ", heads, " is not a multiple of kv_heads ",
        kv_heads);
  check(head_dim() % 2 == 0, "model shape: head dim ", head_dim(), " must be even (RoPE pairs)");
  check(rope_base > 1 && norm_eps > 0, "model shape: rope_base must be > 1 and norm_eps > 0");
}

bool train_preset(const std::string& name, ModelShape& s) {
  if (name == "gpt2-124m") {
    s = ModelShape{.dim = 768,
                   .layers = 12,
                   .heads = 12,
                   .kv_heads = 12,
                   .ffn = 2048,
                   .vocab = 50257,
                   .context = 1024};
  } else if (name == "default") {
    s = ModelShape{.dim = 256,
                   .layers = 6,
                   .heads = 4,
                   .kv_heads = 2,
                   .ffn = 768,
                   .vocab = 8192,
                   .context = 256};
  } else if (name == "tiny") {
    s = ModelShape{.dim = 64,
                   .layers = 2,
                   .heads = 4,
                   .kv_heads = 2,
                   .ffn = 128,
                   .vocab = 256,
                   .context = 128};
  } else {
    return false;
  }
  return true;
}

void ParamLayout::add(const std::string& name, int64_t rows, int64_t cols, bool decay) {
  params_.push_back({name, rows, cols, total_, decay});
  total_ += static_cast<size_t>(rows * cols);
}

ParamLayout ParamLayout::llama(const ModelShape& s) {
  s.validate();
  ParamLayout p;
  const int64_t D = s.dim, hd = s.head_dim(), q = s.heads * hd, kv = s.kv_heads * hd;
  p.tok_embd_ = p.params_.size();
  p.add("token_embd.weight", s.vocab, D, false);
  p.output_norm_ = p.params_.size();
  p.add("output_norm.weight", 1, D, false);
  p.output_ = p.tok_embd_;
  if (!s.tied) {
    p.output_ = p.params_.size();
    p.add("output.weight", s.vocab, D, true);
  }
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    Layer L{};
    L.attn_norm = p.params_.size();
    p.add(b + "attn_norm.weight", 1, D, false);
    L.wq = p.params_.size();
    p.add(b + "attn_q.weight", q, D, true);
    L.wk = p.params_.size();
    p.add(b + "attn_k.weight", kv, D, true);
    L.wv = p.params_.size();
    p.add(b + "attn_v.weight", kv, D, true);
    L.wo = p.params_.size();
    p.add(b + "attn_output.weight", D, q, true);
    L.ffn_norm = p.params_.size();
    p.add(b + "ffn_norm.weight", 1, D, false);
    L.gate = p.params_.size();
    p.add(b + "ffn_gate.weight", s.ffn, D, true);
    L.up = p.params_.size();
    p.add(b + "ffn_up.weight", s.ffn, D, true);
    L.down = p.params_.size();
    p.add(b + "ffn_down.weight", D, s.ffn, true);
    p.layers_.push_back(L);
  }
  return p;
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  for (const ParamInfo& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

const ParamInfo& ParamLayout::at(const std::string& name) const {
  const ParamInfo* p = find(name);
  check(p != nullptr, "no parameter named '", name, "'");
  return *p;
}

std::vector<float> init_params(const ParamLayout& layout, const ModelShape& s, uint64_t seed) {
  std::vector<float> w(layout.total());
  const float sd = 0.02f, sd_res = sd / std::sqrt(2.0f * static_cast<float>(s.layers));
  uint64_t stream = 0;
  for (const ParamInfo& p : layout.params()) {
    ++stream;
    float* dst = w.data() + p.offset;
    if (p.rows == 1) {  // norm
      for (size_t i = 0; i < p.size(); ++i) dst[i] = 1.0f;
      continue;
    }
    const bool residual = p.name.find("attn_output") != std::string::npos ||
                          p.name.find("ffn_down") != std::string::npos;
    const float sdev = residual ? sd_res : sd;
    // Box-Muller over a counter-based stream: a pure function of (seed, tensor, index).
    for (size_t i = 0; i < p.size(); i += 2) {
      const uint64_t a = splitmix64(seed ^ splitmix64(stream * 0x100000001b3ull + i));
      const uint64_t b = splitmix64(a);
      const double u1 = (static_cast<double>(a >> 11) + 1.0) / 9007199254740993.0;
      const double u2 = static_cast<double>(b >> 11) / 9007199254740992.0;
      const double r = std::sqrt(-2.0 * std::log(u1));
      dst[i] = static_cast<float>(r * std::cos(2.0 * M_PI * u2)) * sdev;
      if (i + 1 < p.size()) dst[i + 1] = static_cast<float>(r * std::sin(2.0 * M_PI * u2)) * sdev;
    }
  }
  return w;
}

}  // namespace brisk::train
