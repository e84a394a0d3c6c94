// Micro-benchmarks of the row kernels (kernels/cpu/vec_ops.h) per ISA variant, at TinyLlama
// sizes: RMSNorm of a 2048-vector (sum of squares + scaling), SwiGLU over 5632, RoPE of 32 heads of
// 64, a 2048-element residual add. Run: build/bench_kernels --benchmark_filter=vec/
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_register.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/vec_ops.h"

using namespace brisk::kernels;

namespace {

std::vector<float> gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void bench_rms(benchmark::State& state, const VecOps* o) {
  const std::vector<float> x = gaussian(2048, 1), w = gaussian(2048, 2);
  std::vector<float> out(2048);
  for (auto _ : state) {
    const float s = 1.0f / std::sqrt(static_cast<float>(o->sum_sq(x.data(), 2048) / 2048) + 1e-5f);
    o->scale_mul(x.data(), s, w.data(), out.data(), 2048);
    benchmark::ClobberMemory();
  }
}

void bench_silu(benchmark::State& state, const VecOps* o) {
  const std::vector<float> g = gaussian(5632, 3), u = gaussian(5632, 4);
  std::vector<float> out(5632);
  for (auto _ : state) {
    o->silu_mul(g.data(), u.data(), out.data(), 5632);
    benchmark::ClobberMemory();
  }
}

void bench_rope(benchmark::State& state, const VecOps* o) {
  std::vector<float> x = gaussian(32 * 64, 5);
  const std::vector<float> cs = gaussian(32, 6), sn = gaussian(32, 7);
  for (auto _ : state) {
    o->rope(x.data(), 32, 64, 64, true, cs.data(), sn.data());
    benchmark::ClobberMemory();
  }
}

void bench_add(benchmark::State& state, const VecOps* o) {
  std::vector<float> y = gaussian(2048, 8);
  const std::vector<float> x = gaussian(2048, 9);
  for (auto _ : state) {
    o->add(y.data(), x.data(), 2048);
    benchmark::ClobberMemory();
  }
}

}  // namespace

void register_vec_benchmarks() {
  for (int v = 0; v < kIsaCount; ++v) {
    const Isa isa = static_cast<Isa>(v);
    const VecOps* o = vec_ops_for(isa);
    if (!o) continue;
    const std::string s = std::string("/") + isa_name(isa);
    benchmark::RegisterBenchmark(("vec/rms_norm_2048" + s).c_str(), bench_rms, o);
    benchmark::RegisterBenchmark(("vec/silu_mul_5632" + s).c_str(), bench_silu, o);
    benchmark::RegisterBenchmark(("vec/rope_32x64" + s).c_str(), bench_rope, o);
    benchmark::RegisterBenchmark(("vec/add_2048" + s).c_str(), bench_add, o);
  }
}
