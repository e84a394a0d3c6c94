// brisk convert: any supported format -> GGUF (optionally re-stored in another type), or a GGUF ->
// Hugging Face directory.
#include <cstdio>

#include "cli.h"
#include "core/error.h"
#include "io/safetensors/hf_dir.h"
#include "quant/requantize.h"

namespace brisk::cli {

void add_convert_command(CLI::App& app) {
  struct Args {
    std::string in, out, type, vocab_from, to = "gguf";
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "convert", "Convert between model formats (to GGUF, or GGUF to a Hugging Face directory)");
  c->add_option("input", a->in, "GGUF, safetensors, Hugging Face directory or llama2.c checkpoint")
      ->required();
  c->add_option("output", a->out, "Output path (file for gguf, directory for hf)")->required();
  c->add_option("--to", a->to, "Output format: gguf or hf")
      ->capture_default_str()
      ->check(CLI::IsMember({"gguf", "hf"}));
  c->add_option("--type", a->type,
                "Re-store weight matrices in this type (f32, f16, bf16, q8_0, q4_K, ...)");
  c->add_option("--vocab-from", a->vocab_from,
                "GGUF to take the tokenizer from (llama2.c checkpoints)");
  c->add_option("-t,--threads", a->threads, "Threads")->check(CLI::Range(1, 1024));
  c->callback([a] {
    io::LoadOptions opts;
    opts.vocab_from = a->vocab_from;
    io::ModelFile m = io::load_model_file(a->in, opts);
    // Validate that it is a model we can run before writing anything.
    if (m.tensors.empty()) fail(a->in, ": no tensors to convert");
    if (!a->type.empty()) {
      auto t = dtype_from_name(a->type);
      if (!t || !dtype_layout(*t).storage) fail("unknown --type '", a->type, "'");
      ThreadPool pool(a->threads > 0 ? a->threads : default_threads());
      quant::QuantizeReport rep =
          quant::requantize(m, *t, pool, [](size_t i, size_t n, const std::string& name) {
            std::fprintf(stderr, "\rconvert: [%zu/%zu] %-40s", i + 1, n, name.c_str());
          });
      std::fprintf(stderr, "\nconvert: %d tensors re-stored as %s\n", rep.n_quantized,
                   dtype_name(*t));
      if (rep.n_fallback) std::fprintf(stderr, "convert: fallbacks: %s\n", rep.fallbacks.c_str());
      m.set("general.file_type", gguf::Value::u32(quant::gguf_file_type(*t)));
    }
    if (a->to == "hf") {
      io::write_hf_dir(m, a->out);
    } else {
      io::write_gguf(m, a->out);
    }
    std::fprintf(stderr, "convert: wrote %s\n", a->out.c_str());
  });
}

}  // namespace brisk::cli
