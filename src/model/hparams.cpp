#include "model/hparams.h"

#include <cmath>

#include "core/error.h"

namespace brisk::model {

const char* rope_scaling_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::None:
      return "none";
    case RopeScalingType::Linear:
      return "linear";
    case RopeScalingType::Yarn:
      return "yarn";
    case RopeScalingType::Llama3:
      return "llama3";
  }
  return "?";
}

namespace {

struct Reader {
  const io::ModelFile& f;
  std::string prefix;
  const gguf::Value* find(const std::string& key) const { return f.find(prefix + key); }
  int64_t req_int(const std::string& key) const {
    const gguf::Value* v = find(key);
    if (!v) fail(f.path, ": missing metadata '", prefix + key, "'");
    return v->as_int(prefix + key);
  }
  int64_t opt_int(const std::string& key, int64_t def) const {
    const gguf::Value* v = find(key);
    return v ? v->as_int(prefix + key) : def;
  }
  float opt_float(const std::string& key, float def) const {
    const gguf::Value* v = find(key);
    return v ? static_cast<float>(v->as_float(prefix + key)) : def;
  }
};

void check_range(const io::ModelFile& f, const std::string& key, int64_t v, int64_t lo,
                 int64_t hi) {
  if (v < lo || v > hi)
    fail(f.path, ": metadata '", key, "' = ", v, " is out of range [", lo, ", ", hi, "]");
}

}  // namespace

HParams read_hparams(const io::ModelFile& f, const std::string& arch) {
  Reader r{f, arch + "."};
  HParams h;
  h.arch = arch;
  h.n_embd = r.req_int("embedding_length");
  h.n_layer = r.req_int("block_count");
  h.n_ff = r.req_int("feed_forward_length");
  h.n_head = r.req_int("attention.head_count");
  h.n_head_kv = r.opt_int("attention.head_count_kv", h.n_head);
  check_range(f, arch + ".embedding_length", h.n_embd, 1, 1 << 20);
  check_range(f, arch + ".block_count", h.n_layer, 1, 4096);
  check_range(f, arch + ".feed_forward_length", h.n_ff, 1, 1 << 22);
  check_range(f, arch + ".attention.head_count", h.n_head, 1, 4096);
  check_range(f, arch + ".attention.head_count_kv", h.n_head_kv, 1, h.n_head);
  if (h.n_head % h.n_head_kv != 0)
    fail(f.path, ": head_count ", h.n_head, " is not a multiple of head_count_kv ", h.n_head_kv);
  h.head_dim = r.opt_int("attention.key_length", h.n_embd / h.n_head);
  check_range(f, arch + ".attention.key_length", h.head_dim, 1, 1 << 16);
  if (r.opt_int("attention.value_length", h.head_dim) != h.head_dim)
    fail(f.path, ": attention.value_length different from key_length is not supported");
  h.n_ctx_train = r.opt_int("context_length", 2048);
  check_range(f, arch + ".context_length", h.n_ctx_train, 1, 1 << 24);
  h.rms_eps = r.opt_float("attention.layer_norm_rms_epsilon", 1e-5f);
  if (!(h.rms_eps > 0 && h.rms_eps < 1))
    fail(f.path, ": layer_norm_rms_epsilon ", h.rms_eps, " is out of range (0, 1)");
  h.sliding_window = r.opt_int("attention.sliding_window", 0);
  check_range(f, arch + ".attention.sliding_window", h.sliding_window, 0, 1 << 24);

  h.rope_base = r.opt_float("rope.freq_base", 10000.0f);
  if (!(h.rope_base > 1.0f) || !std::isfinite(h.rope_base))
    fail(f.path, ": rope.freq_base ", h.rope_base, " must be > 1");
  h.rope_dims = r.opt_int("rope.dimension_count", h.head_dim);
  if (h.rope_dims <= 0 || h.rope_dims > h.head_dim || h.rope_dims % 2 != 0)
    fail(f.path, ": rope.dimension_count ", h.rope_dims, " must be even and in (0, head_dim ",
         h.head_dim, "]");

  // Scaling: rope.scaling.type (GGUF) with rope.scaling.factor; older files carry only
  // rope.scale_linear.
  std::string type = "none";
  if (const gguf::Value* v = r.find("rope.scaling.type"))
    type = v->as_string(arch + ".rope.scaling.type");
  h.rope_factor = r.opt_float("rope.scaling.factor", 1.0f);
  if (const gguf::Value* v = r.find("rope.scale_linear")) {
    h.rope_factor = static_cast<float>(v->as_float(arch + ".rope.scale_linear"));
    if (type == "none" && h.rope_factor != 1.0f) type = "linear";
  }
  if (type == "none") {
    h.rope_scaling = RopeScalingType::None;
  } else if (type == "linear") {
    h.rope_scaling = RopeScalingType::Linear;
  } else if (type == "yarn") {
    h.rope_scaling = RopeScalingType::Yarn;
  } else if (type == "llama3") {
    h.rope_scaling = RopeScalingType::Llama3;
  } else {
    fail(f.path, ": unsupported rope.scaling.type '", type, "' (none, linear, yarn, llama3)");
  }
  if (h.rope_scaling != RopeScalingType::None && !(h.rope_factor > 0 && h.rope_factor <= 1024))
    fail(f.path, ": rope.scaling.factor ", h.rope_factor, " is out of range (0, 1024]");
  h.rope_ctx_orig = r.opt_int("rope.scaling.original_context_length", h.n_ctx_train);
  h.rope_attn_factor = r.opt_float("rope.scaling.attn_factor", 1.0f);
  h.yarn_beta_fast = r.opt_float("rope.scaling.yarn_beta_fast", 32.0f);
  h.yarn_beta_slow = r.opt_float("rope.scaling.yarn_beta_slow", 1.0f);
  h.llama3_low_freq = r.opt_float("rope.scaling.low_freq_factor", 1.0f);
  h.llama3_high_freq = r.opt_float("rope.scaling.high_freq_factor", 4.0f);
  if (h.rope_scaling == RopeScalingType::Llama3 && !(h.llama3_high_freq > h.llama3_low_freq))
    fail(f.path, ": rope.scaling.high_freq_factor must exceed low_freq_factor");

  if (const gguf::Value* v = r.find("vocab_size")) h.n_vocab = v->as_int(arch + ".vocab_size");
  return h;
}

}  // namespace brisk::model
