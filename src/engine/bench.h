// Speed measurements behind `brisk bench`: prompt processing (pp), token generation (tg) and the
// main-memory read bandwidth that bounds generation (the roofline).
//
// pp: one forward pass over n_prompt tokens of one sequence from an empty state, in chunks of at
// most n_batch tokens, logits for the last token only. tg: after a 1-token prompt, n_gen
// single-token forward passes feeding back the argmax (no sampling cost). Each test runs `warmup`
// unmeasured and `reps` measured repetitions; tokens come from a fixed pseudo-random sequence so
// runs are comparable. The probe sums a buffer much larger than the last-level cache with every
// pool thread reading its own slice as several interleaved sequential streams. Owns nothing between
// calls; the probe allocates its buffer per call (1 GiB by default).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"

namespace brisk::engine {

struct Stats {
  double mean = 0, sd = 0, median = 0, min = 0, max = 0;
};
// Sample standard deviation (n - 1); sd = 0 for a single sample. Empty input -> all zero.
Stats summarize(std::span<const double> xs);

struct BenchConfig {
  int64_t n_prompt = 512;  // pp test length
  int64_t n_gen = 128;     // tg test length
  int64_t n_batch = 512;   // most tokens per forward pass in pp
  int reps = 5;
  int warmup = 1;
  uint64_t seed = 1234;  // the token sequence
  void validate() const;
};

struct BenchResult {
  std::string test;          // "pp512", "tg128"
  int64_t n_tokens = 0;      // tokens per repetition
  std::vector<double> secs;  // one per measured repetition
  std::vector<double> tps;   // tokens/s, one per measured repetition
  Stats stats;               // of tps
};

// Called after each repetition: (test, rep index, is_warmup, tokens/s), for progress lines.
using BenchProgress = std::function<void(const std::string&, int, bool, double)>;

// n deterministic token ids in [0, n_vocab).
std::vector<int32_t> bench_tokens(int64_t n, int64_t n_vocab, uint64_t seed);

BenchResult bench_prompt(const model::Model& m, const BenchConfig& cfg, ThreadPool& pool,
                         const BenchProgress& progress = {});
BenchResult bench_generate(const model::Model& m, const BenchConfig& cfg, ThreadPool& pool,
                           const BenchProgress& progress = {});
// Batched decoding as the serving engine runs it: n_seqs sequences, each with an n_prompt-token
// prompt in a paged f16 KV cache (prefilled once, unmeasured), then n_gen steps of one
// forward_batch over one new token of every sequence. Each repetition restarts the decode at
// position n_prompt. Tokens/s counts every sequence's tokens (n_seqs x n_gen per repetition).
// Test name "tg<n_gen>x<n_seqs>".
BenchResult bench_decode_batch(const model::Model& m, const BenchConfig& cfg, int64_t n_seqs,
                               ThreadPool& pool, const BenchProgress& progress = {});

struct BandwidthConfig {
  uint64_t bytes = uint64_t{1} << 30;  // well above any last-level cache
  int reps = 5;
  // Sequential streams each thread reads at once. One stream per core underestimates what the
  // memory system delivers (this machine: 14 GB/s with one, 16.7 with eight, per core); the
  // decode kernels read several, so the roofline must be measured the same way.
  int streams = 8;
  void validate() const;
};

struct BandwidthResult {
  int threads = 0;
  uint64_t bytes = 0;         // bytes read per repetition
  std::vector<double> gbps;   // 1e9 bytes/s, one per repetition
  Stats stats;                // of gbps
  uint64_t checksum = 0;      // sum of the buffer's words, so the reads cannot be optimised away
  uint64_t expected_sum = 0;  // what checksum must equal
};

BandwidthResult probe_bandwidth(const BandwidthConfig& cfg, ThreadPool& pool);

// The compute peaks prompt processing is measured against: every pool thread runs independent
// chains of the active ISA's widest int8 multiply-accumulate (vpdpbusd with VNNI) and f32 FMA.
struct ComputePeak {
  int threads = 0;
  double int8_gmacs = 0;  // 1e9 int8 multiply-accumulates per second (median of reps)
  double f32_gflops = 0;  // 1e9 f32 floating-point operations per second (an FMA is 2)
};
ComputePeak probe_compute(ThreadPool& pool, int reps = 3);

// Multiply-accumulates of one prompt token in the weight matrices (n_params of the matrices
// the token passes through): the numerator of the pp compute fraction.
uint64_t macs_per_token(const model::Model& m);

}  // namespace brisk::engine
