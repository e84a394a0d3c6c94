// Scalar reference of the row kernels (vec_ops.h) and the per-ISA tables.
#include "kernels/cpu/vec_ops.h"

#include <cmath>

namespace brisk::kernels {
namespace {

double sum_sq_scalar(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale_mul_scalar(const float* x, float scale, const float* w, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void silu_mul_scalar(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void add_scalar(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void rope_scalar(float* x, int n_heads, int head_dim, int n_dims, bool adjacent, const float* cs,
                 const float* sn) {
  const int half = n_dims / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = adjacent ? 2 * i : i;
      const int b = adjacent ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

// Four independent accumulators per 256-byte step, streams interleaved.
uint64_t sum_words_scalar(const uint64_t* p, int64_t n, int streams) {
  const int64_t per = streams > 0 ? n / streams / 32 * 32 : 0;
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (int64_t i = 0; i < per; i += 32)
    for (int s = 0; s < streams; ++s) {
      const uint64_t* q = p + s * per + i;
      for (int k = 0; k < 32; k += 4) {
        a0 += q[k];
        a1 += q[k + 1];
        a2 += q[k + 2];
        a3 += q[k + 3];
      }
    }
  for (int64_t i = per * streams; i < n; ++i) a0 += p[i];
  return a0 + a1 + a2 + a3;
}

// Scalar peaks: 12 independent integer / float multiply-add chains.
uint64_t int8_peak_scalar(int64_t iters, int64_t* sink) {
  int32_t a[12];
  for (int j = 0; j < 12; ++j) a[j] = j;
  volatile int32_t m = 3, c = 1;
  const int32_t mm = m, cc = c;
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) a[j] = a[j] * mm + cc;
  int64_t s = 0;
  for (int j = 0; j < 12; ++j) s += a[j];
  *sink = s;
  return static_cast<uint64_t>(iters) * 12;
}

uint64_t f32_peak_scalar(int64_t iters, int64_t* sink) {
  float a[12];
  for (int j = 0; j < 12; ++j) a[j] = static_cast<float>(j);
  volatile float m = 0.999f, c = 0.001f;
  const float mm = m, cc = c;
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) a[j] = a[j] * mm + cc;
  float s = 0;
  for (int j = 0; j < 12; ++j) s += a[j];
  *sink = static_cast<int64_t>(s);
  return static_cast<uint64_t>(iters) * 12;
}

constexpr VecOps kScalar{sum_sq_scalar, scale_mul_scalar, silu_mul_scalar,  add_scalar,
                         rope_scalar,   sum_words_scalar, int8_peak_scalar, f32_peak_scalar};

struct Tables {
  VecOps rows[kIsaCount];
  bool ok[kIsaCount] = {};
  Tables() {
    for (int v = 0; v < kIsaCount; ++v) {
      const Isa isa = static_cast<Isa>(v);
      if (!cpu_supports(isa)) continue;
      rows[v] = kScalar;
#if defined(__x86_64__) || defined(__i386__)
      if (isa >= Isa::Avx2) apply_vec_ops_avx2(rows[v]);
      if (isa >= Isa::Avx512) apply_vec_ops_avx512(rows[v]);
      if (isa >= Isa::Avx512Vnni) apply_vec_ops_avx512_vnni(rows[v]);
#endif
      ok[v] = true;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const VecOps* vec_ops_for(Isa isa) {
  const int v = static_cast<int>(isa);
  if (v < 0 || v >= kIsaCount || !tables().ok[v]) return nullptr;
  return &tables().rows[v];
}

const VecOps& vec_ops() {
  static const VecOps& ops = *vec_ops_for(active_isa_kind());
  return ops;
}

}  // namespace brisk::kernels
