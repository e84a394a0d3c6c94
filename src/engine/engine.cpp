#include "engine/engine.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <numeric>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/scheduler.h"
#include "io/tokenizer/tokenizer.h"
#include "kv/kv_cache_manager.h"
#include "model/model.h"
#include "model/paged_kv.h"

namespace brisk::engine {

using Clock = std::chrono::steady_clock;

void EngineConfig::validate() const {
  check(threads >= 0 && threads <= 1024, "threads ", threads, " must be in [0, 1024]");
  check(max_num_seqs >= 1 && max_num_seqs <= 4096, "max-num-seqs ", max_num_seqs,
        " must be in [1, 4096]");
  check(max_batch_tokens >= 1 && max_batch_tokens <= 65536, "max-batch-tokens ", max_batch_tokens,
        " must be in [1, 65536]");
  check(max_waiting >= 0 && max_waiting <= 1000000, "max-waiting ", max_waiting,
        " must be in [0, 1000000]");
  check(max_model_len >= 0 && max_model_len <= (int64_t{1} << 24), "max-model-len ", max_model_len,
        " out of range");
  check(kv_memory_mib >= 0 && kv_memory_mib <= (int64_t{1} << 22), "kv-memory ", kv_memory_mib,
        " MiB out of range");
  check(kv_type == "f16" || kv_type == "q8_0" || kv_type == "f32", "kv-type '", kv_type,
        "' is not one of f16, q8_0, f32");
  check(block_size >= 1 && block_size <= 1024, "block size ", block_size, " must be in [1, 1024]");
}

namespace {

Histogram make_histogram(std::vector<double> bounds) {
  Histogram h;
  h.bounds = std::move(bounds);
  h.counts.assign(h.bounds.size(), 0);
  return h;
}

void observe(Histogram& h, double v) {
  for (size_t i = 0; i < h.bounds.size(); ++i)
    if (v <= h.bounds[i]) ++h.counts[i];
  ++h.count;
  h.sum += v;
}

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

DType kv_dtype(const std::string& s) {
  return s == "f32" ? DType::F32 : s == "q8_0" ? DType::Q8_0 : DType::F16;
}

}  // namespace

struct Engine::Impl {
  // One choice of a request = one scheduler sequence.
  struct Choice {
    uint64_t seq = 0;
    Sampler sampler;
    std::vector<int32_t> history;  // prompt + generated (for penalties)
    tok::StreamDecoder dec;
    StopMatcher stops;
    int64_t generated = 0;
    bool finished = false;
    Choice(uint64_t s, const SamplingParams& p, int32_t n_vocab, const tok::Tokenizer& tk,
           const std::vector<std::string>& stop)
        : seq(s), sampler(p, n_vocab), dec(tk), stops(stop) {}
  };
  struct Req {
    RequestId id = 0;
    CompletionRequest r;
    EventSink sink;
    std::vector<std::unique_ptr<Choice>> choices;
    int32_t n_finished = 0;
    bool forked = false;
    Clock::time_point arrival, first_token;
    bool got_first = false;
    int64_t cached = 0;
  };
  struct Pending {
    RequestId id;
    CompletionRequest r;
    EventSink sink;
    Clock::time_point arrival;
  };

  const model::Model& m;
  const tok::Tokenizer& tk;
  EngineConfig cfg;
  int64_t n_blocks = 0;

  ThreadPool pool;
  std::unique_ptr<model::PagedKvCache> cache;
  std::unique_ptr<kv::KvCacheManager> kvm;
  std::unique_ptr<Scheduler> sched;
  model::InferenceState st;
  std::vector<float> logits;

  // Shared with submit / cancel / drain / metrics (mu).
  mutable std::mutex mu;
  std::condition_variable cv;       // wakes the engine thread
  std::condition_variable idle_cv;  // wakes drain()
  std::deque<Pending> inbox;
  std::vector<RequestId> cancels;
  bool stopping = false, accepting = true;
  int64_t in_flight = 0;  // accepted and not yet finished (inbox + engine)
  RequestId next_id = 1;
  MetricsSnapshot ms;

  // Engine thread only.
  std::unordered_map<RequestId, Req> reqs;
  std::unordered_map<uint64_t, std::pair<RequestId, int32_t>> owner;  // seq -> (request, choice)
  uint64_t next_seq = 1;
  std::thread th;

