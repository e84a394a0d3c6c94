#include "io/safetensors/hf_config.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace brisk::io::hf {
namespace {

using nlohmann::json;

struct ConfigReader {
  const json& cfg;
  const std::string& ctx;

  const json* get(const char* key) const {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return nullptr;
    return &*it;
  }
  int64_t int_in(const char* key, int64_t lo, int64_t hi,
                 std::optional<int64_t> def = std::nullopt) const {
    const json* v = get(key);
    if (!v) {
      if (!def) fail(ctx, ": missing '", key, "'");
      return *def;
    }
    if (!v->is_number_integer()) fail(ctx, ": '", key, "' must be an integer");
    int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) fail(ctx, ": '", key, "' = ", x, " is out of range [", lo, ", ", hi, "]");
    return x;
  }
  double num(const json& obj, const char* key, double def, const char* where) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return def;
    if (!it->is_number()) fail(ctx, ": '", where, key, "' must be a number");
    double x = it->get<double>();
    if (!std::isfinite(x)) fail(ctx, ": '", where, key, "' is not finite");
    return x;
  }
  bool flag(const char* key, bool def) const {
    const json* v = get(key);
    if (!v) return def;
    if (!v->is_boolean()) fail(ctx, ": '", key, "' must be true or false");
    return v->get<bool>();
  }
};

// The shortest decimal that reads back as the same float: JSON shows 1e-05, not 9.99999974e-06.
double float_for_json(double stored) {
  float f = static_cast<float>(stored);
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), f);
  *res.ptr = '\0';
  return std::strtod(buf, nullptr);
}

const gguf::Value* need(const ModelFile& m, const std::string& key) {
  const gguf::Value* v = m.find(key);
  if (!v) fail(m.path, ": missing metadata '", key, "' needed for config.json");
  return v;
}

}  // namespace

