// The serving engine: many concurrent generation requests over one model, batched at every step.
//
// One engine thread owns the model state. Each step it asks the Scheduler (engine/scheduler.h,
// tensor-free) which requests run and with how many tokens (decodes first, then prompt chunks,
// under a token budget and the free KV blocks), runs one batched forward pass over the paged KV
// cache (engine/model_runner.h), samples a token for every request whose prompt is complete, and
// hands each request's new text to its sink. Submit, cancel and metrics are thread-safe and may be
// called from any thread (the HTTP server's handler threads).
//
// Sinks are called on the engine thread, one event at a time per request, and must not block for
// long (the server pushes into a per-request queue). A sink returning false cancels its request
// (the client went away); its KV blocks go back to the pool at once.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace brisk::model {
class Model;
}
namespace brisk::tok {
class Tokenizer;
}

namespace brisk::engine {

struct EngineConfig {
  int threads = 0;                 // 0: all cores
  int32_t max_num_seqs = 16;       // sequences decoded together (n > 1 choices count each)
  int64_t max_batch_tokens = 512;  // tokens per forward pass (decodes + prompt chunks)
  int64_t max_waiting = 256;       // queued requests beyond this are refused (HTTP 429)
  int64_t max_model_len = 0;       // prompt + max_tokens limit; 0: the model's context length
  int64_t kv_memory_mib = 0;       // KV cache size; 0: enough for max_num_seqs full contexts,
                                   // capped at 1/4 of physical memory
  std::string kv_type = "f16";     // "f16" (default), "q8_0" or "f32"
  int32_t block_size = 16;         // tokens per KV block
  bool prefix_caching = true;
  void validate() const;  // throws brisk::Error naming the field
};

struct CompletionRequest {
  std::vector<int32_t> prompt;  // token ids (already templated for chat)
  SamplingParams sampling;
  int32_t max_tokens = 16;
  std::vector<std::string> stop;  // stop strings (up to 4 in the OpenAI API)
  int32_t n = 1;                  // choices; they share the prompt's KV blocks (copy-on-write)
  int32_t priority = 0;           // lower runs first; equal priorities are FCFS
  int32_t logprobs = -1;          // -1: none; k >= 0: the chosen token's logprob + top k
  bool ignore_eos = false;
};

struct TokenLogprob {
  int32_t id = 0;
  std::string text;  // the token's piece
  float logprob = 0;
};
// For one generated token: its own logprob and the top alternatives (most likely first), taken
// from the model's own distribution (log-softmax of the raw logits: before logit bias, penalties,
// temperature and filters, as vLLM reports them by default).
struct LogprobEntry {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;
};

// One event for one choice: newly generated text (may be empty while a stop string or a UTF-8
// character is held back), and, on the last event of the choice, its finish reason.
struct Event {
  int32_t index = 0;  // choice index in [0, n)
  std::string text;
  std::vector<int32_t> tokens;               // ids generated since the previous event
  std::vector<LogprobEntry> logprobs;        // one per token when logprobs were asked for
  std::optional<std::string> finish_reason;  // "stop", "length" or "abort" (cancelled / shut down)
  // Set on the request's very last event (after every choice finished).
  bool done = false;
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_prompt_tokens = 0;
};

using RequestId = uint64_t;
using EventSink = std::function<bool(const Event&)>;

struct SubmitResult {
  std::optional<RequestId> id;  // set when accepted
  int http_status = 0;          // when refused: 400 (impossible request), 413 (too long),
                                // 429 (queue full), 503 (shutting down)
  std::string error;            // one line, for the error body
  std::string param;            // the request field at fault ("n", "max_tokens"), when one is
};

struct Histogram {
  std::vector<double> bounds;    // upper bounds in seconds (Prometheus "le"), ascending
  std::vector<uint64_t> counts;  // cumulative counts per bound
  uint64_t count = 0;
  double sum = 0;
};

struct MetricsSnapshot {
  int64_t running = 0, waiting = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0;
  uint64_t prefix_queries = 0, prefix_hits = 0;  // prompt tokens looked up / found in the cache
  uint64_t prompt_tokens = 0, generated_tokens = 0;
  uint64_t requests_finished = 0, requests_aborted = 0, requests_rejected = 0, preemptions = 0;
  Histogram ttft, tpot, e2e;  // time to first token, time per output token, end-to-end latency
};

class Engine {
 public:
  // The model and tokenizer must outlive the engine. Starts the engine thread.
  Engine(const model::Model& m, const tok::Tokenizer& tk, const EngineConfig& cfg);
  ~Engine();  // cancels whatever is still running and joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates the request (sampling parameters, lengths) and queues it. Never throws for bad
  // input: a refusal comes back as http_status + error.
  SubmitResult submit(CompletionRequest req, EventSink sink);
  // Cancels a request (no-op when already finished): its sink gets a final "abort" event.
  void cancel(RequestId id);
  // Stops accepting (submit answers 503), lets in-flight requests finish until the deadline, then
  // cancels the rest. Returns true when everything finished in time.
  bool drain(std::chrono::milliseconds deadline);

  MetricsSnapshot metrics() const;
  const EngineConfig& config() const;
  const model::Model& model() const;
  const tok::Tokenizer& tokenizer() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace brisk::engine
