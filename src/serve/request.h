// OpenAI request bodies -> one validated ServeRequest.
//
// parse_request() reads the JSON body of POST /v1/completions or /v1/chat/completions, checks
// every field it knows (type, range, combinations) and throws ApiError (400, naming the field) on
// the first fault. It needs no engine: only the vocabulary size, for token ids. Unknown fields
// are ignored (clients send newer fields than we know); fields we know but do not implement
// (echo, suffix, best_of > 1, tools, non-text response formats) are refused rather than ignored,
// since silently dropping them would change the answer the client expects.
//
// Defaults follow OpenAI: temperature 1, top_p 1, top_k and min_p off, no penalties, n 1,
// max_tokens 16 for completions and "the rest of the context" for chat (decided later, when the
// prompt length is known; here it stays unset).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "io/tokenizer/chat_template.h"

namespace brisk::serve {

enum class Endpoint { kCompletions, kChat };

struct ParseLimits {
  int32_t n_vocab = 0;       // token ids (prompt, logit_bias) must lie in [0, n_vocab)
  int32_t max_n = 128;       // choices per request
  int32_t max_nesting = 64;  // JSON depth (arrays/objects) before the body is refused
};

struct ServeRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;  // empty when the client did not name one

  // The prompt: completions give text or token ids; chat gives messages.
  bool prompt_is_ids = false;
  std::string prompt_text;
  std::vector<int32_t> prompt_ids;
  std::vector<tok::ChatMessage> messages;

  std::optional<int32_t> max_tokens;  // unset: the endpoint's default
  int32_t n = 1;
  engine::SamplingParams sampling;  // OpenAI defaults, seed valid only when seed_given
  bool seed_given = false;
  std::vector<std::string> stop;
  int32_t logprobs = -1;  // -1: none; else the number of top alternatives per token
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int32_t priority = 0;        // non-standard: lower runs first
  bool ignore_eos = false;     // non-standard: generate exactly max_tokens
};

// The sampling parameters an OpenAI request starts from (they differ from brisk run's defaults).
engine::SamplingParams openai_default_sampling();

// Throws ApiError (400) for malformed JSON, a body that is not an object, a wrong type, an
// out-of-range value or an unsupported field, naming the field in `param`.
ServeRequest parse_request(Endpoint ep, std::string_view body, const ParseLimits& lim);

}  // namespace brisk::serve
