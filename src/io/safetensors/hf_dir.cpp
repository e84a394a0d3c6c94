#include "io/safetensors/hf_dir.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "io/safetensors/hf_config.h"
#include "io/safetensors/safetensors.h"

#include "io/tokenizer/tokenizer.h"

namespace brisk::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using safetensors::SafetensorsFile;
using safetensors::StTensor;

// Per-layer tensor names, HF suffix after "model.layers.N." -> GGUF suffix after "blk.N.".
struct LayerName {
  const char* hf;
  const char* gguf;
};
constexpr LayerName kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
constexpr LayerName kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// "<prefix><N>.<rest>" -> (N, rest); nullopt when the name does not have that form.
std::optional<std::pair<int64_t, std::string>> split_layer(const std::string& name,
                                                           std::string_view prefix) {
  if (name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  size_t p = prefix.size(), q = p;
  while (q < name.size() && q - p < 6 && name[q] >= '0' && name[q] <= '9') ++q;
  if (q == p || q >= name.size() || name[q] != '.') return std::nullopt;
  if (q - p > 1 && name[p] == '0') return std::nullopt;
  return std::make_pair(std::stoll(name.substr(p, q - p)), name.substr(q + 1));
}

// HF name -> GGUF name; "" for tensors that are dropped on purpose; Error for unknown ones.
std::string gguf_name(const std::string& hf, const std::string& ctx, int64_t n_layer) {
  for (const auto& g : kGlobalNames)
    if (hf == g.hf) return g.gguf;
  if (auto l = split_layer(hf, "model.layers.")) {
    if (l->first >= n_layer)
      fail(ctx, ": tensor '", hf, "': layer ", l->first, " >= num_hidden_layers ", n_layer);
    if (l->second == "self_attn.rotary_emb.inv_freq") return "";  // recomputed from rope_theta
    for (const auto& e : kLayerNames)
      if (l->second == e.hf) return "blk." + std::to_string(l->first) + "." + e.gguf;
  }
  fail(ctx, ": unsupported tensor '", hf, "'");
}

// GGUF name -> HF name; "" for tensors HF does not store (derived from config.json).
std::string hf_name(const std::string& g, const std::string& ctx) {
  for (const auto& e : kGlobalNames)
    if (g == e.gguf) return e.hf;
  if (g == "rope_freqs.weight") return "";
  if (auto l = split_layer(g, "blk.")) {
    for (const auto& e : kLayerNames)
      if (l->second == e.gguf) return "model.layers." + std::to_string(l->first) + "." + e.hf;
  }
  fail(ctx, ": tensor '", g, "' has no Hugging Face name");
}

std::string read_text(const std::string& path) {
  auto f = MappedFile::open(path);
  if (f->size() == 0) return {};
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

json read_json(const std::string& path) {
  std::string text = read_text(path);
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(path, ": not valid JSON");
  return j;
}

void write_text(const std::string& path, const std::string& text) {
  AtomicFileWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

// Is `t` (a weight from `ctx`) the Q or K projection that must be reordered, and with how many
// heads? Returns 0 when it is neither.
int64_t qk_heads(const std::string& gname, const hf::HfConfig& c) {
  if (!c.permute_qk) return 0;
  auto l = split_layer(gname, "blk.");
  if (!l) return 0;
  if (l->second == "attn_q.weight" || l->second == "attn_q.bias") return c.n_head;
  if (l->second == "attn_k.weight" || l->second == "attn_k.bias") return c.n_head_kv;
  return 0;
}

void add_hf_tensor(ModelFile& m, const StTensor& st, const std::string& gname,
                   const hf::HfConfig& c, const std::string& ctx) {
  auto dt = safetensors::st_type_to_dtype(st.type);
  if (!dt || (*dt != DType::F32 && *dt != DType::F16 && *dt != DType::BF16))
    fail(ctx, ": tensor '", st.name, "': dtype ", safetensors::st_type_name(st.type),
         " is not a weight type (F32, F16, BF16)");
  if (st.shape.empty() || st.shape.size() > 2)
    fail(ctx, ": tensor '", st.name, "': ", st.shape.size(), " dimensions (expected 1 or 2)");
  for (int64_t d : st.shape)
    if (d == 0) fail(ctx, ": tensor '", st.name, "': has a zero dimension");
  gguf::TensorInfo t;
  t.name = gname;
  t.type = *dt;
  t.shape.assign(st.shape.rbegin(), st.shape.rend());
  t.nbytes = st.nbytes;
  t.offset = st.begin;
  t.data = st.data;
  const size_t el = safetensors::st_type_size(st.type);
  const size_t n_rows = static_cast<size_t>(st.shape[0]);  // out features (or the bias length)
  const size_t row_bytes = st.nbytes / n_rows;
  if (int64_t heads = qk_heads(gname, c)) {
    if (static_cast<int64_t>(n_rows) != heads * c.head_dim)
      fail(ctx, ": tensor '", st.name, "': ", n_rows, " rows, expected ", heads, " heads x ",
           c.head_dim);
    auto buf = std::make_shared<std::vector<uint8_t>>(
        hf::permute_qk_rows(st.data, n_rows, row_bytes, c.head_dim, /*to_gguf=*/true));
    t.data = buf->data();
    m.owned.push_back(std::move(buf));
  } else if (reinterpret_cast<uintptr_t>(st.data) % el != 0) {
    // Third-party writers need not align tensors; kernels read whole elements, so copy.
    auto buf = std::make_shared<std::vector<uint8_t>>(st.data, st.data + st.nbytes);
    t.data = buf->data();
    m.owned.push_back(std::move(buf));
  }
  m.tensors.push_back(std::move(t));
}

// Tokenizer metadata from tokenizer.json / tokenizer_config.json in `dir`, when present.
void add_tokenizer(ModelFile& m, const fs::path& dir) {
  const fs::path tj = dir / "tokenizer.json", tc = dir / "tokenizer_config.json";
  std::string config_text;
  if (fs::is_regular_file(tc)) config_text = read_text(tc.string());
  if (fs::is_regular_file(tj)) {
    Metadata md = tok::tokenizer_metadata_from_hf(read_text(tj.string()), config_text, tj.string());
    for (auto& [k, v] : md) m.set(k, std::move(v));
  }
  if (config_text.empty() || m.find("tokenizer.chat_template")) return;
  json cfg = json::parse(config_text, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) fail(tc.string(), ": not a valid JSON object");
  auto it = cfg.find("chat_template");
  if (it == cfg.end()) return;
  if (it->is_string()) {
    m.set("tokenizer.chat_template", gguf::Value::string(it->get<std::string>()));
  } else if (it->is_array()) {
    // A list of {"name", "template"}: the "default" one, else the first.
    auto tmpl = [](const json& e) -> const json* {
      if (!e.is_object()) return nullptr;
      auto t = e.find("template");
      return t != e.end() && t->is_string() ? &*t : nullptr;
    };
    const json* pick = nullptr;
    for (const auto& e : *it) {
      auto n = e.is_object() ? e.find("name") : e.end();
      if (e.is_object() && n != e.end() && n->is_string() && *n == "default" && tmpl(e))
        pick = tmpl(e);
    }
    if (!pick && !it->empty()) pick = tmpl((*it)[0]);
    if (pick) m.set("tokenizer.chat_template", gguf::Value::string(pick->get<std::string>()));
  }
}

// The shared loader: config.json in `dir`, weights from `shards`; `index` (tensor -> shard file
// name) is checked when given.
ModelFile load_hf(const fs::path& dir, const std::string& user_path,
                  const std::vector<fs::path>& shards,
                  const std::map<std::string, std::string>* index) {
  const std::string cfg_path = (dir / "config.json").string();
  json cfg = read_json(cfg_path);
  hf::HfConfig c = hf::config_to_metadata(cfg, cfg_path, fs::path(user_path).filename().string());
  const int64_t n_layer = [&] {
    for (const auto& [k, v] : c.metadata)
      if (k == c.arch + ".block_count") return v.as_int(k);
    return int64_t{0};
  }();
  bool tied = false;
  if (auto it = cfg.find("tie_word_embeddings"); it != cfg.end() && it->is_boolean())
    tied = it->get<bool>();

  ModelFile m;
  m.path = user_path;
  m.format = "safetensors";
  m.metadata = std::move(c.metadata);
  std::set<std::string> seen;
  for (const auto& shard : shards) {
    auto f = std::make_shared<SafetensorsFile>(SafetensorsFile::open(shard.string()));
    const std::string ctx = shard.string();
    for (const auto& st : f->tensors()) {
      if (index) {
        auto it = index->find(st.name);
        if (it == index->end() || it->second != shard.filename().string())
          fail(ctx, ": tensor '", st.name,
               "' is not listed for this file in model.safetensors.index.json");
      }
      if (!seen.insert(st.name).second)
        fail(ctx, ": tensor '", st.name, "' appears in more than one shard");
      std::string g = gguf_name(st.name, ctx, n_layer);
      if (g.empty() || (tied && g == "output.weight")) continue;
      add_hf_tensor(m, st, g, c, ctx);
    }
    m.mappings.push_back(f->mapping());
  }
  if (index)
    for (const auto& [name, file] : *index)
      if (!seen.count(name))
        fail((dir / "model.safetensors.index.json").string(), ": tensor '", name, "' listed in '",
             file, "' was not found there");
  if (!m.find_tensor("token_embd.weight"))
    fail(user_path, ": no model.embed_tokens.weight among the tensors");
  add_tokenizer(m, dir);
  return m;
}

}  // namespace

ModelFile load_hf_dir(const std::string& path) {
  const fs::path dir(path);
  if (!fs::is_regular_file(dir / "config.json")) fail(path, ": no config.json in this directory");
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::is_regular_file(index_path)) {
    json idx = read_json(index_path.string());
    auto wm = idx.is_object() ? idx.find("weight_map") : idx.end();
    if (!idx.is_object() || wm == idx.end() || !wm->is_object())
      fail(index_path.string(), ": missing 'weight_map' object");
    std::map<std::string, std::string> index;
    std::set<std::string> files;
    for (const auto& [name, file] : wm->items()) {
      if (!file.is_string())
        fail(index_path.string(), ": weight_map['", name, "'] is not a string");
      const std::string fn = file.get<std::string>();
      // Shards are plain file names beside the index: no path may escape the directory.
      if (fn.empty() || fn.find('/') != std::string::npos || fn == "." || fn == "..")
        fail(index_path.string(), ": weight_map['", name, "'] = '", fn, "' is not a file name");
      index[name] = fn;
      files.insert(fn);
    }
    std::vector<fs::path> shards;
    for (const auto& fn : files) shards.push_back(dir / fn);
    return load_hf(dir, path, shards, &index);
  }
  if (fs::is_regular_file(dir / "model.safetensors"))
    return load_hf(dir, path, {dir / "model.safetensors"}, nullptr);
  fail(path, ": no model.safetensors or model.safetensors.index.json in this directory");
}

ModelFile load_safetensors_model(const std::string& path) {
  fs::path p(path);
  fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (fs::is_regular_file(dir / "config.json")) {
    ModelFile m = load_hf(dir, path, {p}, nullptr);
    return m;
  }
  auto f = std::make_shared<SafetensorsFile>(SafetensorsFile::open(path));
  ModelFile m;
  m.path = path;
  m.format = "safetensors";
  for (const auto& [k, v] : f->metadata()) m.set("safetensors." + k, gguf::Value::string(v));
  for (const auto& st : f->tensors()) {
    auto dt = safetensors::st_type_to_dtype(st.type);
    if (!dt)
      fail(path, ": tensor '", st.name, "': dtype ", safetensors::st_type_name(st.type),
           " has no brisk type");
    gguf::TensorInfo t;
    t.name = st.name;
    t.type = *dt;
    t.shape.assign(st.shape.rbegin(), st.shape.rend());
    if (t.shape.empty()) t.shape.push_back(1);  // a scalar
    t.nbytes = st.nbytes;
    t.offset = st.begin;
    t.data = st.data;
    m.tensors.push_back(std::move(t));
  }
  m.mappings.push_back(f->mapping());
  return m;
}

void write_hf_dir(const ModelFile& m, const std::string& out_dir) {
  const gguf::Value* archv = m.find("general.architecture");
  if (!archv) fail(m.path, ": missing general.architecture");
  const std::string arch = archv->as_string("general.architecture");
  const bool permute = arch == "llama";
  const std::string a = arch + ".";
  auto meta_int = [&](const std::string& k, int64_t def) {
    const gguf::Value* v = m.find(a + k);
    return v ? v->as_int(a + k) : def;
  };
  const int64_t n_embd = meta_int("embedding_length", 0),
                n_head = meta_int("attention.head_count", 0);
  const int64_t n_head_kv = meta_int("attention.head_count_kv", n_head);
  const int64_t head_dim = meta_int("attention.key_length", n_head > 0 ? n_embd / n_head : 0);
  const bool tied = m.find_tensor("output.weight") == nullptr;
  DType main_type = DType::F32;
  if (const auto* e = m.find_tensor("token_embd.weight")) main_type = e->type;
  const std::string torch_dtype = main_type == DType::F16    ? "float16"
                                  : main_type == DType::BF16 ? "bfloat16"
                                                             : "float32";
  json config = hf::metadata_to_config(m, tied, torch_dtype);  // validates arch and hparams

  safetensors::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  std::vector<std::vector<uint8_t>> bufs;
  bufs.reserve(m.tensors.size());
  for (const auto& t : m.tensors) {
    std::string name = hf_name(t.name, m.path);
    if (name.empty()) continue;
    auto st = safetensors::st_type_from_dtype(t.type);
    if (!st || (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16))
      fail(
          m.path, ": tensor '", t.name, "' is ", dtype_name(t.type),
          "; a Hugging Face directory holds f32, f16 or bf16 only (convert with --type f16 first)");
    std::vector<int64_t> shape(t.shape.rbegin(), t.shape.rend());
    const uint8_t* data = t.data;
    hf::HfConfig c;
    c.permute_qk = permute;
    c.n_head = n_head;
    c.n_head_kv = n_head_kv;
    if (int64_t heads = qk_heads(t.name, c)) {
      const size_t n_rows = static_cast<size_t>(shape[0]);
      if (head_dim <= 0 || static_cast<int64_t>(n_rows) != heads * head_dim)
        fail(m.path, ": tensor '", t.name, "': ", n_rows, " rows, expected ", heads, " heads x ",
             head_dim);
      bufs.push_back(
          hf::permute_qk_rows(t.data, n_rows, t.nbytes / n_rows, head_dim, /*to_gguf=*/false));
      data = bufs.back().data();
    }
    w.add_tensor(name, *st, shape, data, t.nbytes);
  }
  // Everything is validated; only now touch the disk.
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir, ec))
    fail(out_dir, ": cannot create directory: ", ec.message());
  const fs::path dir(out_dir);
  w.write((dir / "model.safetensors").string());
  write_text((dir / "config.json").string(),
             config.dump(2, ' ', false, json::error_handler_t::replace) + "\n");

  if (!m.find("tokenizer.ggml.model")) return;
  write_text((dir / "tokenizer.json").string(), tok::tokenizer_json_from_metadata(m.metadata));
  write_text((dir / "tokenizer_config.json").string(),
             tok::tokenizer_config_json_from_metadata(m.metadata));
}

}  // namespace brisk::io
