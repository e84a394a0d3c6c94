// brisk lora: LoRA adapters in llama.cpp's GGUF convention (docs/ARCHITECTURE.md). `merge` folds
// adapters into a base model's matrices and writes a new GGUF; the --lora options of run / serve /
// logits / bench (lora_options.h) apply them at inference without merging.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "lora_options.h"
#include "model/hparams.h"
#include "model/lora.h"

namespace brisk::cli {

namespace {

// The scale of adapter i given the --lora-scale values (see LoraOptions).
std::vector<float> resolve_scales(const std::vector<std::string>& files,
                                  const std::vector<float>& scales, const char* flag) {
  if (files.empty() && !scales.empty()) fail(flag, " given without --lora");
  if (scales.size() > 1 && scales.size() != files.size())
    fail("give one ", flag, " for all adapters, or one per --lora (", files.size(), " adapters, ",
         scales.size(), " scales)");
  std::vector<float> out(files.size(), scales.empty() ? 1.0f : scales[0]);
  if (scales.size() > 1) out = scales;
  for (float s : out)
    if (!std::isfinite(s)) fail(flag, " must be finite");
  return out;
}

struct MergeArgs {
  std::string model, out, type = "keep", vocab_from;
  std::vector<std::string> lora;
  std::vector<float> scales;
  int threads = 0;
  bool json = false, quiet = false;
};

void merge(const MergeArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<DType> type;
  if (a.type != "keep") {
    type = dtype_from_name(a.type);
    if (!type || (*type != DType::F32 && *type != DType::F16 && *type != DType::BF16))
      fail("unknown --type '", a.type, "' (f32, f16, bf16 or keep)");
  }
  const std::vector<float> scales = resolve_scales(a.lora, a.scales, "--scale");
  io::LoadOptions opts;
  opts.vocab_from = a.vocab_from;
  const io::ModelFile base = io::load_model_file(a.model, opts);
  std::vector<model::LoraAdapter> adapters;
  adapters.reserve(a.lora.size());
  for (const std::string& f : a.lora) adapters.push_back(model::load_lora_adapter(f));
  std::vector<model::LoraMergeInput> in;
  for (size_t i = 0; i < adapters.size(); ++i) in.push_back({&adapters[i], scales[i]});
  ThreadPool pool(a.threads > 0 ? a.threads : default_threads());
  const size_t n = model::merge_lora(
      base, in, a.out, type, pool, [&](size_t i, size_t total, const std::string& name) {
        if (a.quiet) return;
        // Called once everything was checked, so that a bad input stays a one-line error.
        if (i == 0)
          for (size_t k = 0; k < adapters.size(); ++k)
            std::fprintf(stderr, "lora merge: %s (%zu matrices, alpha %g) x %g\n",
                         a.lora[k].c_str(), adapters[k].targets.size(),
                         static_cast<double>(adapters[k].alpha), static_cast<double>(scales[k]));
        std::fprintf(stderr, "\rlora merge: [%zu/%zu] %-40s", i + 1, total, name.c_str());
      });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!a.quiet)
    std::fprintf(stderr, "\nlora merge: %zu matrices merged (%s), wrote %s in %.1f s\n", n,
                 a.type.c_str(), a.out.c_str(), secs);
  if (a.json) {
    nlohmann::ordered_json j;
    j["output"] = a.out;
    j["base"] = a.model;
    j["adapters"] = a.lora;
    j["scales"] = scales;
    j["type"] = a.type;
    j["merged_matrices"] = n;
    j["seconds"] = secs;
    std::printf("%s\n", j.dump().c_str());
  }
}

}  // namespace

void add_lora_options(CLI::App* c, LoraOptions& o) {
  c->add_option("--lora", o.files,
                "LoRA adapter GGUF to apply without merging (repeatable: adapters stack)");
  c->add_option("--lora-scale", o.scales,
                "Scale of the adapters (default 1): one for all, or one per --lora in order");
}

void attach_loras(model::Model& m, const LoraOptions& o, bool quiet) {
  const std::vector<float> scales = resolve_scales(o.files, o.scales, "--lora-scale");
  for (size_t i = 0; i < o.files.size(); ++i) {
    const model::LoraAdapter ad = model::load_lora_adapter(o.files[i]);
    m.add_lora(ad, scales[i]);
    if (!quiet) {
      int64_t rank = 0;
      for (const model::LoraTarget& t : ad.targets) rank = std::max(rank, t.rank);
      std::fprintf(stderr, "lora: %s: %zu matrices, rank %lld, alpha %g, scale %g\n",
                   o.files[i].c_str(), ad.targets.size(), static_cast<long long>(rank),
                   static_cast<double>(ad.alpha), static_cast<double>(scales[i]));
    }
  }
}

void add_lora_command(CLI::App& app) {
  CLI::App* c = app.add_subcommand("lora", "LoRA adapters (GGUF, llama.cpp convention): merge");
  c->require_subcommand(1);
  auto a = std::make_shared<MergeArgs>();
  CLI::App* m = c->add_subcommand(
      "merge",
      "Merge LoRA adapters into a base model: W' = W + scale * alpha / r * B A, written as GGUF");
  m->add_option("-m,--model", a->model,
                "Base model: GGUF file, Hugging Face directory, safetensors or llama2.c checkpoint")
      ->required();
  m->add_option("--lora", a->lora, "LoRA adapter GGUF (repeatable: merged in order)")->required();
  m->add_option("--scale,--lora-scale", a->scales,
                "Scale of the adapters (default 1): one for all, or one per --lora in order");
  m->add_option("-o,--output", a->out, "Output GGUF")->required();
  m->add_option("--type", a->type,
                "Storage of the merged matrices: keep (each matrix requantised to its own type), "
                "f32, f16 or bf16; other tensors are copied unchanged")
      ->capture_default_str();
  m->add_option("--vocab-from", a->vocab_from,
                "GGUF to take the tokenizer from (llama2.c checkpoints)");
  m->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  m->add_flag("--json", a->json, "Print a JSON summary on stdout");
  m->add_flag("--quiet", a->quiet, "No progress output");
  m->callback([a] { merge(*a); });
}

}  // namespace brisk::cli
