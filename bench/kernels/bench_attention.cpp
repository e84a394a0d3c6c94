// Micro-benchmark of ops::attention per kernel variant and pool size, on TinyLlama-like heads
// (32 query heads, 4 KV heads, head_dim 64, f32 contiguous cache unless named f16):
//   prompt/T512       512 new tokens at positions 0..511 (causal)
//   decode/ctxN       one new token at position N-1 (N keys), N = 512, 4096, 16384
//   decode_batch/BxN  attention_batch over B sequences of one new token each at position N-1, K/V
//                     f16 in a paged cache of 16-token blocks (the serving engine's decode step);
//                     calls cycle over 22 layers' caches, so K/V come from memory as in a model
//   .../mqa8          8 query heads sharing one KV head: the automatic key split (flash-decoding)
//                     against .../nosplit, where one thread gets the only work item
// Effective GFLOP/s counts 4 * head_dim flops per (query head, visible key): 2 for q.k, 2 for p.v
// (the exp and the bookkeeping are not counted). naive_old is the previous ops::attention (one
// (token, head) at a time, scalar, scores materialised), kept here as the baseline.
// Wall-clock time per call (the pool's threads do the work), min of the repetitions' means.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "bench_register.h"
#include "core/half.h"
#include "core/huge_buffer.h"
#include "core/thread_pool.h"
#include "kernels/cpu/isa.h"
#include "ops/attention.h"

using namespace brisk;
using kernels::Isa;

