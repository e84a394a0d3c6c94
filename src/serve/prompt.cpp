#include "serve/prompt.h"

#include <random>

#include "core/error.h"
#include "serve/api_error.h"

namespace brisk::serve {
namespace {

std::vector<int32_t> chat_prompt(const ServeRequest& r, const tok::Tokenizer& tk,
                                 const PromptSettings& s) {
  const std::string bos = tk.bos_id() >= 0 ? tk.token_text(tk.bos_id()) : "";
  const std::string eos = tk.eos_id() >= 0 ? tk.token_text(tk.eos_id()) : "";
  std::string rendered;
  try {
    if (s.chat_family) {
      rendered = tok::apply_chat_template(*s.chat_family, r.messages, true, bos, eos);
    } else {
      if (tk.chat_template().empty())
        throw ApiError(400,
                       "the model has no chat template; use /v1/completions, or start the server "
                       "with --chat-template NAME",
                       "messages");
      rendered = tok::apply_chat_template(tk.chat_template(), r.messages, true, bos, eos);
    }
  } catch (const Error& e) {
    throw ApiError(400, std::string("chat template: ") + e.what(), "messages");
  }
  // Templates that spell out the BOS token must not get a second one.
  const bool has_bos = !bos.empty() && rendered.rfind(bos, 0) == 0;
  return tk.encode(rendered, !has_bos, /*parse_special=*/true);
}

}  // namespace

engine::CompletionRequest to_engine_request(const ServeRequest& r, const tok::Tokenizer& tk,
                                            const PromptSettings& s) {
  engine::CompletionRequest q;
  if (r.endpoint == Endpoint::kChat) {
    q.prompt = chat_prompt(r, tk, s);
  } else if (r.prompt_is_ids) {
    q.prompt = r.prompt_ids;  // exactly as given: no BOS added
  } else {
    // Special-token text in a prompt ("<|im_end|>") becomes the token, as other servers do.
    q.prompt = tk.encode(r.prompt_text, /*add_special=*/true, /*parse_special=*/true);
  }
  if (q.prompt.empty()) throw ApiError(400, "the prompt is empty (no tokens)", "prompt");
  const int64_t n_prompt = static_cast<int64_t>(q.prompt.size());
  const char* field = r.endpoint == Endpoint::kChat ? "messages" : "prompt";
  if (s.max_model_len > 0 && n_prompt >= s.max_model_len)
    throw ApiError(413,
                   "the prompt has " + std::to_string(n_prompt) +
                       " tokens, but the context holds " + std::to_string(s.max_model_len) +
                       " (prompt and completion together)",
                   field, "context_length_exceeded");

  if (r.max_tokens) {
    q.max_tokens = *r.max_tokens;
  } else if (r.endpoint == Endpoint::kChat) {
    // OpenAI's chat default: as long as the context allows.
    q.max_tokens = s.max_model_len > 0 ? static_cast<int32_t>(s.max_model_len - n_prompt) : 4096;
  } else {
    q.max_tokens = 16;
  }
  if (s.max_model_len > 0 && n_prompt + q.max_tokens > s.max_model_len)
    throw ApiError(400,
                   "the prompt has " + std::to_string(n_prompt) + " tokens and max_tokens is " +
                       std::to_string(q.max_tokens) + ", more than the context of " +
                       std::to_string(s.max_model_len) + " tokens; lower max_tokens",
                   "max_tokens", "context_length_exceeded");
  q.sampling = r.sampling;
  if (!r.seed_given) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    q.sampling.seed = rng();
  }
  q.stop = r.stop;
  q.n = r.n;
  q.priority = r.priority;
  q.logprobs = r.logprobs;
  q.ignore_eos = r.ignore_eos;
  return q;
}

}  // namespace brisk::serve
