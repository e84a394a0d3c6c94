#include "serve/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "io/tokenizer/tokenizer.h"
#include "serve/api_error.h"
#include "serve/auth.h"
#include "serve/event_queue.h"
#include "serve/metrics_text.h"
#include "serve/prompt.h"
#include "serve/request.h"
#include "serve/response.h"

namespace brisk::serve {

using Clock = std::chrono::steady_clock;
using nlohmann::ordered_json;

void ServerConfig::validate() const {
  check(port >= 0 && port <= 65535, "serve: port must be in [0, 65535], got ", port);
  check(!host.empty(), "serve: host must not be empty");
  check(!model_name.empty(), "serve: model name must not be empty");
  check(http_threads >= 1 && http_threads <= 4096, "serve: http threads must be in [1, 4096], got ",
        http_threads);
  check(max_body_bytes >= 1024, "serve: max body bytes must be >= 1024, got ", max_body_bytes);
  check(drain_seconds >= 0, "serve: drain seconds must be >= 0, got ", drain_seconds);
}

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(200);
// An idle stream writes an SSE comment this often, so a vanished client is noticed (the first
// write after the peer closed succeeds, the next one fails).
constexpr auto kKeepAliveInterval = std::chrono::seconds(1);

void reply_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(error_body(e), "application/json");
}

const char* status_message(int status) {
  switch (status) {
    case 400:
      return "the request could not be parsed";
    case 404:
      return "no such route";
    case 405:
      return "method not allowed";
    case 408:
      return "timed out reading the request";
    case 413:
      return "the request body is too large";
    case 414:
      return "the request URI is too long";
    default:
      return "request failed";
  }
}

}  // namespace

struct Server::Impl {
  engine::Engine& eng;
  ServerConfig cfg;
  httplib::Server http;
  PromptSettings prompt;
  ParseLimits limits;
  int64_t started = 0;  // unix seconds, for /v1/models "created"

  std::atomic<bool> draining{false};
  std::atomic<int> active{0};      // completion requests whose answer is not fully written
  std::atomic<int> listen_fd{-1};  // the bound socket (see Server::bind)
  std::once_flag shutdown_once;

  Impl(engine::Engine& e, ServerConfig c) : eng(e), cfg(std::move(c)) {
    cfg.validate();
    prompt.chat_family = cfg.chat_family;
    prompt.max_model_len = eng.config().max_model_len;
    limits.n_vocab = eng.tokenizer().n_vocab();
    started = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    setup();
  }

  // Holds `active` up for as long as the returned token lives (for a stream: until httplib drops
  // the response, after its last byte is written).
  std::shared_ptr<void> active_token() {
    active.fetch_add(1);
    return std::shared_ptr<void>(nullptr, [this](void*) { active.fetch_sub(1); });
  }

  ordered_json model_json() const {
    return {{"id", cfg.model_name},
            {"object", "model"},
            {"created", started},
            {"owned_by", "brisk"},
            // Not in OpenAI's schema; clients such as bench-serve use them to size prompts.
            {"max_model_len", eng.config().max_model_len},
            {"vocab_size", eng.tokenizer().n_vocab()}};
  }

