// The serving engine (engine/engine.h) on a real (random-weight) model: requests served together
// give the same greedy tokens as served alone and as the single-sequence generator; n > 1 choices
// share the prompt; a KV cache too small for the load preempts and recomputes without changing any
// answer; refusals (429 / 413 / 400 / 503), cancellation and draining free every block.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/synth_model.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/generator.h"
#include "io/tokenizer/tokenizer.h"
#include "model/model.h"
#include "model/synth.h"

using namespace brisk;
using namespace std::chrono_literals;

namespace {

using Fixture = test::LoadedModel;

const Fixture& fixture() {
  static Fixture f = test::load_synth_model(256, 512, 512);
  return f;
}

// Collects a request's events; wait() blocks until its closing event.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::string> text, finish;
  bool done = false;
  int64_t prompt_tokens = 0, completion_tokens = 0, cached = 0;
  std::atomic<int> cancel_after{-1};  // return false from the sink after this many events
  int events = 0;

  explicit Collector(int n)
      : tokens(static_cast<size_t>(n)),
        text(static_cast<size_t>(n)),
        finish(static_cast<size_t>(n)) {}
  engine::EventSink sink() {
    return [this](const engine::Event& e) {
      std::lock_guard<std::mutex> lk(mu);
      auto i = static_cast<size_t>(e.index);
      tokens[i].insert(tokens[i].end(), e.tokens.begin(), e.tokens.end());
      text[i] += e.text;
      if (e.finish_reason) finish[i] = *e.finish_reason;
      if (e.done) {
        done = true;
        prompt_tokens = e.prompt_tokens;
        completion_tokens = e.completion_tokens;
        cached = e.cached_prompt_tokens;
      }
      ++events;
      cv.notify_all();
      return cancel_after < 0 || events < cancel_after;
    };
  }
  bool wait(std::chrono::seconds limit = 60s) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, limit, [&] { return done; });
  }
};

std::vector<int32_t> prompt_of(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int32_t& x : p) x = static_cast<int32_t>(3 + rng() % 250);  // byte-ish tokens, no specials
  return p;
}

engine::CompletionRequest greedy(std::vector<int32_t> prompt, int32_t max_tokens) {
  engine::CompletionRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  r.ignore_eos = true;
  return r;
}

std::vector<int32_t> run_alone(engine::Engine& e, const engine::CompletionRequest& r) {
  Collector c(r.n);
  const engine::SubmitResult s = e.submit(r, c.sink());
  EXPECT_TRUE(s.id.has_value()) << s.error;
  EXPECT_TRUE(c.wait());
  return c.tokens[0];
}

// Submits every request at once and waits for all of them (they are served together).
std::vector<std::unique_ptr<Collector>> run_together(
    engine::Engine& e, const std::vector<engine::CompletionRequest>& reqs) {
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& r : reqs) {
    cs.push_back(std::make_unique<Collector>(r.n));
    EXPECT_TRUE(e.submit(r, cs.back()->sink()).id);
  }
  for (auto& c : cs) EXPECT_TRUE(c->wait());
  return cs;
}

void expect_all_blocks_free(engine::Engine& e) {
  // Gauges are published after each step; give the engine thread a moment after the last event.
  for (int i = 0; i < 200 && (e.metrics().kv_blocks_used != 0 || e.metrics().running != 0); ++i)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(e.metrics().kv_blocks_used, 0);
  EXPECT_EQ(e.metrics().running, 0);
  EXPECT_EQ(e.metrics().waiting, 0);
}

}  // namespace

TEST(Engine, ConcurrentGreedyEqualsAloneAndGenerator) {
  const Fixture& f = fixture();
  engine::EngineConfig cfg;
  cfg.threads = 2;
  cfg.kv_type = "f32";        // the single-sequence generator keeps f32 K/V
  cfg.max_batch_tokens = 48;  // prompts go in several chunks
  cfg.kv_memory_mib = 64;
  engine::Engine e(*f.m, *f.tk, cfg);

  std::vector<engine::CompletionRequest> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back(greedy(prompt_of(10 + 17 * i, 7 + i), 12 + i));

  std::vector<std::vector<int32_t>> alone;
  for (const auto& r : reqs) alone.push_back(run_alone(e, r));

  ThreadPool pool(2);
  for (size_t i = 0; i < reqs.size(); ++i) {
    engine::GenerateOptions go;
    go.max_tokens = reqs[i].max_tokens;
    go.sampling.temperature = 0;
    go.ignore_eos = true;
    const engine::GenerateResult g = engine::generate(*f.m, *f.tk, reqs[i].prompt, go, pool,
                                                      [](std::string_view) { return true; });
    EXPECT_EQ(g.tokens, alone[i]) << "request " << i;
  }

  const auto cs = run_together(e, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(cs[i]->done);
    EXPECT_EQ(cs[i]->tokens[0], alone[i]) << "request " << i;
    EXPECT_EQ(cs[i]->finish[0], "length");
    EXPECT_EQ(cs[i]->completion_tokens, reqs[i].max_tokens);
    EXPECT_EQ(cs[i]->prompt_tokens, static_cast<int64_t>(reqs[i].prompt.size()));
  }
  expect_all_blocks_free(e);
  EXPECT_GT(e.metrics().prefix_hits, 0u);  // the second round found its prompts cached
}

