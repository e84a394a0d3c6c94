#include "engine/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <utility>

#include "core/error.h"
#include "core/huge_buffer.h"
#include "core/profile.h"
#include "kernels/cpu/vec_ops.h"
#include "model/paged_kv.h"

namespace brisk::engine {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Runs warmup + reps repetitions of `once` (which returns its measured seconds) and collects the
// measured ones.
template <class F>
BenchResult repeat(std::string test, int64_t n_tokens, const BenchConfig& cfg,
                   const BenchProgress& progress, F once) {
  BenchResult r;
  r.test = std::move(test);
  r.n_tokens = n_tokens;
  for (int i = 0; i < cfg.warmup + cfg.reps; ++i) {
    const bool warm = i < cfg.warmup;
    const double s = once();
    // A clock that cannot resolve the run must not turn into an infinite rate.
    const double tps = static_cast<double>(n_tokens) / std::max(s, 1e-9);
    if (!warm) {
      r.secs.push_back(s);
      r.tps.push_back(tps);
    }
    if (progress) progress(r.test, warm ? i : i - cfg.warmup, warm, tps);
  }
  r.stats = summarize(r.tps);
  return r;
}

}  // namespace

Stats summarize(std::span<const double> xs) {
  Stats s;
  if (xs.empty()) return s;
  const double n = static_cast<double>(xs.size());
  for (double x : xs) s.mean += x;
  s.mean /= n;
  if (xs.size() > 1) {
    double ss = 0;
    for (double x : xs) ss += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(ss / (n - 1));
  }
  std::vector<double> v(xs.begin(), xs.end());
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  s.median = v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
  s.min = v.front();
  s.max = v.back();
  return s;
}

void BenchConfig::validate() const {
  check(n_prompt >= 1 && n_prompt <= (int64_t{1} << 20), "bench: prompt length ", n_prompt,
        " must be in [1, 1048576]");
  check(n_gen >= 1 && n_gen <= (int64_t{1} << 20), "bench: generation length ", n_gen,
        " must be in [1, 1048576]");
  check(n_batch >= 1, "bench: batch size ", n_batch, " must be at least 1");
  check(reps >= 1 && reps <= 1000, "bench: repetitions ", reps, " must be in [1, 1000]");
  check(warmup >= 0 && warmup <= 1000, "bench: warmup ", warmup, " must be in [0, 1000]");
}

void BandwidthConfig::validate() const {
  check(bytes >= (uint64_t{1} << 16), "bench: bandwidth buffer of ", bytes,
        " bytes is too small (at least 64 KiB)");
  check(reps >= 1 && reps <= 1000, "bench: repetitions ", reps, " must be in [1, 1000]");
  check(streams >= 1 && streams <= 64, "bench: streams per thread ", streams,
        " must be in [1, 64]");
}

std::vector<int32_t> bench_tokens(int64_t n, int64_t n_vocab, uint64_t seed) {
  check(n_vocab > 0, "bench: the model has no vocabulary");
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t s = seed;
  for (int32_t& id : ids) id = static_cast<int32_t>(splitmix64(s) % static_cast<uint64_t>(n_vocab));
  return ids;
}

BenchResult bench_prompt(const model::Model& m, const BenchConfig& cfg, ThreadPool& pool,
                         const BenchProgress& progress) {
  cfg.validate();
  const std::vector<int32_t> ids = bench_tokens(cfg.n_prompt, m.n_vocab(), cfg.seed);
  model::InferenceState st(m.hparams(), cfg.n_prompt);
  std::vector<float> logits;
  return repeat("pp" + std::to_string(cfg.n_prompt), cfg.n_prompt, cfg, progress, [&] {
    st.clear();
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < cfg.n_prompt; i += cfg.n_batch) {
      const int64_t t = std::min(cfg.n_batch, cfg.n_prompt - i);
      m.forward(
          std::span<const int32_t>(ids).subspan(static_cast<size_t>(i), static_cast<size_t>(t)), st,
          logits, false, pool);
    }
    return seconds_since(t0);
  });
}

