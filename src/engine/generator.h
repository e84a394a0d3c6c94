// Single-sequence generation: prompt prefill (in chunks of n_batch tokens), then sample, stream
// text through the UTF-8-safe StreamDecoder and the stop-string matcher, until max_tokens, an
// end-of-generation token or a stop string. Used by `brisk run`; the server (later) batches many
// sequences through the scheduler instead.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/thread_pool.h"
#include "engine/sampler.h"
#include "io/tokenizer/tokenizer.h"
#include "model/model.h"

namespace brisk::engine {

struct GenerateOptions {
  int32_t max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int64_t n_ctx = 0;      // 0: prompt + max_tokens, capped by the model's training context
  int64_t n_batch = 512;  // prompt tokens per forward pass
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids
  std::string text;
  std::string finish_reason;  // "stop" (eog or stop string) or "length"
  int64_t n_prompt = 0;
  double prompt_seconds = 0, gen_seconds = 0;
};

// on_text receives each chunk of text as soon as it is safe to emit; returning false cancels.
GenerateResult generate(const model::Model& m, const tok::Tokenizer& tk,
                        std::span<const int32_t> prompt, const GenerateOptions& opt,
                        ThreadPool& pool, const std::function<bool(std::string_view)>& on_text);

}  // namespace brisk::engine
