// brisk logits: evaluate a prompt and write the logits of every position as raw little-endian
// float32, n_tokens rows of n_vocab; prints the ids it evaluated.
#include <cstdio>

#include "cli.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "lora_options.h"

namespace brisk::cli {

void add_logits_command(CLI::App& app) {
  struct Args {
    std::string model, prompt, tokens, out, vocab_from;
    bool no_bos = false;
    int threads = 0;
    int64_t ubatch = 0;
    LoraOptions lora;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("logits", "Write the logits of every prompt position (raw f32)");
  c->add_option("-m,--model", a->model, "Model file or directory")->required();
  auto* p = c->add_option("-p,--prompt", a->prompt, "Prompt text");
  c->add_option("--tokens", a->tokens, "Token ids instead of text: \"ID ID ...\"")->excludes(p);
  c->add_flag("--no-bos", a->no_bos, "Do not add the BOS token to a text prompt");
  c->add_option("-o,--output", a->out, "Output file (raw little-endian float32)")->required();
  c->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  c->add_option("--ubatch", a->ubatch,
                "Tokens per forward pass (default: all at once; 1 = token by token)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  c->add_option("--vocab-from", a->vocab_from,
                "GGUF to take the tokenizer from (llama2.c checkpoints)");
  add_lora_options(c, a->lora);
  c->callback([a] {
    Loaded l = load(a->model, true, a->vocab_from);
    attach_loras(*l.model, a->lora);
    std::vector<int32_t> ids;
    if (!a->tokens.empty()) {
      ids = parse_token_list(a->tokens);
    } else {
      if (!l.tokenizer)
        fail(a->model, ": the model has no tokenizer; pass --tokens or --vocab-from");
      ids = l.tokenizer->encode(a->prompt, !a->no_bos, true);
    }
    if (ids.empty()) fail("logits: no tokens to evaluate");
    const model::Model& m = *l.model;
    for (int32_t id : ids)
      if (id >= m.n_vocab())
        fail("token id ", id, " out of range for a vocabulary of ", m.n_vocab());
    ThreadPool pool(a->threads > 0 ? a->threads : default_threads());
    model::InferenceState st(m.hparams(), static_cast<int64_t>(ids.size()));
    const int64_t n = static_cast<int64_t>(ids.size());
    const int64_t ub = a->ubatch > 0 ? a->ubatch : n;
    AtomicFileWriter w(a->out);
    std::vector<float> logits;
    for (int64_t i = 0; i < n; i += ub) {
      const int64_t k = std::min(ub, n - i);
      m.forward(
          std::span<const int32_t>(ids).subspan(static_cast<size_t>(i), static_cast<size_t>(k)), st,
          logits, true, pool);
      w.write(logits.data(), logits.size() * sizeof(float));
    }
    w.commit();
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", s.c_str());
  });
}

}  // namespace brisk::cli
