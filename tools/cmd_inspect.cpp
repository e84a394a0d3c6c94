// brisk inspect: architecture, hyperparameters, tokenizer, tensor table and parameter count.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "io/tokenizer/chat_template.h"
#include "model/hparams.h"

namespace brisk::cli {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? " x " : "") + std::to_string(s[i]);
  return r;
}

void inspect(const std::string& path, const std::string& vocab_from, bool json, bool show_meta) {
  io::LoadOptions opts;
  opts.vocab_from = vocab_from;
  io::ModelFile mf = io::load_model_file(path, opts);
  nlohmann::ordered_json j;
  j["path"] = path;
  j["format"] = mf.format;
  const gguf::Value* arch = mf.find("general.architecture");
  uint64_t n_params = 0, n_bytes = 0;
  for (const auto& t : mf.tensors) {
    n_params += static_cast<uint64_t>(t.n_elements());
    n_bytes += t.nbytes;
  }
  if (arch) {
    const std::string a = arch->as_string("general.architecture");
    j["architecture"] = a;
    if (const gguf::Value* n = mf.find("general.name")) j["name"] = n->as_string("general.name");
    const gguf::Value* type = mf.find("general.type");
    const bool adapter = type && type->type == gguf::ValueType::STRING && type->str == "adapter";
    if (adapter) {
      // A LoRA adapter (model/lora.h) has no hyperparameters of its own.
      const gguf::Value* at = mf.find("adapter.type");
      const gguf::Value* alpha = mf.find("adapter.lora.alpha");
      j["adapter"] = {{"type", at && at->type == gguf::ValueType::STRING ? at->str : std::string()},
                      {"alpha", alpha && alpha->is_float() ? alpha->f : 0.0}};
    } else if (!mf.tensors.empty()) {
      model::HParams h = model::read_hparams(mf, a);
      j["hparams"] = {{"n_embd", h.n_embd},
                      {"n_layer", h.n_layer},
                      {"n_ff", h.n_ff},
                      {"n_head", h.n_head},
                      {"n_head_kv", h.n_head_kv},
                      {"head_dim", h.head_dim},
                      {"n_ctx_train", h.n_ctx_train},
                      {"rms_eps", h.rms_eps},
                      {"rope_base", h.rope_base},
                      {"rope_dims", h.rope_dims},
                      {"rope_scaling", model::rope_scaling_name(h.rope_scaling)},
                      {"rope_factor", h.rope_factor},
                      {"sliding_window", h.sliding_window}};
    }
  }
  if (mf.find("tokenizer.ggml.tokens")) {
    auto tk = tok::Tokenizer::from_metadata(mf.metadata, path);
    nlohmann::ordered_json t;
    t["model"] = std::string(tk->model());
    t["pre"] = std::string(tk->pre());
    t["n_vocab"] = tk->n_vocab();
    t["bos_id"] = tk->bos_id();
    t["eos_id"] = tk->eos_id();
    t["add_bos"] = tk->add_bos();
    t["add_eos"] = tk->add_eos();
    if (!tk->chat_template().empty()) {
      auto fam = tok::detect_chat_family(tk->chat_template());
      t["chat_template"] = fam ? tok::chat_family_name(*fam) : "unrecognised";
    } else {
      t["chat_template"] = nullptr;
    }
    j["tokenizer"] = t;
  }
  j["n_params"] = n_params;
  j["n_bytes"] = n_bytes;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const auto& t : mf.tensors)
    tensors.push_back(
        {{"name", t.name}, {"type", dtype_name(t.type)}, {"shape", t.shape}, {"bytes", t.nbytes}});
  j["tensors"] = tensors;
  if (show_meta || json) {
    nlohmann::ordered_json meta;
    for (const auto& [k, v] : mf.metadata) meta[k] = v.to_display(json ? 4 : 8);
    j["metadata"] = meta;
  }

  if (json) {
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("file:         %s (%s)\n", path.c_str(), mf.format.c_str());
  if (j.contains("architecture"))
    std::printf("architecture: %s\n", j["architecture"].get<std::string>().c_str());
  if (j.contains("name")) std::printf("name:         %s\n", j["name"].get<std::string>().c_str());
  if (j.contains("adapter"))
    std::printf("adapter:      %s, alpha %g (LoRA: apply with --lora, or brisk lora merge)\n",
                j["adapter"]["type"].get<std::string>().c_str(),
                j["adapter"]["alpha"].get<double>());
  if (j.contains("hparams"))
    for (auto& [k, v] : j["hparams"].items())
      std::printf("  %-14s %s\n", k.c_str(), v.dump().c_str());
  if (j.contains("tokenizer")) {
    std::printf("tokenizer:\n");
    for (auto& [k, v] : j["tokenizer"].items())
      std::printf("  %-14s %s\n", k.c_str(), v.dump().c_str());
  }
  if (show_meta) {
    std::printf("metadata:\n");
    for (const auto& [k, v] : mf.metadata)
      std::printf("  %-44s %s\n", k.c_str(), v.to_display().c_str());
  }
  std::printf("tensors: %zu\n", mf.tensors.size());
  std::printf("  %-36s %-6s %-16s %12s\n", "name", "type", "shape", "bytes");
  for (const auto& t : mf.tensors)
    std::printf("  %-36s %-6s %-16s %12zu\n", t.name.c_str(), dtype_name(t.type),
                shape_str(t.shape).c_str(), t.nbytes);
  std::printf("parameters: %llu (%.2f M), %.2f MiB of tensor data\n",
              static_cast<unsigned long long>(n_params), static_cast<double>(n_params) / 1e6,
              static_cast<double>(n_bytes) / (1024.0 * 1024.0));
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  struct Args {
    std::string model, vocab_from;
    bool json = false, metadata = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "inspect", "Show a model's architecture, hyperparameters, tokenizer and tensors");
  c->add_option("model", a->model, "Model file or directory")->required();
  c->add_flag("--json", a->json, "Machine-readable output");
  c->add_flag("--metadata", a->metadata, "Also list every metadata key");
  c->add_option("--vocab-from", a->vocab_from,
                "GGUF to take the tokenizer from (llama2.c checkpoints)");
  c->callback([a] { inspect(a->model, a->vocab_from, a->json, a->metadata); });
}

}  // namespace brisk::cli
