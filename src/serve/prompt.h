// ServeRequest -> engine::CompletionRequest: tokenizes a text prompt, renders chat messages
// through the model's chat template (or the family chosen with --chat-template), and settles the
// defaults that depend on the prompt (max_tokens for chat: the rest of the context; a random seed
// when none was given).
#pragma once
#include <cstdint>
#include <optional>

#include "engine/engine.h"
#include "io/tokenizer/chat_template.h"
#include "io/tokenizer/tokenizer.h"
#include "serve/request.h"

namespace brisk::serve {

struct PromptSettings {
  std::optional<tok::ChatFamily> chat_family;  // unset: detect from the tokenizer's template
  int64_t max_model_len = 0;                   // prompt + completion limit; 0: unknown
};

// Throws ApiError: 400 for a chat request the template cannot render (or no template at all) or
// an empty prompt, 413 for a prompt that alone fills the context.
engine::CompletionRequest to_engine_request(const ServeRequest& r, const tok::Tokenizer& tk,
                                            const PromptSettings& s);

}  // namespace brisk::serve