TEST(Engine, PreemptionUnderATinyCacheKeepsAnswers) {
  const Fixture& f = fixture();
  engine::EngineConfig big;
  big.threads = 2;
  big.kv_memory_mib = 64;
  std::vector<engine::CompletionRequest> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(greedy(prompt_of(140 + 9 * i, 100 + i), 60));
  std::vector<std::vector<int32_t>> want;
  {
    engine::Engine e(*f.m, *f.tk, big);
    for (const auto& r : reqs) want.push_back(run_alone(e, r));
  }
  engine::EngineConfig small = big;
  // Room for about four of the six sequences at full length (13-16 blocks each): the rest wait,
  // and the running ones preempt each other as they grow.
  const uint64_t per_block = model::PagedKvCache::block_bytes(f.m->hparams(), 16, DType::F16);
  small.kv_memory_mib = 1;
  const int64_t blocks = static_cast<int64_t>((1u << 20) / per_block);
  ASSERT_GE(blocks, 16) << "the test needs a cache that fits one request";
  ASSERT_LE(blocks, 80) << "the test needs a cache that cannot fit all requests";
  engine::Engine e(*f.m, *f.tk, small);
  const auto cs = run_together(e, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(cs[i]->done);
    EXPECT_EQ(cs[i]->tokens[0], want[i]) << "request " << i;
  }
  EXPECT_GT(e.metrics().preemptions, 0u);
  expect_all_blocks_free(e);
}

TEST(Engine, NChoicesShareThePrompt) {
  const Fixture& f = fixture();
  engine::EngineConfig cfg;
  cfg.threads = 2;
  cfg.kv_memory_mib = 16;
  engine::Engine e(*f.m, *f.tk, cfg);
  engine::CompletionRequest r = greedy(prompt_of(37, 3), 10);
  const std::vector<int32_t> one = run_alone(e, r);
  r.n = 3;
  Collector c(3);
  ASSERT_TRUE(e.submit(r, c.sink()).id);
  ASSERT_TRUE(c.wait());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.tokens[static_cast<size_t>(i)], one) << "choice " << i;
  EXPECT_EQ(c.completion_tokens, 30);
  // Sampled choices with different seeds differ (with overwhelming probability) but each one is
  // reproducible.
  r.sampling.temperature = 1.5f;
  r.sampling.top_k = 0;
  r.sampling.top_p = 1;
  r.sampling.min_p = 0;
  r.sampling.seed = 11;
  Collector a(3), b(3);
  ASSERT_TRUE(e.submit(r, a.sink()).id);
  ASSERT_TRUE(a.wait());
  ASSERT_TRUE(e.submit(r, b.sink()).id);
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens[0], a.tokens[1]);
  expect_all_blocks_free(e);
}

