// brisk serve: an OpenAI-compatible HTTP server (src/serve) over the batching engine
// (src/engine). Prints "serve: listening on http://HOST:PORT" on stderr once it accepts
// connections; SIGTERM / SIGINT drain in-flight requests (up to --drain-seconds) and exit 0.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cli.h"
#include "core/error.h"
#include "engine/engine.h"
#include "io/tokenizer/chat_template.h"
#include "lora_options.h"
#include "serve/server.h"

namespace brisk::cli {
namespace {

struct ServeArgs {
  std::string model, vocab_from, chat_template, model_name;
  serve::ServerConfig server;
  engine::EngineConfig engine;
  bool no_prefix_caching = false;
  int http_threads = 0;
  LoraOptions lora;
};

// The id clients name the model by: the file's stem, or a Hugging Face directory's name.
std::string default_model_name(const std::string& path) {
  std::filesystem::path p(path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  const std::string stem = p.stem().string();
  return stem.empty() ? "model" : stem;
}

// SIGINT / SIGTERM write their number into a pipe (async-signal-safe) that a watcher thread reads:
// the drain then runs as ordinary code, not inside a signal handler. A handler, rather than
// blocking the signals and taking them with sigwait, because threads this process did not start
// (OpenBLAS starts its pool when the library loads, before main) would not have them blocked and
// a SIGTERM delivered to one of them would kill the process.
int g_stop_pipe[2] = {-1, -1};
extern "C" void on_stop_signal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  const ssize_t r = ::write(g_stop_pipe[1], &b, 1);
  (void)r;
}

void serve_main(ServeArgs a) {
  check(::pipe2(g_stop_pipe, O_CLOEXEC | O_NONBLOCK) == 0, "serve: pipe: ", std::strerror(errno));
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must fail a write, not kill us

  if (!a.chat_template.empty()) {
    a.server.chat_family = tok::chat_family_from_name(a.chat_template);
    if (!a.server.chat_family)
      fail("unknown --chat-template '", a.chat_template,
           "' (llama2, llama3, chatml, mistral, phi3, zephyr, gemma)");
  }
  const std::string model_path = model_or_default(a.model);
  Loaded l = load(model_path, true, a.vocab_from);
  if (!l.tokenizer) fail(model_path, ": the model has no tokenizer (pass --vocab-from GGUF)");
  attach_loras(*l.model, a.lora, /*quiet=*/true);  // reported once the server is up
  const tok::Tokenizer& tk = *l.tokenizer;
  // Said once the server is up, so that a start-up failure stays a one-line error.
  std::string note;
  if (!a.server.chat_family) {
    if (tk.chat_template().empty()) {
      note = "the model has no chat template; /v1/chat/completions needs --chat-template NAME";
    } else if (!tok::detect_chat_family(tk.chat_template())) {
      note =
          "the model's chat template is not one brisk renders; /v1/chat/completions needs "
          "--chat-template NAME";
    }
  }

  engine::EngineConfig& ec = a.engine;
  ec.prefix_caching = !a.no_prefix_caching;
  const int64_t n_ctx = l.model->hparams().n_ctx_train;
  if (ec.max_model_len == 0) ec.max_model_len = n_ctx;
  if (n_ctx > 0 && ec.max_model_len > n_ctx)
    fail("--max-model-len ", ec.max_model_len, " is larger than the model's context of ", n_ctx);
  ec.validate();

  serve::ServerConfig& sc = a.server;
  sc.model_name = a.model_name.empty() ? default_model_name(model_path) : a.model_name;
  // Every open stream holds one HTTP thread: leave room for the running batch, the queue behind
  // it, and a few plain requests (health checks, metrics scrapes).
  sc.http_threads = a.http_threads > 0 ? a.http_threads : std::max(64, 4 * ec.max_num_seqs);
  sc.validate();

  engine::Engine eng(*l.model, tk, ec);
  serve::Server server(eng, sc);
  const int port = server.bind();

  // The first signal drains (on its own thread, so this one keeps listening); a second one, for
  // an operator who will not wait, exits at once.
  std::atomic<bool> stopped{false};
  std::thread drainer;
  std::thread watcher([&] {
    while (!stopped.load()) {
      pollfd pfd{g_stop_pipe[0], POLLIN, 0};
      if (::poll(&pfd, 1, 200) <= 0) continue;
      unsigned char b = 0;
      if (::read(g_stop_pipe[0], &b, 1) != 1) continue;
      const int sig = b;
      if (sig != SIGINT && sig != SIGTERM) continue;
      const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
      if (drainer.joinable()) {
        std::fprintf(stderr, "serve: second %s, exiting without waiting\n", name);
        std::_Exit(1);
      }
      std::fprintf(stderr, "serve: %s, draining (up to %g s; signal again to quit now) ...\n", name,
                   sc.drain_seconds);
      drainer = std::thread([&] { server.shutdown(); });
    }
  });
  if (!note.empty()) std::fprintf(stderr, "serve: note: %s\n", note.c_str());
  for (const std::string& f : a.lora.files)
    std::fprintf(stderr, "serve: LoRA adapter %s\n", f.c_str());
  const bool v6 = sc.host.find(':') != std::string::npos;
  std::fprintf(stderr, "serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", sc.host.c_str(),
               v6 ? "]" : "", port);
  std::fflush(stderr);
  server.run();
  stopped.store(true);
  watcher.join();
  if (drainer.joinable()) drainer.join();
  std::fprintf(stderr, "serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* c = app.add_subcommand("serve",
                                   "OpenAI-compatible HTTP server (completions, chat, "
                                   "streaming, /metrics)");
  c->add_option("-m,--model", a->model,
                "Model: GGUF file, Hugging Face directory, safetensors or llama2.c checkpoint "
                "(default: brisk's embedded model, models/brisk-default.gguf)");
  c->add_option("--host", a->server.host, "Address to listen on")->capture_default_str();
  c->add_option("--port", a->server.port, "Port (0: any free port, printed when ready)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  c->add_option("--api-key", a->server.api_key,
                "Require 'Authorization: Bearer KEY' on every route but /health");
  c->add_option("--model-name", a->model_name,
                "Model id in /v1/models and responses (default: the file name's stem)");
  c->add_option("--chat-template", a->chat_template,
                "Override the chat template family: llama2, llama3, chatml, mistral, phi3, "
                "zephyr, gemma");
  c->add_option("--max-num-seqs", a->engine.max_num_seqs,
                "Sequences decoded together (each of n choices counts)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  c->add_option("--max-batch-tokens", a->engine.max_batch_tokens,
                "Tokens per forward pass (decodes + prompt chunks)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("--max-waiting", a->engine.max_waiting,
                "Queued requests beyond this are refused with HTTP 429")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  c->add_option("--max-model-len", a->engine.max_model_len,
                "Prompt + completion limit in tokens (default: the model's context)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  c->add_option("--kv-memory", a->engine.kv_memory_mib,
                "KV cache size in MiB (default: max-num-seqs full contexts, at most 1/4 of RAM)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  c->add_option("--kv-type", a->engine.kv_type, "KV cache storage type")
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "q8_0", "f32"}));
  c->add_flag("--no-prefix-caching", a->no_prefix_caching,
              "Do not reuse KV blocks of earlier prompts with the same prefix");
  c->add_option("-t,--threads", a->engine.threads, "Compute threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  c->add_option("--http-threads", a->http_threads,
                "HTTP connection threads; each open stream holds one (default: max(64, 4 x "
                "max-num-seqs))")
      ->check(CLI::Range(1, 4096));
  c->add_option("--max-body-bytes", a->server.max_body_bytes,
                "Largest request body accepted (HTTP 413 beyond)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 30));
  c->add_option("--drain-seconds", a->server.drain_seconds,
                "On SIGTERM / SIGINT, how long in-flight requests may finish")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  c->add_option("--vocab-from", a->vocab_from,
                "GGUF to take the tokenizer from (for llama2.c checkpoints)");
  add_lora_options(c, a->lora);
  c->callback([a] { serve_main(*a); });
}

}  // namespace brisk::cli