HfConfig config_to_metadata(const json& cfg, const std::string& ctx,
                            const std::string& default_name) {
  if (!cfg.is_object()) fail(ctx, ": config.json is not a JSON object");
  ConfigReader r{cfg, ctx};
  std::string hf_arch;
  if (const json* a = r.get("architectures")) {
    if (!a->is_array() || a->empty() || !(*a)[0].is_string())
      fail(ctx, ": 'architectures' must be a non-empty list of strings");
    hf_arch = (*a)[0].get<std::string>();
  } else if (const json* t = r.get("model_type"); t && t->is_string()) {
    const std::string mt = t->get<std::string>();
    hf_arch = mt == "llama"     ? "LlamaForCausalLM"
              : mt == "mistral" ? "MistralForCausalLM"
              : mt == "qwen2"   ? "Qwen2ForCausalLM"
                                : mt;
  } else {
    fail(ctx, ": missing 'architectures'");
  }
  HfConfig out;
  if (hf_arch == "LlamaForCausalLM" || hf_arch == "MistralForCausalLM") {
    out.arch = "llama";
    out.permute_qk = true;
  } else if (hf_arch == "Qwen2ForCausalLM") {
    out.arch = "qwen2";
  } else {
    fail(ctx, ": unsupported architecture '", hf_arch,
         "' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  }
  const std::string a = out.arch + ".";
  const int64_t n_embd = r.int_in("hidden_size", 1, 1 << 20);
  const int64_t n_ff = r.int_in("intermediate_size", 1, 1 << 22);
  const int64_t n_layer = r.int_in("num_hidden_layers", 1, 4096);
  out.n_head = r.int_in("num_attention_heads", 1, 4096);
  out.n_head_kv = r.int_in("num_key_value_heads", 1, out.n_head, out.n_head);
  if (out.n_head % out.n_head_kv != 0)
    fail(ctx, ": num_attention_heads ", out.n_head, " is not a multiple of num_key_value_heads ",
         out.n_head_kv);
  const int64_t default_hd = n_embd / out.n_head;
  out.head_dim = r.int_in("head_dim", 1, 1 << 16, default_hd);
  if (out.head_dim % 2 != 0) fail(ctx, ": head_dim ", out.head_dim, " is odd (RoPE needs pairs)");
  if (!r.get("head_dim") && n_embd % out.n_head != 0)
    fail(ctx, ": hidden_size ", n_embd, " is not a multiple of num_attention_heads ", out.n_head);
  const int64_t n_ctx =
      r.int_in("max_position_embeddings", 1, 1 << 24, out.arch == "qwen2" ? 32768 : 2048);
  const double eps = r.num(cfg, "rms_norm_eps", 1e-6, "");
  const double theta = r.num(cfg, "rope_theta", 10000.0, "");

  std::string name = default_name;
  if (const json* n = r.get("_name_or_path");
      n && n->is_string() && !n->get<std::string>().empty()) {
    name = n->get<std::string>();
    if (auto s = name.find_last_of('/'); s != std::string::npos && s + 1 < name.size())
      name = name.substr(s + 1);
  }

  Metadata& md = out.metadata;
  auto u32 = [](int64_t v) { return gguf::Value::u32(static_cast<uint32_t>(v)); };
  auto f32 = [](double v) { return gguf::Value::f32(static_cast<float>(v)); };
  md.emplace_back("general.architecture", gguf::Value::string(out.arch));
  md.emplace_back("general.name", gguf::Value::string(name));
  if (r.get("vocab_size"))
    md.emplace_back(a + "vocab_size", u32(r.int_in("vocab_size", 1, 1 << 24)));
  md.emplace_back(a + "context_length", u32(n_ctx));
  md.emplace_back(a + "embedding_length", u32(n_embd));
  md.emplace_back(a + "block_count", u32(n_layer));
  md.emplace_back(a + "feed_forward_length", u32(n_ff));
  md.emplace_back(a + "attention.head_count", u32(out.n_head));
  md.emplace_back(a + "attention.head_count_kv", u32(out.n_head_kv));
  md.emplace_back(a + "attention.layer_norm_rms_epsilon", f32(eps));
  if (out.head_dim != default_hd || n_embd % out.n_head != 0) {
    md.emplace_back(a + "attention.key_length", u32(out.head_dim));
    md.emplace_back(a + "attention.value_length", u32(out.head_dim));
  }
  md.emplace_back(a + "rope.freq_base", f32(theta));
  md.emplace_back(a + "rope.dimension_count", u32(out.head_dim));

  // Qwen2 configs carry a sliding_window that is off unless use_sliding_window is set.
  const bool sw_on = out.arch == "qwen2" ? r.flag("use_sliding_window", false) : true;
  if (sw_on && r.get("sliding_window"))
    md.emplace_back(a + "attention.sliding_window", u32(r.int_in("sliding_window", 1, 1 << 24)));

  if (const json* rs = r.get("rope_scaling")) {
    if (!rs->is_object()) fail(ctx, ": 'rope_scaling' must be an object or null");
    std::string type;
    for (const char* k : {"rope_type", "type"}) {
      auto it = rs->find(k);
      if (it != rs->end() && it->is_string()) {
        type = it->get<std::string>();
        break;
      }
    }
    if (type.empty()) fail(ctx, ": rope_scaling has no 'rope_type'");
    if (type != "default") {
      if (type != "linear" && type != "yarn" && type != "llama3")
        fail(ctx, ": unsupported rope_scaling type '", type, "' (linear, yarn, llama3)");
      const double factor = r.num(*rs, "factor", 0.0, "rope_scaling.");
      if (!(factor > 0 && factor <= 1024))
        fail(ctx, ": rope_scaling.factor ", factor, " is out of range (0, 1024]");
      md.emplace_back(a + "rope.scaling.type", gguf::Value::string(type));
      md.emplace_back(a + "rope.scaling.factor", f32(factor));
      auto orig = rs->find("original_max_position_embeddings");
      if (orig != rs->end() && !orig->is_null()) {
        if (!orig->is_number_integer() || orig->get<int64_t>() < 1 ||
            orig->get<int64_t>() > (1 << 24))
          fail(ctx, ": rope_scaling.original_max_position_embeddings is out of range");
        md.emplace_back(a + "rope.scaling.original_context_length", u32(orig->get<int64_t>()));
      }
      if (type == "llama3") {
        md.emplace_back(a + "rope.scaling.low_freq_factor",
                        f32(r.num(*rs, "low_freq_factor", 1.0, "rope_scaling.")));
        md.emplace_back(a + "rope.scaling.high_freq_factor",
                        f32(r.num(*rs, "high_freq_factor", 4.0, "rope_scaling.")));
      } else if (type == "yarn") {
        md.emplace_back(a + "rope.scaling.yarn_beta_fast",
                        f32(r.num(*rs, "beta_fast", 32.0, "rope_scaling.")));
        md.emplace_back(a + "rope.scaling.yarn_beta_slow",
                        f32(r.num(*rs, "beta_slow", 1.0, "rope_scaling.")));
        if (rs->contains("attention_factor") && !(*rs)["attention_factor"].is_null())
          md.emplace_back(a + "rope.scaling.attn_factor",
                          f32(r.num(*rs, "attention_factor", 1.0, "rope_scaling.")));
      }
    }
  }
  return out;
}

json metadata_to_config(const ModelFile& m, bool tied, const std::string& torch_dtype) {
  const std::string arch = need(m, "general.architecture")->as_string("general.architecture");
  if (arch != "llama" && arch != "qwen2")
    fail(m.path, ": cannot write architecture '", arch,
         "' as a Hugging Face directory (llama, qwen2)");
  const std::string a = arch + ".";
  auto get_int = [&](const std::string& k) { return need(m, a + k)->as_int(a + k); };
  auto opt_int = [&](const std::string& k, int64_t def) {
    const gguf::Value* v = m.find(a + k);
    return v ? v->as_int(a + k) : def;
  };
  auto opt_float = [&](const std::string& k, double def) {
    const gguf::Value* v = m.find(a + k);
    return v ? float_for_json(v->as_float(a + k)) : def;
  };
  json c;
  c["architectures"] = {arch == "llama" ? "LlamaForCausalLM" : "Qwen2ForCausalLM"};
  c["model_type"] = arch;
  const int64_t n_embd = get_int("embedding_length"), n_head = get_int("attention.head_count");
  c["hidden_size"] = n_embd;
  c["intermediate_size"] = get_int("feed_forward_length");
  c["num_hidden_layers"] = get_int("block_count");
  c["num_attention_heads"] = n_head;
  c["num_key_value_heads"] = opt_int("attention.head_count_kv", n_head);
  if (const gguf::Value* kl = m.find(a + "attention.key_length"))
    c["head_dim"] = kl->as_int(a + "attention.key_length");
  c["max_position_embeddings"] = opt_int("context_length", 2048);
  c["rms_norm_eps"] = opt_float("attention.layer_norm_rms_epsilon", 1e-5);
  c["rope_theta"] = opt_float("rope.freq_base", 10000.0);
  c["tie_word_embeddings"] = tied;
  c["torch_dtype"] = torch_dtype;
  c["hidden_act"] = "silu";
  c["attention_bias"] = arch == "qwen2";
  int64_t vocab = opt_int("vocab_size", 0);
  if (!vocab)
    if (const gguf::TensorInfo* t = m.find_tensor("token_embd.weight"); t && t->shape.size() == 2)
      vocab = t->shape[1];
  if (vocab) c["vocab_size"] = vocab;
  if (const gguf::Value* sw = m.find(a + "attention.sliding_window")) {
    c["sliding_window"] = sw->as_int(a + "attention.sliding_window");
    if (arch == "qwen2") c["use_sliding_window"] = true;
  } else {
    c["sliding_window"] = nullptr;
    if (arch == "qwen2") c["use_sliding_window"] = false;
  }
  if (const gguf::Value* t = m.find(a + "rope.scaling.type");
      t && t->as_string(a + "rope.scaling.type") != "none") {
    const std::string type = t->str;
    json rs;
    rs["rope_type"] = type;
    rs["factor"] = opt_float("rope.scaling.factor", 1.0);
    if (const gguf::Value* o = m.find(a + "rope.scaling.original_context_length"))
      rs["original_max_position_embeddings"] =
          o->as_int(a + "rope.scaling.original_context_length");
    if (type == "llama3") {
      rs["low_freq_factor"] = opt_float("rope.scaling.low_freq_factor", 1.0);
      rs["high_freq_factor"] = opt_float("rope.scaling.high_freq_factor", 4.0);
    } else if (type == "yarn") {
      rs["beta_fast"] = opt_float("rope.scaling.yarn_beta_fast", 32.0);
      rs["beta_slow"] = opt_float("rope.scaling.yarn_beta_slow", 1.0);
      if (m.find(a + "rope.scaling.attn_factor"))
        rs["attention_factor"] = opt_float("rope.scaling.attn_factor", 1.0);
    }
    c["rope_scaling"] = rs;
  } else {
    c["rope_scaling"] = nullptr;
  }
  for (const char* k : {"bos", "eos", "padding"}) {
    if (const gguf::Value* v = m.find(std::string("tokenizer.ggml.") + k + "_token_id"))
      c[std::string(k == std::string("padding") ? "pad" : k) + "_token_id"] = v->as_int(k);
  }
  if (const gguf::Value* n = m.find("general.name"))
    c["_name_or_path"] = n->as_string("general.name");
  return c;
}

std::vector<uint8_t> permute_qk_rows(const uint8_t* src, size_t n_rows, size_t row_bytes,
                                     int64_t head_dim, bool to_gguf) {
  const size_t hd = static_cast<size_t>(head_dim), half = hd / 2;
  std::vector<uint8_t> out(n_rows * row_bytes);
  for (size_t h = 0; h < n_rows / hd; ++h)
    for (size_t i = 0; i < half; ++i)
      for (size_t j = 0; j < 2; ++j) {
        const size_t g = h * hd + 2 * i + j, f = h * hd + j * half + i;  // GGUF row, HF row
        const size_t from = to_gguf ? f : g, to = to_gguf ? g : f;
        std::memcpy(out.data() + to * row_bytes, src + from * row_bytes, row_bytes);
      }
  return out;
}

}  // namespace brisk::io::hf