BenchResult bench_generate(const model::Model& m, const BenchConfig& cfg, ThreadPool& pool,
                           const BenchProgress& progress) {
  cfg.validate();
  const std::vector<int32_t> first = bench_tokens(1, m.n_vocab(), cfg.seed);
  model::InferenceState st(m.hparams(), 1 + cfg.n_gen);
  std::vector<float> logits;
  return repeat("tg" + std::to_string(cfg.n_gen), cfg.n_gen, cfg, progress, [&] {
    st.clear();
    m.forward(first, st, logits, false, pool);
    int32_t next = argmax(logits);
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < cfg.n_gen; ++i) {
      m.forward(std::span<const int32_t>(&next, 1), st, logits, false, pool);
      next = argmax(logits);
    }
    return seconds_since(t0);
  });
}

BenchResult bench_decode_batch(const model::Model& m, const BenchConfig& cfg, int64_t n_seqs,
                               ThreadPool& pool, const BenchProgress& progress) {
  cfg.validate();
  check(n_seqs >= 1 && n_seqs <= 4096, "bench: decode batch ", n_seqs, " must be in [1, 4096]");
  constexpr int32_t kBlock = 16;
  const int64_t per_seq = (cfg.n_prompt + cfg.n_gen + kBlock - 1) / kBlock;
  model::PagedKvCache kv(m.hparams(), per_seq * n_seqs, kBlock, DType::F16);
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(n_seqs));
  for (int64_t s = 0; s < n_seqs; ++s)
    for (int64_t b = 0; b < per_seq; ++b)
      tables[static_cast<size_t>(s)].push_back(static_cast<int32_t>(s * per_seq + b));
  model::InferenceState st(m.hparams(), 1);
  std::vector<float> logits;
  // Prefill: each sequence its own prompt (a different seed per sequence), one at a time.
  std::vector<int32_t> next(static_cast<size_t>(n_seqs));
  for (int64_t s = 0; s < n_seqs; ++s) {
    const std::vector<int32_t> ids =
        bench_tokens(cfg.n_prompt, m.n_vocab(), cfg.seed + static_cast<uint64_t>(s));
    for (int64_t i = 0; i < cfg.n_prompt; i += cfg.n_batch) {
      const int64_t t = std::min(cfg.n_batch, cfg.n_prompt - i);
      const model::BatchSeq sq{0, t, i, tables[static_cast<size_t>(s)], true};
      m.forward_batch(
          std::span<const int32_t>(ids).subspan(static_cast<size_t>(i), static_cast<size_t>(t)),
          std::span(&sq, 1), kv, st, logits, pool);
    }
    next[static_cast<size_t>(s)] = argmax(logits);
  }
  const std::vector<int32_t> first = next;
  profile::reset();  // the prefill is not part of the test
  std::vector<model::BatchSeq> seqs(static_cast<size_t>(n_seqs));
  const int64_t V = m.n_vocab();
  return repeat("tg" + std::to_string(cfg.n_gen) + "x" + std::to_string(n_seqs), cfg.n_gen * n_seqs,
                cfg, progress, [&] {
                  next = first;
                  const auto t0 = Clock::now();
                  for (int64_t i = 0; i < cfg.n_gen; ++i) {
                    for (int64_t s = 0; s < n_seqs; ++s)
                      seqs[static_cast<size_t>(s)] =
                          model::BatchSeq{s, 1, cfg.n_prompt + i, tables[static_cast<size_t>(s)]};
                    m.forward_batch(next, seqs, kv, st, logits, pool);
                    for (int64_t s = 0; s < n_seqs; ++s)
                      next[static_cast<size_t>(s)] = argmax(std::span<const float>(logits).subspan(
                          static_cast<size_t>(s * V), static_cast<size_t>(V)));
                  }
                  return seconds_since(t0);
                });
}