  void setup() {
    http.new_task_queue = [n = cfg.http_threads] { return new httplib::ThreadPool(n); };
    http.set_payload_max_length(static_cast<size_t>(cfg.max_body_bytes));
    // httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port
    // and take half its connections; a port in use must be an error instead.
    http.set_socket_options([this](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      listen_fd.store(sock);  // the last socket httplib configures is the one it binds
    });
    http.set_tcp_nodelay(true);  // SSE chunks are small; do not let Nagle hold them back
    http.set_keep_alive_max_count(1000);
    http.set_read_timeout(30);

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.path == "/health" || authorized(cfg.api_key, req.get_header_value("Authorization")))
        return httplib::Server::HandlerResponse::Unhandled;
      const bool given = !bearer_token(req.get_header_value("Authorization")).empty();
      res.set_header("WWW-Authenticate", "Bearer");
      reply_error(res, ApiError(401,
                                given ? "incorrect API key provided"
                                      : "no API key provided (send 'Authorization: Bearer KEY')",
                                "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    // Fills the body of errors httplib answers itself (unknown route, body too large, ...).
    http.set_error_handler(httplib::Server::HandlerWithResponse(
        [](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          std::string msg = status_message(res.status);
          if (res.status == 404) msg += ": " + req.method + " " + req.path.substr(0, 200);
          reply_error(res, ApiError(res.status, msg));
          return httplib::Server::HandlerResponse::Handled;
        }));
    http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string msg = "internal error";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            msg += std::string(": ") + e.what();
          } catch (...) {
          }
          reply_error(res, ApiError(500, msg));
        });

    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const bool d = draining.load();
      res.status = d ? 503 : 200;
      res.set_content(d ? R"({"status":"draining"})"
                          "\n"
                        : R"({"status":"ok"})"
                          "\n",
                      "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(prometheus_text(eng.metrics()), "text/plain; version=0.0.4; charset=utf-8");
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      ordered_json j{{"object", "list"}, {"data", ordered_json::array({model_json()})}};
      res.set_content(j.dump() + "\n", "application/json");
    });
    http.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string id = req.matches[1];
      if (id != cfg.model_name) {
        reply_error(res, ApiError(404, "the model '" + id.substr(0, 200) + "' does not exist",
                                  "model", "model_not_found"));
        return;
      }
      res.set_content(model_json().dump() + "\n", "application/json");
    });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle_completion(Endpoint::kCompletions, req, res);
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle_completion(Endpoint::kChat, req, res);
    });

    // Known paths with the wrong method answer 405, not 404.
    auto not_allowed = [](const char* allow) {
      return [allow](const httplib::Request& req, httplib::Response& res) {
        res.set_header("Allow", allow);
        reply_error(res, ApiError(405, "method " + req.method + " is not allowed on " + req.path +
                                           " (allowed: " + allow + ")"));
      };
    };
    for (const char* p : {"/v1/completions", "/v1/chat/completions"}) {
      http.Get(p, not_allowed("POST"));
      http.Put(p, not_allowed("POST"));
      http.Patch(p, not_allowed("POST"));
      http.Delete(p, not_allowed("POST"));
    }
    for (const char* p : {"/health", "/metrics", "/v1/models"}) {
      http.Post(p, not_allowed("GET"));
      http.Put(p, not_allowed("GET"));
      http.Patch(p, not_allowed("GET"));
      http.Delete(p, not_allowed("GET"));
    }
  }

  void handle_completion(Endpoint ep, const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<void> token = active_token();
    try {
      if (draining.load()) throw ApiError(503, "the server is shutting down");
      const ServeRequest r = parse_request(ep, req.body, limits);
      if (!r.model.empty() && r.model != cfg.model_name)
        throw ApiError(404,
                       "the model '" + r.model.substr(0, 200) +
                           "' does not exist (this server "
                           "serves '" +
                           cfg.model_name + "')",
                       "model", "model_not_found");
      engine::CompletionRequest q = to_engine_request(r, eng.tokenizer(), prompt);
      auto queue = std::make_shared<EventQueue>();
      engine::SubmitResult sr =
          eng.submit(std::move(q), [queue](const engine::Event& e) { return queue->push(e); });
      if (!sr.id) {
        const int status = sr.http_status >= 400 ? sr.http_status : 500;
        throw ApiError(status, sr.error.empty() ? "the engine refused the request" : sr.error,
                       sr.param, status == 413 ? "context_length_exceeded" : "");
      }
      ResponseBuilder b(ep, cfg.model_name, r.n, r.logprobs >= 0, r.include_usage);
      respond(std::move(b), queue, *sr.id, r.stream, r.include_usage, std::move(token), res);
    } catch (const ApiError& e) {
      reply_error(res, e);
    } catch (const Error& e) {  // tokenizer or template faults caused by the input
      reply_error(res, ApiError(400, e.what()));
    } catch (const std::bad_alloc&) {
      reply_error(res, ApiError(500, "out of memory"));
    }
  }

  // One request's answer in flight: shared by the content provider and its releaser.
  struct AnswerState {
    ResponseBuilder builder;
    std::shared_ptr<EventQueue> queue;
    engine::RequestId id;
    bool include_usage;
    bool started = false, finished = false;  // finished: the engine's last event arrived
    Usage usage;                             // non-streaming: from the last event
    Clock::time_point last_write = Clock::now();
    std::shared_ptr<void> token;
  };

  // Both kinds of answer are written by a chunked content provider, so that the wait for the
  // engine happens where the connection can be seen: a handler has none, a provider has its
  // DataSink, whose is_writable() in cpp-httplib 0.11+ also peeks at the socket (recv MSG_PEEK)
  // and fails once the peer has closed it. Each provider call waits at most kPollInterval for
  // events and asks is_writable() when it has nothing to write, so a vanished client is seen
  // within about that long, streaming or not; the releaser then cancels the request and the
  // engine frees its KV blocks at once.
  //
  // Non-streaming, the body is the same bytes set_content would send, in one chunk. The price:
  // the 200 status line goes out before the answer exists, so a request aborted later (the
  // shutdown deadline) ends the connection without a body instead of answering 503.
  void respond(ResponseBuilder b, std::shared_ptr<EventQueue> queue, engine::RequestId id,
               bool streaming, bool include_usage, std::shared_ptr<void> token,
               httplib::Response& res) {
    auto st = std::make_shared<AnswerState>(AnswerState{std::move(b), std::move(queue), id,
                                                        include_usage, false, false, Usage{},
                                                        Clock::now(), std::move(token)});
    if (streaming) {
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
    }
    res.set_chunked_content_provider(
        streaming ? "text/event-stream" : "application/json",
        [st, streaming](size_t, httplib::DataSink& sink) {
          return streaming ? stream_step(*st, sink) : whole_step(*st, sink);
        },
        // Runs when httplib drops the response, however it ended: an answer that did not reach
        // the engine's last event lost its client (or failed), so the engine stops work on it.
        [this, st](bool) {
          if (!st->finished) {
            st->queue->close();
            try {
              eng.cancel(st->id);
            } catch (const std::exception& e) {  // runs in a destructor: never let it escape
              std::fprintf(stderr, "serve: cancel of %s failed: %s\n", st->builder.id().c_str(),
                           e.what());
            }
          }
          st->token.reset();
        });
  }

  // One call of the non-streaming provider: gathers the events that arrived (waiting up to
  // kPollInterval), checks the connection while the answer is pending, and writes the whole
  // object once the last event is in. False ends the response: a fault, or a request aborted by
  // shutdown (the status is sent already; closing without a body tells the client it failed).
  static bool whole_step(AnswerState& st, httplib::DataSink& sink) noexcept {
    try {
      for (const engine::Event& e : st.queue->pop(kPollInterval)) {
        st.builder.add(e);
        if (e.done) {
          st.finished = true;
          st.usage = {e.prompt_tokens, e.completion_tokens, e.cached_prompt_tokens};
        }
      }
      if (!st.finished) return sink.is_writable();  // false: the client has gone
      if (st.builder.aborted()) return false;
      const std::string body = st.builder.full(st.usage) + "\n";
      if (!sink.write(body.data(), body.size())) return false;
      sink.done();
      return true;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "serve: answer %s failed: %s\n", st.builder.id().c_str(), e.what());
      return false;
    }
  }

  // One call of the chunked content provider: writes whatever events arrived (or a keep-alive
  // comment when idle for a second). False ends the response: the client is gone, or a fault
  // (httplib would not catch an exception thrown from here).
  static bool stream_step(AnswerState& st, httplib::DataSink& sink) noexcept {
    try {
      std::string out;
      if (!st.started) {
        st.started = true;
        out = st.builder.role_chunks();
      }
      for (const engine::Event& e : st.queue->pop(kPollInterval)) {
        out += st.builder.chunk(e);
        if (e.done && !st.finished) {
          st.finished = true;
          if (st.include_usage)
            out += st.builder.usage_chunk(
                {e.prompt_tokens, e.completion_tokens, e.cached_prompt_tokens});
          out += sse_done();
        }
      }
      const auto now = Clock::now();
      if (out.empty() && now - st.last_write >= kKeepAliveInterval) out = sse_keepalive();
      if (!out.empty()) {
        if (!sink.write(out.data(), out.size())) return false;  // client gone
        st.last_write = now;
      } else if (!sink.is_writable()) {
        return false;
      }
      if (st.finished) sink.done();
      return true;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "serve: stream %s ended: %s\n", st.builder.id().c_str(), e.what());
      return false;
    }
  }

  void shutdown() {
    std::call_once(shutdown_once, [this] {
      draining.store(true);
      const auto deadline =
          std::chrono::milliseconds(static_cast<int64_t>(cfg.drain_seconds * 1e3));
      eng.drain(deadline);
      // Drained requests have sent their last events; give the handlers a moment to write them.
      const auto until = Clock::now() + std::chrono::seconds(5);
      while (active.load() > 0 && Clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      http.stop();
    });
  }
};

Server::Server(engine::Engine& engine, ServerConfig cfg)
    : impl_(std::make_unique<Impl>(engine, std::move(cfg))) {}

Server::~Server() = default;

int Server::bind() {
  const ServerConfig& c = impl_->cfg;
  int port = c.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(c.host);
    if (port < 0) fail("serve: cannot listen on ", c.host, " (no free port, or a bad address)");
  } else if (!impl_->http.bind_to_port(c.host, port)) {
    fail("serve: cannot listen on ", c.host, ":", port, " (address in use, or not available)");
  }
  // Debian's httplib listens with a backlog of 5 (compiled into the library). A burst of clients
  // overflows that accept queue while the compute threads hold the cores: connections then wait
  // on SYN retransmits or, with syncookies, get reset mid-request (clients saw "Read" errors
  // under 16 concurrent streams). Calling listen() again on the bound socket raises the backlog.
  const int fd = impl_->listen_fd.load();
  if (fd >= 0) ::listen(fd, SOMAXCONN);
  return port;
}

void Server::run() {
  impl_->http.listen_after_bind();
}

void Server::shutdown() {
  impl_->shutdown();
}

}  // namespace brisk::serve
