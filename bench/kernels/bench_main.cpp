// main of the bench_kernels target (Google Benchmark); see bench_quant.cpp, bench_attention.cpp.
#include <benchmark/benchmark.h>

#include "bench_register.h"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  register_quant_benchmarks();
  register_attention_benchmarks();
  register_gemm_benchmarks();
  register_gemm_bf16_benchmarks();
  register_vec_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