BandwidthResult probe_bandwidth(const BandwidthConfig& cfg, ThreadPool& pool) {
  cfg.validate();
  const int nt = pool.size();
  // Slices are whole 64-byte lines so no two threads share one.
  const size_t n = static_cast<size_t>(cfg.bytes / 64) * 8;
  const auto slice = [&](int64_t t) {
    const size_t lines = n / 8;
    const size_t b = lines * static_cast<size_t>(t) / static_cast<size_t>(nt) * 8;
    const size_t e = lines * static_cast<size_t>(t + 1) / static_cast<size_t>(nt) * 8;
    return std::pair<size_t, size_t>(b, e);
  };
  // The same kind of memory the repacked weights live in (2 MiB-aligned, huge pages advised), so
  // that weights and probe see the same TLB behaviour. Each thread first-touches the pages it will
  // read (NUMA-local, and every page is really mapped before timing starts).
  HugeBuffer mem(n * sizeof(uint64_t));
  uint64_t* buf = reinterpret_cast<uint64_t*>(mem.data());
  const kernels::VecOps& vo = kernels::vec_ops();
  pool.parallel_for(nt, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      const auto [lo, hi] = slice(t);
      for (size_t i = lo; i < hi; ++i) buf[i] = i;
    }
  });

  BandwidthResult r;
  r.threads = nt;
  r.bytes = n * sizeof(uint64_t);
  r.expected_sum = n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);  // sum of 0..n-1 mod 2^64
  std::vector<uint64_t> sums(static_cast<size_t>(nt));
  const uint64_t* p = buf;
  for (int rep = 0; rep < cfg.reps; ++rep) {
    const auto t0 = Clock::now();
    pool.parallel_for(nt, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        const auto [lo, hi] = slice(t);
        sums[static_cast<size_t>(t)] =
            vo.sum_words(p + lo, static_cast<int64_t>(hi - lo), cfg.streams);
      }
    });
    const double s = std::max(seconds_since(t0), 1e-9);
    r.gbps.push_back(static_cast<double>(r.bytes) / s / 1e9);
    r.checksum = 0;
    for (uint64_t x : sums) r.checksum += x;
  }
  r.stats = summarize(r.gbps);
  return r;
}

}  // namespace brisk::engine

namespace brisk::engine {

ComputePeak probe_compute(ThreadPool& pool, int reps) {
  check(reps >= 1 && reps <= 1000, "bench: repetitions ", reps, " must be in [1, 1000]");
  const kernels::VecOps& vo = kernels::vec_ops();
  const int nt = pool.size();
  std::vector<int64_t> sink(static_cast<size_t>(nt));
  auto rate = [&](auto fn, int64_t iters) {
    std::vector<double> xs;
    for (int r = 0; r < reps; ++r) {
      std::vector<uint64_t> done(static_cast<size_t>(nt));
      const auto t0 = Clock::now();
      pool.parallel_for(nt, [&](int64_t b, int64_t e, int) {
        for (int64_t t = b; t < e; ++t)
          done[static_cast<size_t>(t)] = fn(iters, &sink[static_cast<size_t>(t)]);
      });
      const double s = std::max(seconds_since(t0), 1e-9);
      uint64_t total = 0;
      for (uint64_t d : done) total += d;
      xs.push_back(static_cast<double>(total) / s / 1e9);
    }
    return summarize(xs).median;
  };
  ComputePeak p;
  p.threads = nt;
  p.int8_gmacs = rate(vo.int8_peak, int64_t{1} << 22);
  p.f32_gflops = 2 * rate(vo.f32_peak, int64_t{1} << 22);
  return p;
}

uint64_t macs_per_token(const model::Model& m) {
  uint64_t n = 0;
  auto mat = [&](const ops::WeightView& w) {
    n += static_cast<uint64_t>(w.n_in) * static_cast<uint64_t>(w.n_out);
  };
  auto lmat = [&](const ops::WeightView& w, const model::LowRankPair& lr) {
    if (lr.rank() > 0) {  // factorised (brisk lowrank): two products
      mat(lr.a);
      mat(lr.b);
    } else {
      mat(w);
    }
  };
  for (int64_t l = 0; l < m.hparams().n_layer; ++l) {
    const model::LayerWeights& w = m.layer(l);
    lmat(w.wq, w.lr_q);
    lmat(w.wk, w.lr_k);
    lmat(w.wv, w.lr_v);
    lmat(w.wo, w.lr_o);
    lmat(w.gate, w.lr_gate);
    lmat(w.up, w.lr_up);
    lmat(w.down, w.lr_down);
  }
  return n;
}

}  // namespace brisk::engine
