// Micro-benchmark of the quant kernels per ISA variant: one vec_dot of a 4096-element weight row
// against its activation row (both in L1, so this measures compute, not the memory bandwidth that
// bounds decode; both 64-byte aligned, plain float types also at 32 mod 64), and the activation
// quantisers on 4096 floats.
// Build: cmake --build <dir> --target bench_kernels; run: <dir>/bench_kernels (main:
// bench_main.cpp).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench_register.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/quant.h"

using namespace brisk;
using namespace brisk::kernels;

namespace {

constexpr int64_t kN = 4096;

std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A row of `size` bytes starting `offset` bytes past a 64-byte boundary. Timings of wide loads
// depend on where a row starts (a 64-byte load at 32 mod 64 splits a cache line), so rows are
// placed explicitly rather than wherever malloc puts them.
struct Row {
  Row(size_t size, size_t offset) : buf(size + 64 + offset) {
    const size_t mis = reinterpret_cast<uintptr_t>(buf.data()) % 64;
    data = buf.data() + (64 - mis) % 64 + offset;
    this->size = size;
  }
  std::vector<uint8_t> buf;
  uint8_t* data;
  size_t size;
};

Row quantize(DType t, const std::vector<float>& x, size_t offset) {
  Row q(row_bytes(t, static_cast<int64_t>(x.size())), offset);
  quant_kernels_for(t, Isa::Scalar)->from_float(x.data(), q.data, static_cast<int64_t>(x.size()));
  return q;
}

// Both rows start at `offset` mod 64.
void bench_vec_dot(benchmark::State& state, const QuantKernels* k, size_t offset) {
  const Row w = quantize(k->type, gaussian(kN, 1), offset);
  const Row a = quantize(k->vec_dot_type, gaussian(kN, 2), offset);
  for (auto _ : state) benchmark::DoNotOptimize(k->vec_dot(kN, w.data, a.data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(w.size + a.size));
}

void bench_from_float(benchmark::State& state, const QuantKernels* k) {
  const std::vector<float> x = gaussian(kN, 3);
  std::vector<uint8_t> q(row_bytes(k->type, kN));
  for (auto _ : state) {
    k->from_float(x.data(), q.data(), kN);
    benchmark::ClobberMemory();
  }
}

}  // namespace

void register_quant_benchmarks() {
  // Every type with kernels (the activation types Q8_0 / Q8_1 / Q8_K dot themselves).
  const DType dots[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                        DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                        DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};
  const DType acts[] = {DType::Q8_0, DType::Q8_1, DType::Q8_K};
  for (int v = 0; v < kIsaCount; ++v) {
    const Isa isa = static_cast<Isa>(v);
    if (!cpu_supports(isa)) continue;
    for (DType t : dots) {
      const std::string name = std::string("vec_dot/") + dtype_layout(t).name + "/" + isa_name(isa);
      benchmark::RegisterBenchmark(name.c_str(), bench_vec_dot, quant_kernels_for(t, isa), 0);
      // Plain float rows also at 32 mod 64 (tensor data in GGUF files is 32-byte aligned).
      if (dtype_layout(t).block_size == 1)
        benchmark::RegisterBenchmark((name + "/off32").c_str(), bench_vec_dot,
                                     quant_kernels_for(t, isa), 32);
    }
    for (DType t : acts)
      benchmark::RegisterBenchmark(
          (std::string("from_float/") + dtype_layout(t).name + "/" + isa_name(isa)).c_str(),
          bench_from_float, quant_kernels_for(t, isa));
  }
}