// n choices run side by side: more of them than max_num_seqs, or more KV than the pool holds
// with all of them at full length, is refused up front (400 naming "n") instead of being queued
// for ever. The KV bound counts the prompt's full blocks once (the choices share them).
TEST(Engine, NChoicesBeyondTheLimitsAreRefused) {
  const Fixture& f = fixture();
  engine::EngineConfig cfg;
  cfg.threads = 1;
  cfg.max_num_seqs = 4;
  cfg.kv_memory_mib = 1;
  cfg.kv_type = "f32";  // 1 MiB of f32 KV: a pool of a few dozen blocks
  engine::Engine e(*f.m, *f.tk, cfg);
  Collector dummy(8);
  engine::CompletionRequest r = greedy(prompt_of(100, 4), 8);
  r.n = 5;
  engine::SubmitResult s = e.submit(r, dummy.sink());
  EXPECT_FALSE(s.id);
  EXPECT_EQ(s.http_status, 400);
  EXPECT_EQ(s.param, "n");
  EXPECT_NE(s.error.find("max-num-seqs"), std::string::npos) << s.error;

  // 100 prompt tokens: 6 full blocks of 16, shared. A choice of b blocks in all owns b - 6.
  const int64_t total = e.metrics().kv_blocks_total, shared = 100 / cfg.block_size;
  const int64_t fits = (total + shared) / 2;  // the most blocks per choice for n = 2
  ASSERT_LE((fits + 1) * cfg.block_size, 512) << "the pool must be smaller than 2 contexts";
  ASSERT_GT(2 * fits, total) << "then the prompt's sharing decides, not the naive n x length";
  r.n = 2;
  r.max_tokens = static_cast<int32_t>((fits + 1) * cfg.block_size - 100);
  s = e.submit(r, dummy.sink());
  EXPECT_FALSE(s.id);
  EXPECT_EQ(s.http_status, 400);
  EXPECT_EQ(s.param, "n");
  EXPECT_NE(s.error.find("KV blocks"), std::string::npos) << s.error;
  // One choice of that length fits; so do two that are one block shorter.
  r.n = 1;
  Collector one(1);
  s = e.submit(r, one.sink());
  ASSERT_TRUE(s.id) << s.error;
  e.cancel(*s.id);
  ASSERT_TRUE(one.wait());
  r.n = 2;
  r.max_tokens -= cfg.block_size;
  Collector two(2);
  s = e.submit(r, two.sink());
  ASSERT_TRUE(s.id) << s.error;
  e.cancel(*s.id);
  ASSERT_TRUE(two.wait());
  expect_all_blocks_free(e);
}

TEST(Engine, RefusalsCancellationAndDrain) {
  const Fixture& f = fixture();
  engine::EngineConfig cfg;
  cfg.threads = 1;
  cfg.kv_memory_mib = 8;
  cfg.max_num_seqs = 2;
  cfg.max_waiting = 2;
  engine::Engine e(*f.m, *f.tk, cfg);
  Collector dummy(1);
  auto status = [&](engine::CompletionRequest r) {
    return e.submit(std::move(r), dummy.sink()).http_status;
  };
  EXPECT_EQ(status(greedy({}, 4)), 400);
  EXPECT_EQ(status(greedy({1, 999999}, 4)), 400);
  EXPECT_EQ(status(greedy(prompt_of(600, 1), 4)), 413);  // context is 512
  EXPECT_EQ(status(greedy(prompt_of(500, 1), 100)), 400);
  engine::CompletionRequest bad = greedy(prompt_of(5, 1), 4);
  bad.sampling.top_p = 2;
  EXPECT_EQ(status(bad), 400);
  bad = greedy(prompt_of(5, 1), 4);
  bad.stop = {""};
  EXPECT_EQ(status(bad), 400);

  // A sink that says "stop" after 3 events cancels its request; so does cancel().
  Collector quitter(1);
  quitter.cancel_after = 3;
  ASSERT_TRUE(e.submit(greedy(prompt_of(20, 2), 200), quitter.sink()).id);
  ASSERT_TRUE(quitter.wait());
  EXPECT_EQ(quitter.finish[0], "abort");
  Collector cancelled(1);
  const auto id = e.submit(greedy(prompt_of(20, 3), 400), cancelled.sink()).id;
  ASSERT_TRUE(id);
  e.cancel(*id);
  ASSERT_TRUE(cancelled.wait());
  EXPECT_EQ(cancelled.finish[0], "abort");
  expect_all_blocks_free(e);

  // Queue bound: max_num_seqs + max_waiting in flight, the next one is refused with 429.
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<bool> was_accepted;
  int accepted = 0, refused = 0;
  for (int i = 0; i < 8; ++i) {
    cs.push_back(std::make_unique<Collector>(1));
    const engine::SubmitResult s = e.submit(greedy(prompt_of(30, 10 + i), 60), cs.back()->sink());
    was_accepted.push_back(s.id.has_value());
    if (s.id) ++accepted;
    if (s.http_status == 429) ++refused;
  }
  EXPECT_EQ(accepted, 4);
  EXPECT_EQ(refused, 4);
  // Drain: accepted requests finish, new ones get 503.
  std::thread t([&] { EXPECT_TRUE(e.drain(60s)); });
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(status(greedy(prompt_of(5, 1), 4)), 503);
  t.join();
  for (size_t i = 0; i < cs.size(); ++i)
    if (was_accepted[i]) {
      ASSERT_TRUE(cs[i]->wait(1s));
      std::lock_guard<std::mutex> lk(cs[i]->mu);
      EXPECT_EQ(cs[i]->finish[0], "length");
    }
  expect_all_blocks_free(e);
}