namespace {

constexpr int kHeadDim = 64;

// The previous ops::attention, for comparison: q (T, n_head, d), caches (n_ctx, n_head_kv, d).
void naive_attention(const float* q, int64_t T, int64_t pos0, const float* k_cache,
                     const float* v_cache, const ops::AttentionShape& s, float* out,
                     std::vector<float>& scratch, ThreadPool& pool) {
  const int64_t n_kv = pos0 + T;
  const int group = s.n_head / s.n_head_kv;
  const int64_t kv_stride = static_cast<int64_t>(s.n_head_kv) * s.head_dim;
  const int64_t q_stride = static_cast<int64_t>(s.n_head) * s.head_dim;
  scratch.resize(static_cast<size_t>(pool.size() * n_kv));
  pool.parallel_for(T * s.n_head, [&](int64_t b, int64_t e, int tid) {
    float* sc = scratch.data() + static_cast<size_t>(tid) * static_cast<size_t>(n_kv);
    for (int64_t item = b; item < e; ++item) {
      const int64_t t = item / s.n_head;
      const int h = static_cast<int>(item % s.n_head);
      const int hk = h / group;
      const int64_t p = pos0 + t;
      const int64_t j0 = s.sliding_window > 0 ? std::max<int64_t>(0, p - s.sliding_window + 1) : 0;
      const float* qv = q + t * q_stride + static_cast<int64_t>(h) * s.head_dim;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = j0; j <= p; ++j) {
        const float* kv = k_cache + j * kv_stride + static_cast<int64_t>(hk) * s.head_dim;
        float d = 0;
        for (int i = 0; i < s.head_dim; ++i) d += qv[i] * kv[i];
        sc[j] = d * s.scale;
        mx = std::max(mx, sc[j]);
      }
      double sum = 0;
      for (int64_t j = j0; j <= p; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = out + t * q_stride + static_cast<int64_t>(h) * s.head_dim;
      std::fill(o, o + s.head_dim, 0.0f);
      for (int64_t j = j0; j <= p; ++j) {
        const float w = sc[j] * inv;
        const float* vv = v_cache + j * kv_stride + static_cast<int64_t>(hk) * s.head_dim;
        for (int i = 0; i < s.head_dim; ++i) o[i] += w * vv[i];
      }
    }
  });
}

struct Shape {
  const char* name;
  int64_t T, pos0;
  DType kv_type;
  int heads = 32, heads_kv = 4;
  int kv_chunks = 0;  // 0: ops::attention chooses; 1: never split the keys
};

// isa < 0: the naive baseline.
void bench(benchmark::State& state, Shape sh, int isa, int threads) {
  const int64_t ctx = sh.pos0 + sh.T, row = sh.heads_kv * kHeadDim;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(sh.T * sh.heads * kHeadDim)), k(ctx * row), v(ctx * row);
  for (auto* x : {&q, &k, &v})
    for (float& f : *x) f = nd(rng);
  std::vector<uint16_t> k16(k.size()), v16(v.size());
  for (size_t i = 0; i < k.size(); ++i) k16[i] = f32_to_f16(k[i]), v16[i] = f32_to_f16(v[i]);
  kernels::KvView kv = ops::contiguous_kv(k.data(), ctx, row),
                  vv = ops::contiguous_kv(v.data(), ctx, row);
  if (sh.kv_type == DType::F16) {
    kv.type = vv.type = DType::F16;
    kv.base = k16.data();
    vv.base = v16.data();
  }
  std::vector<float> out(q.size()), scratch;
  ThreadPool pool(threads);
  const ops::AttentionShape s{sh.heads, sh.heads_kv, kHeadDim, 0,
                              1.0f / std::sqrt(float(kHeadDim))};
  ops::AttentionOptions opt;
  if (isa >= 0) opt.isa = static_cast<Isa>(isa);
  opt.kv_chunks = sh.kv_chunks;
  auto call = [&] {
    if (isa < 0) {
      naive_attention(q.data(), sh.T, sh.pos0, k.data(), v.data(), s, out.data(), scratch, pool);
    } else {
      ops::attention(q.data(), sh.T, sh.pos0, kv, vv, s, out.data(), scratch, pool, opt);
    }
  };
  call();  // warm the scratch and the caches
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    benchmark::ClobberMemory();
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // Visible keys summed over the query tokens: pos0 + t + 1 for token t.
  const double keys = static_cast<double>(sh.T) * static_cast<double>(sh.pos0) +
                      static_cast<double>(sh.T) * static_cast<double>(sh.T + 1) / 2;
  const double flops = 4.0 * kHeadDim * sh.heads * keys;
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// attention_batch: B sequences, one query token each at position n_keys - 1, paged f16 K/V.
void bench_decode_batch(benchmark::State& state, int64_t B, int64_t n_keys, int threads) {
  constexpr int kHeads = 32, kHeadsKv = 4, kBlock = 16;
  const int64_t row = kHeadsKv * kHeadDim, per_seq = (n_keys + kBlock - 1) / kBlock;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(B * kHeads * kHeadDim)), out(q.size()), scratch;
  constexpr int kLayers = 22;
  const size_t layer = static_cast<size_t>(B * per_seq * kBlock * row);
  // Huge-page backed like the engine's PagedKvCache, so TLB misses are what a model sees.
  HugeBuffer kmem(layer * kLayers * 2), vmem(layer * kLayers * 2);
  const std::span<uint16_t> k(reinterpret_cast<uint16_t*>(kmem.data()), layer * kLayers),
      v(reinterpret_cast<uint16_t*>(vmem.data()), layer * kLayers);
  for (float& f : q) f = nd(rng);
  for (std::span<uint16_t> x : {k, v})
    for (uint16_t& h : x) h = f32_to_f16(nd(rng));
  // Sequence i's blocks interleaved with the others' (block b of sequence i is physical block
  // b * B + i), as a pool shared by many requests hands them out.
  std::vector<int32_t> tables(static_cast<size_t>(B * per_seq));
  for (int64_t i = 0; i < B; ++i)
    for (int64_t b = 0; b < per_seq; ++b)
      tables[static_cast<size_t>(i * per_seq + b)] = static_cast<int32_t>(b * B + i);
  std::vector<ops::AttnSeq> seqs(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {
    kernels::KvView kv;
    kv.type = DType::F16;
    kv.block_tokens = kBlock;
    kv.block_stride = kBlock * row;
    kv.token_stride = row;
    kv.block_table = tables.data() + i * per_seq;
    kernels::KvView vv = kv;
    kv.base = k.data();
    vv.base = v.data();
    seqs[static_cast<size_t>(i)] = ops::AttnSeq{q.data() + i * kHeads * kHeadDim,
                                                out.data() + i * kHeads * kHeadDim,
                                                1,
                                                n_keys - 1,
                                                kv,
                                                vv};
  }
  ThreadPool pool(threads);
  const ops::AttentionShape s{kHeads, kHeadsKv, kHeadDim, 0, 1.0f / std::sqrt(float(kHeadDim))};
  std::vector<int64_t> items;
  ops::attention_batch(seqs, s, scratch, items, pool);
  int l = 0;
  for (auto _ : state) {
    l = (l + 1) % kLayers;
    for (ops::AttnSeq& a : seqs) {
      a.k.base = k.data() + layer * static_cast<size_t>(l);
      a.v.base = v.data() + layer * static_cast<size_t>(l);
    }
    const auto t0 = std::chrono::steady_clock::now();
    ops::attention_batch(seqs, s, scratch, items, pool);
    benchmark::ClobberMemory();
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double flops = 4.0 * kHeadDim * kHeads * static_cast<double>(B * n_keys);
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

void register_attention_benchmarks() {
  for (int64_t B : {1, 16})
    for (int threads : {1, 2})
      benchmark::RegisterBenchmark(("attention/decode_batch/" + std::to_string(B) +
                                    "x160/f16/threads:" + std::to_string(threads))
                                       .c_str(),
                                   bench_decode_batch, B, int64_t{160}, threads)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  const Shape shapes[] = {{"prompt/T512", 512, 0, DType::F32},
                          {"decode/ctx512", 1, 511, DType::F32},
                          {"decode/ctx4096", 1, 4095, DType::F32},
                          {"decode/ctx16384", 1, 16383, DType::F32},
                          {"decode/ctx16384/f16", 1, 16383, DType::F16},
                          // One KV head (multi-query): one work item unless the keys are split.
                          {"decode/ctx16384/mqa8", 1, 16383, DType::F32, 8, 1},
                          {"decode/ctx16384/mqa8/nosplit", 1, 16383, DType::F32, 8, 1, 1}};
  for (const Shape& sh : shapes)
    for (int threads : {1, 2}) {
      const std::string suffix = "/threads:" + std::to_string(threads);
      for (int v = 0; v < kernels::kIsaCount; ++v) {
        if (!kernels::cpu_supports(static_cast<Isa>(v))) continue;
        benchmark::RegisterBenchmark((std::string("attention/") + sh.name + "/" +
                                      kernels::isa_name(static_cast<Isa>(v)) + suffix)
                                         .c_str(),
                                     bench, sh, v, threads)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
      if (sh.kv_type == DType::F32 && sh.kv_chunks == 0)
        benchmark::RegisterBenchmark(
            (std::string("attention/") + sh.name + "/naive_old" + suffix).c_str(), bench, sh, -1,
            threads)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    }
}