  Impl(const model::Model& mm, const tok::Tokenizer& t, const EngineConfig& c)
      : m(mm), tk(t), cfg(c), pool(resolve_threads(c.threads)), st(mm.hparams(), 0) {
    cfg.validate();
    const model::HParams& hp = m.hparams();
    if (cfg.max_model_len == 0) cfg.max_model_len = hp.n_ctx_train > 0 ? hp.n_ctx_train : 2048;
    const DType kt = kv_dtype(cfg.kv_type);
    check(kt != DType::Q8_0 || hp.head_dim % 32 == 0, "kv-type q8_0 needs a head size that is a ",
          "multiple of 32; this model's is ", hp.head_dim);
    const uint64_t bb = model::PagedKvCache::block_bytes(hp, cfg.block_size, kt);
    if (cfg.kv_memory_mib == 0) {
      // Enough for every sequence at full length, capped at a quarter of physical memory.
      const uint64_t want = static_cast<uint64_t>(cfg.max_num_seqs) *
                            static_cast<uint64_t>(cfg.max_model_len) /
                            static_cast<uint64_t>(cfg.block_size) * bb;
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
      const uint64_t cap = pages > 0 && page > 0
                               ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) / 4
                               : want;
      cfg.kv_memory_mib = static_cast<int64_t>(std::max<uint64_t>(std::min(want, cap) >> 20, 1));
    }
    n_blocks = static_cast<int64_t>((static_cast<uint64_t>(cfg.kv_memory_mib) << 20) / bb);
    check(n_blocks >= 1, "kv-memory ", cfg.kv_memory_mib, " MiB holds no KV block of ", bb,
          " bytes");
    cache = std::make_unique<model::PagedKvCache>(hp, n_blocks, cfg.block_size, kt);
    kv::KvCacheConfig kc;
    kc.n_blocks = static_cast<int32_t>(std::min<int64_t>(n_blocks, INT32_MAX));
    kc.block_size = cfg.block_size;
    kc.prefix_caching = cfg.prefix_caching;
    kvm = std::make_unique<kv::KvCacheManager>(kc);
    SchedulerConfig sc;
    sc.max_num_seqs = cfg.max_num_seqs;
    sc.max_batch_tokens = cfg.max_batch_tokens;
    // The engine bounds its own queue (submit answers 429); the scheduler's bound only has to hold
    // every sequence of every accepted request (all of them may be waiting after preemptions).
    sc.max_waiting = (cfg.max_waiting + cfg.max_num_seqs) * 128 + 1;
    sc.max_model_len = cfg.max_model_len;
    sched = std::make_unique<Scheduler>(sc, *kvm);
    ms.kv_blocks_total = n_blocks;
    ms.ttft = make_histogram({0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64});
    ms.tpot = make_histogram({0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1});
    ms.e2e = make_histogram({0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128});
    th = std::thread([this] { loop(); });
  }

