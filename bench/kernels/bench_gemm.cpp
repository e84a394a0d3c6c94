// Micro-benchmarks of the packed GEMM kernels (kernels/cpu/gemm.h), one thread, per ISA variant:
//   gemv_stream/<type>/<isa> : one token against ~256 MiB of weights (memory bound: compare the
//                               bytes/s with `brisk bench --bandwidth -t 1`)
//   gemv_cache/<type>/<isa>  : one token against a 4096 x 256 matrix that stays in L2 (compute)
//   gemm/<type>/<isa>/T      : T tokens against a 2048 x 512 matrix in cache (int8 throughput;
//                               items/s = multiply-accumulates/s)
//   rows/<type>/<isa>/T      : the same product through the per-row vec_dot path, for comparison
//   gemm_stream/<type>/<isa>/T : T tokens against ~64 MiB of 2048-wide rows streamed from memory,
//                               as a model's layers are in batched decoding and prompts
// Built by `cmake --build build --target bench_kernels`; run `build/bench_kernels
// --benchmark_filter=gemm`.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_register.h"
#include "core/dtype.h"
#include "core/huge_buffer.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/quant.h"

using namespace brisk;
using namespace brisk::kernels;

namespace {

const DType kTypes[] = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// A quantised weight matrix with its packed copy and T quantised activation rows.
struct Problem {
  const PackedGemm* pg;
  const QuantKernels* qk;
  int64_t n_in, n_out, T;
  std::vector<uint8_t> w;
  HugeBuffer packed;
  std::vector<uint8_t> act, side;
  std::vector<float> out;

  Problem(DType t, Isa isa, int64_t n_in_, int64_t n_out_, int64_t T_)
      : pg(packed_gemm_for(t, isa)),
        qk(quant_kernels_for(t, isa)),
        n_in(n_in_),
        n_out(n_out_),
        T(T_) {
    std::mt19937 rng(42);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const size_t rb = row_bytes(t, n_in);
    // Rows repeat every 64 (quantising 256 MiB of random rows would dominate the run).
    std::vector<float> row(static_cast<size_t>(n_in));
    std::vector<uint8_t> base(rb * 64);
    for (int r = 0; r < 64; ++r) {
      for (float& x : row) x = dist(rng);
      qk->from_float(row.data(), base.data() + rb * static_cast<size_t>(r), n_in);
    }
    w.resize(rb * static_cast<size_t>(n_out));
    for (int64_t r = 0; r < n_out; ++r)
      std::memcpy(w.data() + rb * static_cast<size_t>(r),
                  base.data() + rb * static_cast<size_t>(r % 64), rb);
    const int64_t groups = (n_out + pg->rows - 1) / pg->rows;
    const size_t gb = pg->group_bytes(n_in);
    packed = HugeBuffer(gb * static_cast<size_t>(groups));
    for (int64_t g = 0; g < groups; ++g)
      pg->pack(w.data() + rb * static_cast<size_t>(g * pg->rows), n_in,
               std::min<int64_t>(pg->rows, n_out - g * pg->rows),
               packed.data() + gb * static_cast<size_t>(g));
    const size_t arb = row_bytes(pg->act_type, n_in), sb = pg->side_bytes(n_in);
    act.resize(arb * static_cast<size_t>(T));
    side.resize(sb * static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      for (float& x : row) x = dist(rng);
      quant_kernels_for(pg->act_type, isa)->from_float(row.data(), act.data() + arb * t, n_in);
      pg->prep(act.data() + arb * t, n_in, side.data() + sb * t);
    }
    out.resize(static_cast<size_t>(T * n_out));
  }
  void run() {
    GemmArgs a;
    a.w = packed.data();
    a.n_groups = (n_out + pg->rows - 1) / pg->rows;
    a.n_in = n_in;
    a.act = act.data();
    a.act_stride = row_bytes(pg->act_type, n_in);
    a.side = side.data();
    a.side_stride = pg->side_bytes(n_in);
    a.T = T;
    a.out = out.data();
    a.ldo = n_out;
    a.n_rows = n_out;
    pg->gemm(a);
  }
  void run_rows() {
    const size_t rb = row_bytes(qk->type, n_in), arb = row_bytes(pg->act_type, n_in);
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t t = 0; t < T; ++t)
        out[static_cast<size_t>(t * n_out + r)] =
            qk->vec_dot(n_in, w.data() + rb * static_cast<size_t>(r), act.data() + arb * t);
  }
};

void bench_stream(benchmark::State& state, DType t, Isa isa) {
  const int64_t n_in = 4096;
  const int64_t n_out = static_cast<int64_t>((size_t{256} << 20) / row_bytes(t, n_in));
  Problem p(t, isa, n_in, n_out, 1);
  for (auto _ : state) {
    p.run();
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(p.packed.size()));
}

void bench_cache(benchmark::State& state, DType t, Isa isa) {
  Problem p(t, isa, 4096, 256, 1);
  for (auto _ : state) {
    p.run();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 4096 * 256);
}

void bench_gemm(benchmark::State& state, DType t, Isa isa, bool rows) {
  const int64_t T = state.range(0);
  Problem p(t, isa, 2048, 512, T);
  for (auto _ : state) {
    rows ? p.run_rows() : p.run();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 2048 * 512 * T);
}

void bench_gemm_stream(benchmark::State& state, DType t, Isa isa) {
  const int64_t T = state.range(0), n_in = 2048;
  const int64_t n_out = static_cast<int64_t>((size_t{64} << 20) / row_bytes(t, n_in)) / 64 * 64;
  Problem p(t, isa, n_in, n_out, T);
  for (auto _ : state) {
    p.run();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n_in * n_out * T);
}

}  // namespace

void register_gemm_benchmarks() {
  for (int v = 0; v < kIsaCount; ++v) {
    const Isa isa = static_cast<Isa>(v);
    for (DType t : kTypes) {
      if (!packed_gemm_for(t, isa)) continue;
      const std::string suffix = std::string(dtype_name(t)) + "/" + isa_name(isa);
      benchmark::RegisterBenchmark(("gemv_stream/" + suffix).c_str(), bench_stream, t, isa)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("gemv_cache/" + suffix).c_str(), bench_cache, t, isa)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("gemm/" + suffix).c_str(), bench_gemm, t, isa, false)
          ->Arg(8)
          ->Arg(64)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("gemm_stream/" + suffix).c_str(), bench_gemm_stream, t, isa)
          ->Arg(8)
          ->Arg(16)
          ->Arg(32)
          ->Arg(128)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("rows/" + suffix).c_str(), bench_gemm, t, isa, true)
          ->Arg(8)
          ->Unit(benchmark::kMicrosecond);
    }
  }
}
