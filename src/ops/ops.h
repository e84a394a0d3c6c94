// Ops: argument checks + dispatch to the per-type kernels. Tensors are row-major f32 activations
// unless said otherwise; weights are GGUF tensor views (ggml order: shape[0] = row length).
// Kernels here are the clean reference path; the speed issue swaps in ISA-specific kernels behind
// the same signatures.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace brisk::ops {

// A 2-D weight: n_out rows of n_in elements in `type` blocks, contiguous.
struct WeightView {
  DType type = DType::F32;
  int64_t n_in = 0;
  int64_t n_out = 0;
  const void* data = nullptr;
  const char* name = "";
};

// Scratch for linear(): activations converted to the weight's vec_dot type. Reused across calls
// so the decode loop does not allocate.
struct LinearScratch {
  std::vector<uint8_t> act;
};

// x is (T, n_in) f32, w is (n_out, n_in) in w.type blocks, out is (T, n_out) f32; bias (n_out) or
// null. Work split over output rows across the pool.
void linear(const float* x, int64_t T, const WeightView& w, const float* bias, float* out,
            LinearScratch& scratch, ThreadPool& pool);

// Row `row` of a (n_rows, n) weight in any storage type, dequantised to f32 (embedding lookup).
void get_row(const WeightView& w, int64_t row, float* out);

// x, out are (T, n); out = x / rms(x) * weight, rms over each row with eps.
void rms_norm(const float* x, const float* weight, int64_t T, int64_t n, float eps, float* out);

// gate and up are (T, n); gate = silu(gate) * up (SwiGLU), in place.
void swiglu(float* gate, const float* up, int64_t n_total);

// y += x, n elements.
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace brisk::ops
