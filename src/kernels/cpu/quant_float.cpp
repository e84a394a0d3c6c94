// Plain float storage types: f32, f16 and bf16 (block size 1).
//
// Dots accumulate in kLanes independent f32 partial sums (as ggml's SIMD kernels do, so the
// compiler can keep them in vector registers without reassociating), then add the lanes in double.
// F16 weights dot activations already rounded to f16 (ggml's vec_dot_type), which keeps f16 models
// within float rounding of the reference implementation. BF16 weights dot f32 activations: bf16
// keeps only 8 mantissa bits, and rounding activations to it would cost ~5e-3 of the logits' RMS
// for nothing (there is no bf16 reference to match), so the only loss is the weights' own.
#include <cstdint>

#include "core/half.h"
#include "kernels/cpu/quant_blocks.h"

namespace brisk::kernels {
namespace {

constexpr int kLanes = 16;

// Sum over i < n of load(w, i) * load(a, i); Load converts one element to f32.
template <class T, class A, class Load, class LoadA>
float lane_dot(int64_t n, const T* w, const A* a, Load load, LoadA load_a) {
  float acc[kLanes] = {};
  const int64_t nv = n - n % kLanes;
  for (int64_t i = 0; i < nv; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += load(w[i + l]) * load_a(a[i + l]);
  double sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  for (int64_t i = nv; i < n; ++i) sum += static_cast<double>(load(w[i]) * load_a(a[i]));
  return static_cast<float>(sum);
}

template <class T, class Load>
float lane_dot(int64_t n, const T* w, const T* a, Load load) {
  return lane_dot(n, w, a, load, load);
}

}  // namespace

void f32_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::F32, n, "to_float");
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void f32_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::F32, n, "from_float");
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
float f32_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::F32, n, "vec_dot");
  return lane_dot(n, static_cast<const float*>(w), static_cast<const float*>(a),
                  [](float v) { return v; });
}

void f16_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::F16, n, "to_float");
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_branchless(s[i]);
}
void f16_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::F16, n, "from_float");
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
}
float f16_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::F16, n, "vec_dot");
  return lane_dot(n, static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(a),
                  [](uint16_t v) { return fp16_branchless(v); });
}

void bf16_to_float(const void* src, float* dst, int64_t n) {
  check_block_multiple(DType::BF16, n, "to_float");
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}
void bf16_from_float(const float* src, void* dst, int64_t n) {
  check_block_multiple(DType::BF16, n, "from_float");
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
}
float bf16_vec_dot(int64_t n, const void* w, const void* a) {
  check_block_multiple(DType::BF16, n, "vec_dot");
  return lane_dot(
      n, static_cast<const uint16_t*>(w), static_cast<const float*>(a),
      [](uint16_t v) { return bf16_to_f32(v); }, [](float v) { return v; });
}

}  // namespace brisk::kernels
