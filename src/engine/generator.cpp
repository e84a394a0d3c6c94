#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace brisk::engine {

GenerateResult generate(const model::Model& m, const tok::Tokenizer& tk,
                        std::span<const int32_t> prompt, const GenerateOptions& opt,
                        ThreadPool& pool, const std::function<bool(std::string_view)>& on_text) {
  using clock = std::chrono::steady_clock;
  check(!prompt.empty(), "empty prompt: nothing to condition on (pass text or keep the BOS token)");
  check(opt.max_tokens >= 0, "max tokens must be >= 0, got ", opt.max_tokens);
  check(opt.n_batch >= 1, "batch size must be >= 1, got ", opt.n_batch);
  opt.sampling.validate(static_cast<int32_t>(m.n_vocab()));
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  int64_t n_ctx = opt.n_ctx > 0
                      ? opt.n_ctx
                      : std::min<int64_t>(n_prompt + opt.max_tokens, m.hparams().n_ctx_train);
  n_ctx = std::max<int64_t>(n_ctx, 1);
  if (n_prompt > n_ctx)
    fail("prompt of ", n_prompt, " tokens does not fit the context of ", n_ctx, " tokens");

  GenerateResult res;
  res.n_prompt = n_prompt;
  model::InferenceState st(m.hparams(), n_ctx);
  std::vector<float> logits;
  Sampler sampler(opt.sampling, static_cast<int32_t>(m.n_vocab()));
  tok::StreamDecoder dec(tk);
  StopMatcher stops(opt.stop);
  std::vector<int32_t> history(prompt.begin(), prompt.end());

  auto t0 = clock::now();
  for (int64_t i = 0; i < n_prompt; i += opt.n_batch) {
    const int64_t n = std::min(opt.n_batch, n_prompt - i);
    m.forward(prompt.subspan(static_cast<size_t>(i), static_cast<size_t>(n)), st, logits, false,
              pool);
  }
  auto t1 = clock::now();
  res.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();

  res.finish_reason = "length";
  bool cancelled = false, stop_hit = false;
  auto emit = [&](const std::string& s) {
    if (s.empty() || cancelled) return;
    res.text += s;
    if (!on_text(s)) cancelled = true;
  };
  for (int32_t i = 0; i < opt.max_tokens && !cancelled; ++i) {
    const int32_t id = sampler.sample(logits, history);
    if (!opt.ignore_eos && tk.is_eog(id)) {
      res.finish_reason = "stop";
      break;
    }
    res.tokens.push_back(id);
    history.push_back(id);
    StopMatcher::Result r = stops.push(dec.push(id));
    emit(r.emit);
    if (r.stopped) {
      res.finish_reason = "stop";
      stop_hit = true;
      break;
    }
    if (i + 1 == opt.max_tokens || st.n_past >= n_ctx) break;  // done, or context full ("length")
    const int32_t next[1] = {id};
    m.forward(next, st, logits, false, pool);
  }
  if (!stop_hit) {
    // Release what the decoder and the stop matcher held back.
    StopMatcher::Result r = stops.push(dec.flush());
    emit(r.emit);
    if (!r.stopped) emit(stops.flush());
  }
  res.gen_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace brisk::engine
