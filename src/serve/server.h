// The OpenAI-compatible HTTP server over one engine::Engine.
//
//   POST /v1/completions, POST /v1/chat/completions   (streaming as SSE, or one JSON object)
//   GET  /v1/models, /v1/models/{id}, /health, /metrics (Prometheus text)
//
// cpp-httplib runs every connection on a thread of its pool (--http-threads): a completion
// handler parses and validates the body (serve/request.h), builds the engine request
// (serve/prompt.h), submits it with a sink that pushes events into a per-request EventQueue, and
// then drains that queue through a chunked content provider on its own thread, writing SSE chunks
// or, once every event is in, the whole object. A client that goes away is noticed by httplib's
// connection check before each call of the provider (it peeks at the socket), or when a write
// fails (an idle stream writes an SSE comment every second); the request is then cancelled, and
// the engine frees its KV blocks at once. Streaming or not, a request does not outlive its client.
//
// Shutdown (shutdown(), e.g. on SIGTERM): /health answers 503 and new completions 503; the engine
// drains (in-flight requests finish until the deadline, the rest are cancelled); open streams
// write their last chunks (a non-streamed answer cut short by the deadline closes its connection
// without a body: its 200 status line is already out); then the listener stops and run() returns.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "engine/engine.h"
#include "io/tokenizer/chat_template.h"

namespace brisk::serve {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;                             // 0: any free port (bind() returns it)
  std::string api_key;                         // empty: no authentication
  std::string model_name;                      // the model's id in /v1/models and in responses
  std::optional<tok::ChatFamily> chat_family;  // overrides the model's chat template
  int http_threads = 64;  // concurrent connections served (each stream holds one)
  int64_t max_body_bytes = 1 << 20;
  double drain_seconds = 30;  // how long in-flight requests may finish on shutdown
  void validate() const;      // throws brisk::Error naming the field
};

class Server {
 public:
  // The engine must outlive the server.
  Server(engine::Engine& engine, ServerConfig cfg);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port (useful with port 0). Throws brisk::Error.
  int bind();
  // Serves until shutdown() has completed. Call after bind().
  void run();
  // Drains and stops, as described above; returns when the listener is stopped. Thread-safe; a
  // second call returns at once.
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace brisk::serve
