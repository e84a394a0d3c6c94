// brisk bench internals: the weight bytes a decode step reads (hand-counted for tied and untied
// output), the pp/tg runner's shape of results, and the bandwidth probe. No timing assertions:
// the machine running the tests may be slow or shared.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "engine/bench.h"
#include "model/model.h"
#include "model/synth.h"

using namespace brisk;

namespace {

constexpr int64_t kDim = 64, kLayers = 2, kHeads = 4, kKvHeads = 2, kFfn = 128;

std::unique_ptr<model::Model> tiny(bool tied, DType type) {
  model::SynthConfig c;
  c.dim = kDim;
  c.layers = kLayers;
  c.heads = kHeads;
  c.kv_heads = kKvHeads;
  c.ffn = kFfn;
  c.tied = tied;
  c.type = type;
  ThreadPool pool(1);
  return model::Model::load(model::synth_model(c, pool));
}

// Q8_0: 34 bytes per 32 elements, so a row of 64 is 68 bytes and a row of 128 is 136.
uint64_t hand_count(bool tied, int64_t n_vocab) {
  const uint64_t r64 = 68, r128 = 136;
  const uint64_t kv_dim = kKvHeads * (kDim / kHeads);
  const uint64_t per_layer = kDim * r64          // wq
                             + 2 * kv_dim * r64  // wk, wv
                             + kDim * r64        // wo
                             + 2 * kFfn * r64    // gate, up
                             + kDim * r128       // down
                             + 2 * kDim * 4;     // attn_norm, ffn_norm (f32)
  const uint64_t output = static_cast<uint64_t>(n_vocab) * r64 + kDim * 4;  // + output_norm
  return kLayers * per_layer + output + (tied ? 0 : r64);  // untied: one embedding row
}

}  // namespace

TEST(Bench, BytesPerTokenTiedAndUntied) {
  for (bool tied : {true, false}) {
    auto m = tiny(tied, DType::Q8_0);
    EXPECT_EQ(m->bytes_per_token(), hand_count(tied, m->n_vocab())) << "tied=" << tied;
    // Everything but (for untied models) all embedding rows but one is read per token.
    if (tied)
      EXPECT_EQ(m->bytes_per_token(), m->weight_bytes());
    else
      EXPECT_LT(m->bytes_per_token(), m->weight_bytes());
  }
}

TEST(Bench, RunnerReturnsRequestedRepetitions) {
  auto m = tiny(true, DType::Q4_0);
  ThreadPool pool(2);
  engine::BenchConfig cfg;
  cfg.n_prompt = 12;
  cfg.n_batch = 5;  // three chunks
  cfg.n_gen = 4;
  cfg.reps = 3;
  cfg.warmup = 1;
  int calls = 0, warm_calls = 0;
  auto progress = [&](const std::string&, int, bool warm, double tps) {
    ++calls;
    warm_calls += warm;
    EXPECT_TRUE(std::isfinite(tps) && tps > 0);
  };
  for (bool gen : {false, true}) {
    calls = warm_calls = 0;
    const engine::BenchResult r = gen ? engine::bench_generate(*m, cfg, pool, progress)
                                      : engine::bench_prompt(*m, cfg, pool, progress);
    EXPECT_EQ(r.test, gen ? "tg4" : "pp12");
    EXPECT_EQ(r.n_tokens, gen ? 4 : 12);
    ASSERT_EQ(r.tps.size(), 3u);
    ASSERT_EQ(r.secs.size(), 3u);
    EXPECT_EQ(calls, 4);
    EXPECT_EQ(warm_calls, 1);
    for (double x : r.tps) EXPECT_TRUE(std::isfinite(x) && x > 0);
    for (double x : r.secs) EXPECT_TRUE(std::isfinite(x) && x >= 0);
    EXPECT_TRUE(std::isfinite(r.stats.mean) && r.stats.mean > 0);
    EXPECT_TRUE(std::isfinite(r.stats.sd) && r.stats.sd >= 0);
    EXPECT_GE(r.stats.median, r.stats.min);
    EXPECT_LE(r.stats.median, r.stats.max);
  }
}

TEST(Bench, TokensAreDeterministicAndInRange) {
  const auto a = engine::bench_tokens(100, 37, 5), b = engine::bench_tokens(100, 37, 5);
  EXPECT_EQ(a, b);
  for (int32_t id : a) EXPECT_TRUE(id >= 0 && id < 37);
}

TEST(Bench, Summarize) {
  const std::vector<double> xs = {4, 1, 3, 2};
  const engine::Stats s = engine::summarize(xs);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_NEAR(s.sd, std::sqrt(5.0 / 3.0), 1e-12);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 4);
  const std::vector<double> one = {7};
  EXPECT_EQ(engine::summarize(one).sd, 0);
  EXPECT_EQ(engine::summarize(one).median, 7);
}

TEST(Bench, BandwidthProbeSmallBuffer) {
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    engine::BandwidthConfig cfg;
    cfg.bytes = (uint64_t{1} << 20) + 136;  // not a multiple of the slices
    cfg.reps = 3;
    const engine::BandwidthResult r = engine::probe_bandwidth(cfg, pool);
    EXPECT_EQ(r.threads, threads);
    EXPECT_EQ(r.gbps.size(), 3u);
    EXPECT_GT(r.bytes, 0u);
    EXPECT_LE(r.bytes, cfg.bytes);
    EXPECT_EQ(r.checksum, r.expected_sum);
    for (double x : r.gbps) EXPECT_TRUE(std::isfinite(x) && x > 0);
    EXPECT_TRUE(std::isfinite(r.stats.median) && r.stats.median > 0);
  }
}

TEST(Bench, BadConfigIsAnError) {
  engine::BenchConfig cfg;
  cfg.reps = 0;
  EXPECT_THROW(cfg.validate(), Error);
  cfg = {};
  cfg.n_prompt = 0;
  EXPECT_THROW(cfg.validate(), Error);
  engine::BandwidthConfig bc;
  bc.bytes = 100;
  ThreadPool pool(1);
  EXPECT_THROW(engine::probe_bandwidth(bc, pool), Error);
  bc = {};
  bc.streams = 0;
  EXPECT_THROW(engine::probe_bandwidth(bc, pool), Error);
}

// Any number of streams reads every word exactly once (the checksum covers the remainder too).
TEST(Bench, BandwidthProbeStreamsCoverTheBuffer) {
  ThreadPool pool(2);
  for (int streams : {1, 3, 8}) {
    engine::BandwidthConfig bc;
    bc.bytes = (uint64_t{1} << 20) + 4096 + 64;
    bc.reps = 1;
    bc.streams = streams;
    const engine::BandwidthResult r = engine::probe_bandwidth(bc, pool);
    EXPECT_EQ(r.checksum, r.expected_sum) << streams << " streams";
  }
}
