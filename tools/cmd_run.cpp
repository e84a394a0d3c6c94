// brisk run: generate text from a prompt, streaming it to stdout; the last stderr line reports
// prompt and generation speed.
#include <chrono>
#include <cstdio>

#include "cli.h"
#include "core/error.h"
#include "engine/generator.h"
#include "io/tokenizer/chat_template.h"
#include "lora_options.h"

namespace brisk::cli {
namespace {

struct RunArgs {
  std::string model, prompt, prompt_file, vocab_from, system, chat_template;
  int n = 128, threads = 0;
  int64_t ctx = 0, batch = 512;
  bool chat = false, ignore_eos = false, no_bos = false, quiet = false;
  engine::SamplingParams sp;
  int64_t seed = -1;
  std::vector<std::string> stop;
  LoraOptions lora;
};

void run(const RunArgs& a) {
  std::string text = a.prompt;
  if (!a.prompt_file.empty()) text = read_file_text(a.prompt_file);
  const std::string model_path = model_or_default(a.model);
  Loaded l = load(model_path, true, a.vocab_from);
  attach_loras(*l.model, a.lora, a.quiet);
  if (!l.tokenizer) fail(model_path, ": the model has no tokenizer (pass --vocab-from GGUF)");
  const tok::Tokenizer& tk = *l.tokenizer;

  std::vector<int32_t> ids;
  if (a.chat) {
    std::vector<tok::ChatMessage> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", text});
    const std::string bos = tk.bos_id() >= 0 ? tk.token_text(tk.bos_id()) : "";
    const std::string eos = tk.eos_id() >= 0 ? tk.token_text(tk.eos_id()) : "";
    std::string rendered;
    if (!a.chat_template.empty()) {
      auto fam = tok::chat_family_from_name(a.chat_template);
      if (!fam) fail("unknown --chat-template '", a.chat_template, "'");
      rendered = tok::apply_chat_template(*fam, msgs, true, bos, eos);
    } else {
      if (tk.chat_template().empty())
        fail(model_path, ": the model has no chat template (pass --chat-template NAME)");
      rendered = tok::apply_chat_template(tk.chat_template(), msgs, true, bos, eos);
    }
    // Templates that spell out the BOS token must not get a second one.
    const bool has_bos = !bos.empty() && rendered.rfind(bos, 0) == 0;
    ids = tk.encode(rendered, !has_bos && !a.no_bos, true);
  } else {
    ids = tk.encode(text, !a.no_bos, true);
  }
  if (ids.empty()) fail("the prompt is empty (give -p TEXT, or drop --no-bos)");

  engine::GenerateOptions opt;
  opt.max_tokens = a.n;
  opt.sampling = a.sp;
  opt.sampling.seed =
      a.seed >= 0
          ? static_cast<uint64_t>(a.seed)
          : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  opt.stop = a.stop;
  opt.ignore_eos = a.ignore_eos;
  opt.n_ctx = a.ctx;
  opt.n_batch = a.batch;
  ThreadPool pool(a.threads > 0 ? a.threads : default_threads());
  if (!a.quiet && !a.chat) {
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
  }
  engine::GenerateResult r = engine::generate(*l.model, tk, ids, opt, pool, [](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double pp = r.prompt_seconds > 0 ? static_cast<double>(r.n_prompt) / r.prompt_seconds : 0;
  const double tg = r.gen_seconds > 0 ? static_cast<double>(r.tokens.size()) / r.gen_seconds : 0;
  std::fprintf(stderr,
               "prompt: %lld tokens, %.2f tokens/s | generation: %zu tokens, %.2f tokens/s | "
               "finish: %s\n",
               static_cast<long long>(r.n_prompt), pp, r.tokens.size(), tg,
               r.finish_reason.c_str());
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* c = app.add_subcommand("run", "Generate text from a prompt (streams to stdout)");
  c->add_option("-m,--model", a->model,
                "Model: GGUF file, Hugging Face directory, safetensors or llama2.c checkpoint "
                "(default: brisk's embedded model, models/brisk-default.gguf)");
  auto* p = c->add_option("-p,--prompt", a->prompt, "Prompt text");
  c->add_option("-f,--file", a->prompt_file, "Read the prompt from a file")->excludes(p);
  c->add_option("-n,--max-tokens", a->n, "Tokens to generate")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  c->add_option("--temp", a->sp.temperature, "Temperature (0 = greedy)")->capture_default_str();
  c->add_option("--top-k", a->sp.top_k, "Top-k (<= 0 disables)")->capture_default_str();
  c->add_option("--top-p", a->sp.top_p, "Top-p nucleus (1 disables)")->capture_default_str();
  c->add_option("--min-p", a->sp.min_p, "Min-p relative to the top token (0 disables)")
      ->capture_default_str();
  c->add_option("--repeat-penalty", a->sp.repeat_penalty, "Repetition penalty (1 disables)")
      ->capture_default_str();
  c->add_option("--repeat-last-n", a->sp.repeat_last_n,
                "Tokens the repetition penalty looks back over")
      ->capture_default_str();
  c->add_option("--frequency-penalty", a->sp.frequency_penalty, "OpenAI-style frequency penalty")
      ->capture_default_str();
  c->add_option("--presence-penalty", a->sp.presence_penalty, "OpenAI-style presence penalty")
      ->capture_default_str();
  c->add_option("--seed", a->seed, "Random seed (same seed, same output); default: from the clock");
  c->add_option("--stop", a->stop, "Stop string (repeatable)");
  c->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  c->add_option("--ctx", a->ctx, "Context size (default: prompt + max tokens, capped by the model)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  c->add_option("--batch", a->batch, "Prompt tokens per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_flag("--chat", a->chat, "Wrap the prompt as a user message in the model's chat template");
  c->add_option("--system", a->system, "System message (with --chat)");
  c->add_option(
      "--chat-template", a->chat_template,
      "Override the template family: llama2, llama3, chatml, mistral, phi3, zephyr, gemma");
  c->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past end-of-generation tokens");
  c->add_flag("--no-bos", a->no_bos, "Do not add the BOS token");
  c->add_flag("--quiet", a->quiet, "Do not echo the prompt");
  c->add_option("--vocab-from", a->vocab_from,
                "GGUF to take the tokenizer from (for llama2.c checkpoints)");
  add_lora_options(c, a->lora);
  c->callback([a] { run(*a); });
}

}  // namespace brisk::cli
