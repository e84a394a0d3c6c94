// brisk synth: a random-weight model with a real shape and tokenizer, for tests and benchmarks.
#include <cstdio>

#include "cli.h"
#include "core/error.h"
#include "model/synth.h"
#include "quant/recipe.h"

namespace brisk::cli {

void add_synth_command(CLI::App& app) {
  struct Args {
    model::SynthConfig cfg;
    std::string preset, type = "f16", out;
    bool untied = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  std::string presets;
  for (const auto& p : model::synth_preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  CLI::App* c = app.add_subcommand(
      "synth", "Write a random-weight model (its text is noise) with a real shape");
  c->add_option("--preset", a->preset, "Named shape: " + presets);
  c->add_option("--arch", a->cfg.arch, "Architecture: llama or qwen2")->capture_default_str();
  c->add_option("--dim", a->cfg.dim, "Embedding size")->capture_default_str();
  c->add_option("--layers", a->cfg.layers, "Transformer blocks")->capture_default_str();
  c->add_option("--heads", a->cfg.heads, "Attention heads")->capture_default_str();
  c->add_option("--kv-heads", a->cfg.kv_heads, "Key/value heads (GQA)")->capture_default_str();
  c->add_option("--ffn", a->cfg.ffn, "Feed-forward size")->capture_default_str();
  c->add_option("--ctx", a->cfg.context, "Training context length")->capture_default_str();
  c->add_option("--rope-base", a->cfg.rope_base, "RoPE frequency base")->capture_default_str();
  c->add_option("--vocab-from", a->cfg.vocab_from,
                "GGUF whose tokenizer to use (default: built-in byte vocabulary)");
  c->add_option("--vocab-size", a->cfg.vocab_size,
                "Embedding rows (default: the vocabulary's size)");
  c->add_option("--type", a->type,
                "Storage type of the weight matrices, or a mixed recipe (q4_K_m, q5_K_m)")
      ->capture_default_str();
  c->add_flag("--untied", a->untied, "Separate output matrix instead of tied embeddings");
  c->add_option("--seed", a->cfg.seed, "Random seed")->capture_default_str();
  c->add_option("-t,--threads", a->threads, "Threads")->check(CLI::Range(1, 1024));
  c->add_option("-o,--output", a->out, "Output GGUF")->required();
  c->callback([a] {
    model::SynthConfig cfg = a->cfg;
    if (!a->preset.empty()) {
      // A preset sets the shape; flags given explicitly still win for vocab, type and seed.
      if (!model::synth_preset(a->preset, cfg)) fail("unknown --preset '", a->preset, "'");
      cfg.vocab_from = a->cfg.vocab_from;
      cfg.vocab_size = a->cfg.vocab_size;
      cfg.seed = a->cfg.seed;
    }
    if (a->untied) cfg.tied = false;
    const std::optional<quant::Recipe> r = quant::parse_recipe(a->type);
    if (!r) fail("unknown --type '", a->type, "'");
    cfg.type = r->base;
    if (r->mixed)
      cfg.type_for = [r, n = cfg.layers](const std::string& name) { return r->type_for(name, n); };
    ThreadPool pool(a->threads > 0 ? a->threads : default_threads());
    std::fprintf(stderr, "synth: %s d%lld l%lld h%lld/%lld ffn%lld, %s, vocab %s\n",
                 cfg.arch.c_str(), static_cast<long long>(cfg.dim),
                 static_cast<long long>(cfg.layers), static_cast<long long>(cfg.heads),
                 static_cast<long long>(cfg.kv_heads), static_cast<long long>(cfg.ffn),
                 a->type.c_str(),
                 cfg.vocab_from.empty() ? "built-in bytes" : cfg.vocab_from.c_str());
    io::ModelFile m = model::synth_model(cfg, pool);
    io::write_gguf(m, a->out);
    uint64_t bytes = 0;
    for (const auto& tt : m.tensors) bytes += tt.nbytes;
    std::fprintf(stderr,
                 "synth: wrote %s (%.1f MiB of weights; random weights: generated text is noise)\n",
                 a->out.c_str(), static_cast<double>(bytes) / (1024.0 * 1024.0));
  });
}

}  // namespace brisk::cli
