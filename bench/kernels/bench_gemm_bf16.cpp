// Micro-benchmarks of the bf16 training GEMM (kernels/cpu/gemm_bf16.h) against OpenBLAS sgemm,
// one thread, at the trainer's shapes (a d_model = 768, d_ff = 2304 layer over 256 tokens):
//   gemm_bf16/<shape>/bf16   : gemm_bf16 (the AVX512-BF16 kernel where the CPU has it, else the
//                              scalar reference: then only the small shape is registered)
//   gemm_bf16/<shape>/sgemm  : cblas_sgemm with one OpenBLAS thread
// <shape> names op(A) (M, K) . op(B) (K, N) and the transpositions; the FLOPS counter is
// 2 M N K per call. Run: build/bench_kernels --benchmark_filter=gemm_bf16
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench_register.h"
#include "kernels/cpu/gemm_bf16.h"

using namespace brisk::kernels;

namespace {

struct Shape {
  const char* name;
  bool ta, tb;
  int64_t M, N, K;
};

// The trainer's products: forward x . W^T, input gradient dy . W, weight gradient dy^T . x, and a
// long sequence batch; the last one is a single 256-column block of the forward product (what one
// thread of the trainer's column split computes).
const Shape kShapes[] = {
    {"x256x768.W2304x768T", false, true, 256, 2304, 768},
    {"dy256x2304.W2304x768", false, false, 256, 768, 2304},
    {"dy768x256T.x256x2304", true, false, 768, 2304, 256},
    {"x4096x256.W768x256T", false, true, 4096, 768, 256},
    {"x256x768.W256x768T_colblock", false, true, 256, 256, 768},
};

struct Operands {
  std::vector<float> a, b, c;
  int64_t lda, ldb, ldc;
  explicit Operands(const Shape& s) {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    a.resize(static_cast<size_t>(s.M * s.K));
    b.resize(static_cast<size_t>(s.K * s.N));
    c.assign(static_cast<size_t>(s.M * s.N), 0.0f);
    for (float& x : a) x = dist(rng);
    for (float& x : b) x = dist(rng);
    lda = s.ta ? s.M : s.K;
    ldb = s.tb ? s.K : s.N;
    ldc = s.N;
  }
};

void set_flops(benchmark::State& state, const Shape& s) {
  state.counters["FLOPS"] = benchmark::Counter(2.0 * static_cast<double>(s.M * s.N * s.K),
                                               benchmark::Counter::kIsIterationInvariantRate,
                                               benchmark::Counter::kIs1000);
}

void bench_bf16(benchmark::State& state, Shape s) {
  Operands o(s);
  for (auto _ : state) {
    gemm_bf16(s.ta, s.tb, s.M, s.N, s.K, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f, o.c.data(),
              o.ldc);
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
}

void bench_sgemm(benchmark::State& state, Shape s) {
  Operands o(s);
  openblas_set_num_threads(1);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                static_cast<int>(s.M), static_cast<int>(s.N), static_cast<int>(s.K), 1.0f,
                o.a.data(), static_cast<int>(o.lda), o.b.data(), static_cast<int>(o.ldb), 0.0f,
                o.c.data(), static_cast<int>(o.ldc));
    benchmark::ClobberMemory();
  }
  set_flops(state, s);
}

}  // namespace

void register_gemm_bf16_benchmarks() {
  const bool fast = gemm_bf16_fast();
  for (const Shape& s : kShapes) {
    const std::string base = std::string("gemm_bf16/") + s.name;
    // The scalar fallback is ~100x slower: only the column-block shape then.
    if (fast || &s == &kShapes[4])
      benchmark::RegisterBenchmark((base + (fast ? "/bf16" : "/bf16_scalar")).c_str(), bench_bf16,
                                   s)
          ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((base + "/sgemm").c_str(), bench_sgemm, s)
        ->Unit(benchmark::kMillisecond);
  }
}