  static int resolve_threads(int t) {
    if (t > 0) return t;
    const unsigned hc = std::thread::hardware_concurrency();
    return static_cast<int>(std::clamp(hc, 1u, 64u));
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stopping = true;
      accepting = false;
    }
    cv.notify_all();
    if (th.joinable()) th.join();
  }

  SubmitResult submit(CompletionRequest r, EventSink sink) {
    SubmitResult res;
    auto refuse = [&](int status, std::string msg, std::string param = {}) {
      res.http_status = status;
      res.error = std::move(msg);
      res.param = std::move(param);
      std::lock_guard<std::mutex> lk(mu);
      ++ms.requests_rejected;
      return res;
    };
    const int64_t V = m.n_vocab();
    if (r.prompt.empty()) return refuse(400, "the prompt is empty");
    for (int32_t id : r.prompt)
      if (id < 0 || id >= V)
        return refuse(400, "prompt token id " + std::to_string(id) + " is out of range [0, " +
                               std::to_string(V) + ")");
    if (r.max_tokens < 1) return refuse(400, "max_tokens must be at least 1", "max_tokens");
    if (r.n < 1 || r.n > 128) return refuse(400, "n must be in [1, 128]", "n");
    if (r.logprobs > 20) return refuse(400, "logprobs must be at most 20");
    try {
      r.sampling.validate(static_cast<int32_t>(V));
      StopMatcher probe(r.stop);
    } catch (const Error& e) {
      return refuse(400, e.what());
    }
    const int64_t P = static_cast<int64_t>(r.prompt.size());
    if (P >= cfg.max_model_len)
      return refuse(413, "the prompt has " + std::to_string(P) +
                             " tokens; this server's context is " +
                             std::to_string(cfg.max_model_len) + " tokens");
    if (P + r.max_tokens > cfg.max_model_len)
      return refuse(400,
                    "prompt (" + std::to_string(P) + " tokens) + max_tokens (" +
                        std::to_string(r.max_tokens) + ") exceed the context of " +
                        std::to_string(cfg.max_model_len) + " tokens",
                    "max_tokens");
    if (kvm->blocks_needed(P + r.max_tokens) > kvm->n_blocks())
      return refuse(400,
                    "the request needs more KV cache than this server has (--kv-memory " +
                        std::to_string(cfg.kv_memory_mib) + " MiB)",
                    "max_tokens");
    // The n choices are admitted together (Scheduler::fork) and run side by side: more than
    // max_num_seqs of them could never be scheduled as one batch.
    if (r.n > cfg.max_num_seqs)
      return refuse(400,
                    "n is " + std::to_string(r.n) + ", but this server decodes at most " +
                        std::to_string(cfg.max_num_seqs) +
                        " sequences together (--max-num-seqs); lower n",
                    "n");
    // Their KV at the end, all running: the prompt's full blocks are shared (fork), each choice
    // owns the rest (its copy of the partial prompt block, then its completion).
    if (r.n > 1) {
      const int64_t shared = P / kvm->block_size();
      const int64_t own = kvm->blocks_needed(P + r.max_tokens) - shared;
      const int64_t need = shared + r.n * own;
      if (need > kvm->n_blocks())
        return refuse(400,
                      "n = " + std::to_string(r.n) + " choices of " + std::to_string(P) +
                          " prompt tokens + max_tokens " + std::to_string(r.max_tokens) + " need " +
                          std::to_string(need) + " KV blocks at once; this server has " +
                          std::to_string(kvm->n_blocks()) + " (--kv-memory " +
                          std::to_string(cfg.kv_memory_mib) + " MiB); lower n or max_tokens",
                      "n");
    }
    std::lock_guard<std::mutex> lk(mu);
    if (!accepting) {
      res.http_status = 503;
      res.error = "the server is shutting down";
      ++ms.requests_rejected;
      return res;
    }
    if (in_flight >= cfg.max_waiting + cfg.max_num_seqs) {
      res.http_status = 429;
      res.error = "too many requests are queued; retry later";
      ++ms.requests_rejected;
      return res;
    }
    const RequestId id = next_id++;
    inbox.push_back(Pending{id, std::move(r), std::move(sink), Clock::now()});
    ++in_flight;
    res.id = id;
    cv.notify_one();
    return res;
  }

  void cancel(RequestId id) {
    {
      std::lock_guard<std::mutex> lk(mu);
      cancels.push_back(id);
    }
    cv.notify_one();
  }

  bool drain(std::chrono::milliseconds deadline) {
    std::unique_lock<std::mutex> lk(mu);
    accepting = false;
    const bool done = idle_cv.wait_for(lk, deadline, [&] { return in_flight == 0; });
    if (done) return true;
    stopping = true;  // the engine thread aborts whatever is left and exits
    cv.notify_all();
    idle_cv.wait(lk, [&] { return in_flight == 0; });
    return false;
  }

  // ---- engine thread ----

  void loop() {
    std::vector<Pending> fresh;
    std::vector<RequestId> cancelled;
    for (;;) {
      bool stop_now = false;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] {
          return stopping || !inbox.empty() || !cancels.empty() || sched->has_work();
        });
        stop_now = stopping;
        fresh.assign(std::make_move_iterator(inbox.begin()), std::make_move_iterator(inbox.end()));
        inbox.clear();
        cancelled.swap(cancels);
        cancels.clear();
      }
      for (Pending& p : fresh) admit(std::move(p));
      fresh.clear();
      for (RequestId id : cancelled) abort_request(id);
      cancelled.clear();
      if (stop_now) {
        abort_all();
        return;
      }
      if (!sched->has_work()) continue;
      try {
        step();
      } catch (const std::exception& e) {
        // A failed step must not take the server down: abort what was running, keep serving.
        std::fprintf(stderr, "engine: step failed: %s\n", e.what());
        abort_all();
        // Every chunk now belongs to a removed request, so update() accepts the step as done.
        if (pending_update_) {
          pending_update_ = false;
          try {
            sched->update(out_, {});
          } catch (const std::exception& e2) {
            std::fprintf(stderr, "engine: scheduler update failed: %s\n", e2.what());
          }
        }
      }
      publish_gauges();
    }
  }

  void admit(Pending&& p) {
    Req q;
    q.id = p.id;
    q.r = std::move(p.r);
    q.sink = std::move(p.sink);
    q.arrival = p.arrival;
    // Choice 0 runs the prompt; the others fork from it once its prompt is done.
    for (int32_t i = 0; i < q.r.n; ++i) {
      SamplingParams sp = q.r.sampling;
      sp.seed = q.r.sampling.seed + static_cast<uint64_t>(i);
      auto c =
          std::make_unique<Choice>(next_seq++, sp, static_cast<int32_t>(m.n_vocab()), tk, q.r.stop);
      c->history = q.r.prompt;
      owner[c->seq] = {q.id, i};
      q.choices.push_back(std::move(c));
    }
    SeqSpec spec{q.choices[0]->seq, q.r.prompt, q.r.max_tokens, q.r.priority};
    const AddStatus s = sched->add(std::move(spec));
    const RequestId id = q.id;
    reqs.emplace(id, std::move(q));
    if (s != AddStatus::Ok) abort_request(id);  // submit() checked the same limits: a race only
  }

  // Marks a choice finished and gives its sequence's KV blocks back.
  void retire(Req& q, Choice& c) {
    c.finished = true;
    sched->remove(c.seq);
    owner.erase(c.seq);
    ++q.n_finished;
  }

  // The text the decoder and the stop matcher still hold at the end of a choice; sets stopped when
  // it completes a stop string (what follows the stop is dropped).
  static std::string release_held(Choice& c, bool& stopped) {
    StopMatcher::Result r = c.stops.push(c.dec.flush());
    stopped = r.stopped;
    if (!r.stopped) r.emit += c.stops.flush();
    return std::move(r.emit);
  }

  // Ends a choice: frees its sequence, releases held-back text, sends its last event.
  void finish_choice(Req& q, int32_t index, const char* reason, std::string text = {},
                     bool flush = true) {
    Choice& c = *q.choices[static_cast<size_t>(index)];
    if (c.finished) return;
    retire(q, c);
    bool stopped = false;
    if (flush && !c.stops.stopped()) text += release_held(c, stopped);
    Event ev;
    ev.index = index;
    ev.text = std::move(text);
    ev.finish_reason = reason;
    send(q, std::move(ev));
  }

  // Sends an event (and, after the last choice, the request's closing event).
  void send(Req& q, Event ev) {
    const bool last = q.n_finished == q.r.n;
    if (last) {
      ev.done = true;
      ev.prompt_tokens = static_cast<int64_t>(q.r.prompt.size());
      for (const auto& c : q.choices) ev.completion_tokens += c->generated;
      ev.cached_prompt_tokens = q.cached;
    }
    // The request leaves the books before its closing event goes out, so whoever waits for that
    // event sees it gone (in-flight count, metrics).
    if (last) {
      close_request(q, ev.completion_tokens, ev.finish_reason && *ev.finish_reason == "abort");
      publish_gauges();
    }
    bool ok = true;
    try {
      ok = q.sink(ev);
    } catch (...) {
      ok = false;
    }
    if (last) {
      const RequestId id = q.id;
      reqs.erase(id);  // q is gone from here on
      return;
    }
    if (!ok) abort_request(q.id);
  }

  // Counts a finished request in the metrics and the in-flight total.
  void close_request(Req& q, int64_t completion_tokens, bool aborted) {
    const auto now = Clock::now();
    {
      std::lock_guard<std::mutex> lk(mu);
      if (aborted) {
        ++ms.requests_aborted;
      } else {
        ++ms.requests_finished;
        observe(ms.e2e, seconds(q.arrival, now));
        if (q.got_first) {
          observe(ms.ttft, seconds(q.arrival, q.first_token));
          if (completion_tokens > 1)
            observe(ms.tpot,
                    seconds(q.first_token, now) / static_cast<double>(completion_tokens - 1));
        }
      }
      --in_flight;
    }
    idle_cv.notify_all();
  }

  void abort_all() {
    std::vector<RequestId> ids;
    for (auto& [id, r] : reqs) ids.push_back(id);
    for (RequestId id : ids) abort_request(id);
  }

  void abort_request(RequestId id) {
    auto it = reqs.find(id);
    if (it == reqs.end()) return;
    Req& q = it->second;
    // Unfinished choices end with "abort"; the last one closes the request.
    for (int32_t i = 0; i < q.r.n; ++i) {
      if (q.choices[static_cast<size_t>(i)]->finished) continue;
      retire(q, *q.choices[static_cast<size_t>(i)]);
      Event ev;
      ev.index = i;
      ev.finish_reason = "abort";
      const bool last = q.n_finished == q.r.n;
      if (last) {
        send(q, std::move(ev));  // erases q
        return;
      }
      try {
        q.sink(ev);
      } catch (...) {
      }
    }
  }

  void step() {
    out_ = sched->schedule();
    const SchedulerOutput& out = out_;
    pending_update_ = true;
    if (out.chunks.empty()) {
      // Nothing fits this step (every running sequence was preempted, say); try again next one.
      pending_update_ = false;
      sched->update(out, {});
      std::this_thread::yield();
      return;
    }
    for (const kv::BlockCopy& c : out.copies) cache->copy_block(c.src, c.dst);

    std::vector<int32_t>& tokens = batch_tokens_;
    std::vector<model::BatchSeq>& seqs = batch_seqs_;
    tokens.clear();
    seqs.clear();
    for (const ScheduledChunk& ch : out.chunks) {
      model::BatchSeq b;
      b.begin = static_cast<int64_t>(tokens.size());
      b.n = static_cast<int64_t>(ch.tokens.size());
      b.pos0 = ch.pos0;
      b.block_table = ch.block_table;
      b.logits = ch.sample;
      tokens.insert(tokens.end(), ch.tokens.begin(), ch.tokens.end());
      seqs.push_back(b);
    }
    m.forward_batch(tokens, seqs, *cache, st, logits, pool);
    {
      std::lock_guard<std::mutex> lk(mu);
      ms.preemptions = sched->num_preemptions();
      for (const ScheduledChunk& ch : out.chunks) {
        // Prompt tokens count once, when first computed (recomputation after preemption and
        // the generated tokens fed back are not prompt work).
        auto o = owner.find(ch.id);
        if (o == owner.end()) continue;
        const Req& q = reqs.at(o->second.first);
        const int64_t P = static_cast<int64_t>(q.r.prompt.size());
        if (ch.pos0 < P && q.choices[static_cast<size_t>(o->second.second)]->generated == 0)
          ms.prompt_tokens += static_cast<uint64_t>(
              std::min<int64_t>(P, ch.pos0 + static_cast<int64_t>(ch.tokens.size())) - ch.pos0);
      }
    }

    // Sample every sequence whose chunk reached the end of its tokens.
    const size_t V = static_cast<size_t>(m.n_vocab());
    sampled_.clear();
    rows_.clear();
    size_t row = 0;
    for (const ScheduledChunk& ch : out.chunks) {
      if (!ch.sample) continue;
      const std::span<const float> l(logits.data() + row * V, V);
      ++row;
      auto o = owner.find(ch.id);
      if (o == owner.end()) continue;
      Choice& c = *reqs.at(o->second.first).choices[static_cast<size_t>(o->second.second)];
      sampled_.emplace_back(ch.id, c.sampler.sample(l, c.history));
      rows_.push_back(l);
    }
    pending_update_ = false;
    sched->update(out, sampled_);

    for (size_t i = 0; i < sampled_.size(); ++i) {
      const auto [seq, token] = sampled_[i];
      auto o = owner.find(seq);
      if (o == owner.end()) continue;
      const RequestId rid = o->second.first;
      const int32_t index = o->second.second;
      Req& q = reqs.at(rid);
      if (index == 0 && q.r.n > 1 && !q.forked) {
        // n > 1: the other choices start from the same prompt logits, sharing its KV blocks.
        q.forked = true;
        q.cached = sched->num_cached_prompt_tokens(seq);
        for (int32_t k = 1; k < q.r.n; ++k) {
          Choice& c = *q.choices[static_cast<size_t>(k)];
          const int32_t t = c.sampler.sample(rows_[i], c.history);
          sched->fork(seq, c.seq, t);
          if (!on_token(q, k, t, rows_[i])) break;
        }
      }
      if (reqs.count(rid) == 0) continue;
      if (index == 0 && q.r.n == 1 && q.choices[0]->generated == 0)
        q.cached = sched->num_cached_prompt_tokens(seq);
      on_token(q, index, token, rows_[i]);
    }
  }

  // Appends a sampled token to a choice; emits its text; finishes the choice when it ends.
  // Returns false when the request is gone (cancelled by its sink).
  bool on_token(Req& q, int32_t index, int32_t token, std::span<const float> l) {
    Choice& c = *q.choices[static_cast<size_t>(index)];
    if (c.finished) return true;
    const RequestId rid = q.id;
    if (!q.got_first) {
      q.got_first = true;
      q.first_token = Clock::now();
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      ++ms.generated_tokens;
    }
    if (!q.r.ignore_eos && tk.is_eog(token)) {
      // The end-of-generation token is not part of the text (it still counts as generated).
      ++c.generated;
      finish_choice(q, index, "stop");
      return reqs.count(rid) != 0;
    }
    ++c.generated;
    c.history.push_back(token);
    Event ev;
    ev.index = index;
    ev.tokens.push_back(token);
    if (q.r.logprobs >= 0) ev.logprobs.push_back(logprob_entry(l, token, q.r.logprobs));
    StopMatcher::Result r = c.stops.push(c.dec.push(token));
    if (r.stopped) {
      finish_choice(q, index, "stop", std::move(r.emit), false);
      return reqs.count(rid) != 0;
    }
    if (c.generated >= q.r.max_tokens) {
      // The last token's event carries the finish reason (and whatever was held back).
      retire(q, c);
      bool stopped = false;
      r.emit += release_held(c, stopped);
      ev.text = std::move(r.emit);
      ev.finish_reason = stopped ? "stop" : "length";
      send(q, std::move(ev));
      return reqs.count(rid) != 0;
    }
    ev.text = std::move(r.emit);
    send(q, std::move(ev));
    return reqs.count(rid) != 0;
  }

  // The model's log-probabilities (log-softmax of the raw logits) of the chosen token and the k
  // most likely ones.
  LogprobEntry logprob_entry(std::span<const float> l, int32_t token, int32_t k) {
    float mx = -INFINITY;
    for (float x : l) mx = std::max(mx, x);
    double sum = 0;
    for (float x : l) sum += std::exp(static_cast<double>(x - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    LogprobEntry e;
    e.chosen = TokenLogprob{token, tk.token_to_piece(token), l[static_cast<size_t>(token)] - lse};
    if (k > 0) {
      idx_.resize(l.size());
      std::iota(idx_.begin(), idx_.end(), 0);
      const size_t kk = std::min(static_cast<size_t>(k), idx_.size());
      std::partial_sort(idx_.begin(), idx_.begin() + static_cast<std::ptrdiff_t>(kk), idx_.end(),
                        [&](int32_t a, int32_t b) {
                          return l[static_cast<size_t>(a)] > l[static_cast<size_t>(b)] ||
                                 (l[static_cast<size_t>(a)] == l[static_cast<size_t>(b)] && a < b);
                        });
      for (size_t i = 0; i < kk; ++i)
        e.top.push_back(TokenLogprob{idx_[i], tk.token_to_piece(idx_[i]),
                                     l[static_cast<size_t>(idx_[i])] - lse});
    }
    return e;
  }

  void publish_gauges() {
    std::lock_guard<std::mutex> lk(mu);
    ms.running = sched->num_running();
    ms.waiting = sched->num_waiting() + static_cast<int64_t>(inbox.size());
    ms.kv_blocks_used = kvm->n_blocks() - kvm->n_free_blocks();
    ms.prefix_queries = kvm->prefix_queries();
    ms.prefix_hits = kvm->prefix_hits();
    ms.preemptions = sched->num_preemptions();
  }

  SchedulerOutput out_;          // the step in flight
  bool pending_update_ = false;  // out_ still has to go to update()
  std::vector<int32_t> batch_tokens_;
  std::vector<model::BatchSeq> batch_seqs_;
  std::vector<std::pair<uint64_t, int32_t>> sampled_;
  std::vector<std::span<const float>> rows_;
  std::vector<int32_t> idx_;
};

Engine::Engine(const model::Model& m, const tok::Tokenizer& tk, const EngineConfig& cfg)
    : impl_(std::make_unique<Impl>(m, tk, cfg)) {}
Engine::~Engine() = default;

SubmitResult Engine::submit(CompletionRequest req, EventSink sink) {
  return impl_->submit(std::move(req), std::move(sink));
}
void Engine::cancel(RequestId id) {
  impl_->cancel(id);
}
bool Engine::drain(std::chrono::milliseconds deadline) {
  return impl_->drain(deadline);
}

MetricsSnapshot Engine::metrics() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->ms;
}
const EngineConfig& Engine::config() const {
  return impl_->cfg;
}
const model::Model& Engine::model() const {
  return impl_->m;
}
const tok::Tokenizer& Engine::tokenizer() const {
  return impl_->tk;
}

}  // namespace brisk::engine
