// OpenAI response bodies and Server-Sent Events framing, built from engine events.
//
// ResponseBuilder holds what one request's answer needs across its events: the id ("cmpl-..." or
// "chatcmpl-..."), the creation time, the model name, and per choice the text, logprobs, finish
// reason and (for completions logprobs) the running text offset. A streaming handler turns each
// engine event into one SSE chunk; a non-streaming one adds every event and renders the whole
// object at the end. Shapes follow OpenAI's API reference:
//   completions: object "text_completion", choices[{text, index, logprobs, finish_reason}]
//   chat:        object "chat.completion" / "chat.completion.chunk",
//                choices[{index, message|delta, logprobs, finish_reason}]
// Generated text may end inside a UTF-8 character or hold invalid bytes (a random model can emit
// any byte token): JSON output replaces invalid sequences with U+FFFD instead of failing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "serve/request.h"

namespace brisk::serve {

// "data: <payload>\n\n" and the terminating "data: [DONE]\n\n".
std::string sse_data(std::string_view payload);
std::string sse_done();
// An SSE comment: ignored by clients, written while a stream is idle so that a vanished client is
// noticed (the second write to a closed socket fails).
std::string sse_keepalive();

// A fresh id: prefix + 24 random alphanumerics.
std::string new_id(std::string_view prefix);

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

class ResponseBuilder {
 public:
  // logprobs: whether the client asked for them (the field is null otherwise).
  ResponseBuilder(Endpoint ep, std::string model, int32_t n, bool logprobs, bool include_usage,
                  int64_t created = 0);

  const std::string& id() const { return id_; }

  // Streaming. Chat streams open with one {"role": "assistant"} chunk per choice.
  std::string role_chunks() const;
  // The SSE chunk for one event, or "" when it carries nothing to show (no text, no logprobs,
  // no finish reason).
  std::string chunk(const engine::Event& e);
  // The final usage chunk (choices: []), sent when stream_options.include_usage is set.
  std::string usage_chunk(const Usage& u) const;

  // Non-streaming: accumulate events, then render the whole object.
  void add(const engine::Event& e);
  std::string full(const Usage& u) const;
  // Whether any choice ended with "abort" (cancelled or shut down).
  bool aborted() const;

 private:
  struct Choice {
    std::string text;
    std::vector<engine::LogprobEntry> logprobs;
    std::optional<std::string> finish_reason;
    int64_t text_offset = 0;  // completions logprobs: offset of the next token's text
  };
  Choice& choice(int32_t index);

  Endpoint ep_;
  std::string model_, id_;
  int64_t created_;
  bool logprobs_, include_usage_;
  std::vector<Choice> choices_;
};

}  // namespace brisk::serve
