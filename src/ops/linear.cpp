#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "ops/ops.h"

namespace brisk::ops {

void linear(const float* x, int64_t T, const WeightView& w, const float* bias, float* out,
            LinearScratch& scratch, ThreadPool& pool) {
  const kernels::QuantKernels& k = kernels::quant_kernels(w.type);
  const kernels::QuantKernels& ak = kernels::quant_kernels(k.vec_dot_type);
  const size_t w_row = row_bytes(w.type, w.n_in);
  const size_t a_row = row_bytes(k.vec_dot_type, w.n_in);
  const uint8_t* wdata = static_cast<const uint8_t*>(w.data);

  // Convert activations once per call (to f16 / q8_0 / q8_K ... as the weight type's dot wants);
  // F32 weights use the activations directly.
  const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
  if (k.vec_dot_type != DType::F32) {
    scratch.act.resize(a_row * static_cast<size_t>(T));
    pool.parallel_for(T, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t)
        ak.from_float(x + t * w.n_in, scratch.act.data() + static_cast<size_t>(t) * a_row, w.n_in);
    });
    act = scratch.act.data();
  }

  // Split over output rows; within a thread, tiles of kRowTile weight rows are taken against every
  // token before moving on, so each weight row is streamed from memory once per call (not once per
  // token) while the converted activations (T rows) stay in cache.
  constexpr int64_t kRowTile = 16;
  pool.parallel_for(w.n_out, [&](int64_t b, int64_t e, int) {
    for (int64_t r0 = b; r0 < e; r0 += kRowTile) {
      const int64_t r1 = std::min(e, r0 + kRowTile);
      for (int64_t t = 0; t < T; ++t) {
        const uint8_t* a = act + static_cast<size_t>(t) * a_row;
        float* o = out + t * w.n_out;
        for (int64_t r = r0; r < r1; ++r) {
          const float v = k.vec_dot(w.n_in, wdata + static_cast<size_t>(r) * w_row, a);
          o[r] = bias ? v + bias[r] : v;
        }
      }
    }
  });
}

void get_row(const WeightView& w, int64_t row, float* out) {
  check(row >= 0 && row < w.n_out, "token id ", row, " out of range for ", w.name, " (", w.n_out,
        " rows)");
  const kernels::QuantKernels& k = kernels::quant_kernels(w.type);
  const size_t w_row = row_bytes(w.type, w.n_in);
  k.to_float(static_cast<const uint8_t*>(w.data) + static_cast<size_t>(row) * w_row, out, w.n_in);
}

void rms_norm(const float* x, const float* weight, int64_t T, int64_t n, float eps, float* out) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * n;
    float* o = out + t * n;
    double ss = 0;  // ggml accumulates the mean square in double (ggml_float) too
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
    for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * scale * weight[i];
  }
}

void swiglu(float* gate, const float* up, int64_t n_total) {
  for (int64_t i = 0; i < n_total; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace brisk::ops
