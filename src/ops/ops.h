// Ops: argument checks + dispatch to the per-type, per-ISA kernels, and the work split over the
// thread pool. Tensors are row-major f32 activations unless said otherwise; weights are GGUF
// tensor views (ggml order: shape[0] = row length).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "core/huge_buffer.h"
#include "core/thread_pool.h"
#include "kernels/cpu/gemm.h"

namespace brisk::ops {

// A 2-D weight: n_out rows of n_in elements in `type` blocks, contiguous. When `packed` is set the
// same matrix is also held in the active ISA's interleaved GEMM layout (kernels/cpu/gemm.h) at
// packed_data, and linear() uses that.
struct WeightView {
  DType type = DType::F32;
  int64_t n_in = 0;
  int64_t n_out = 0;
  const void* data = nullptr;
  const char* name = "";
  const kernels::PackedGemm* packed = nullptr;
  const uint8_t* packed_data = nullptr;
};

// Bytes of w in the active ISA's packed GEMM layout (a multiple of 64), or 0 when the active ISA
// has no packed kernel for w.type.
size_t packed_size(const WeightView& w);
// Packs w to dst (packed_size(w) bytes) and points w.packed / w.packed_data at it; dst must
// outlive every use of w.
void pack_weight_into(WeightView& w, uint8_t* dst, ThreadPool& pool);
// Convenience: packed_size + a buffer of its own + pack_weight_into (an empty buffer and w left
// alone when there is no packed kernel).
HugeBuffer pack_weight(WeightView& w, ThreadPool& pool);

// The gate and up matrices of a SwiGLU FFN packed as one matrix whose row groups alternate
// (gate group 0, up group 0, gate group 1, ...), so that one pass streams both and each tile of
// gate rows has its up rows next to it. Returns a view with n_out = 2 * groups * rows (the rows
// of group pairs) that swiglu_hidden recognises; size: packed_size(gate) + packed_size(up).
size_t gate_up_packed_size(const WeightView& gate, const WeightView& up);
WeightView pack_gate_up_into(const WeightView& gate, const WeightView& up, uint8_t* dst,
                             ThreadPool& pool);

// Scratch for the linear ops, reused across calls so the decode loop does not allocate once the
// buffers have reached their high-water mark.
struct LinearScratch {
  std::vector<uint8_t> act;   // activations converted to the weights' dot type, T rows
  std::vector<uint8_t> side;  // the packed kernels' per-row side data
  std::vector<float> h;       // normalised f32 activations (paths that need them unquantised)
  std::vector<float> tile;    // per-thread gate/up tiles of the fused SwiGLU
};

// Optional RMSNorm applied to x before a linear op (weight null = none): x / rms(x) * weight.
// Fused with the activation quantisation where the weights are quantised: the normalised f32 rows
// are never written out.
struct RmsNorm {
  const float* weight = nullptr;
  float eps = 0;
};

// One matrix of a linear_multi call: out (T, w.n_out) = x W^T (+ bias (n_out) if not null);
// with accumulate, out += x W^T (+ bias) instead (a residual add fused into the GEMM's stores).
struct LinearTarget {
  const WeightView* w;
  const float* bias;
  float* out;
  bool accumulate = false;
};

// x is (T, n_in) f32; every target's w is (n_out_i, n_in). The activations are normalised and
// converted once for all targets (when they share a dot type), and the rows of all targets form
// one work list split across the pool, so fused Q/K/V projections cost one pass and one hand-off.
void linear_multi(const float* x, int64_t T, const RmsNorm& norm,
                  std::span<const LinearTarget> targets, LinearScratch& scratch, ThreadPool& pool);

// x is (T, n_in) f32, w is (n_out, n_in) in w.type blocks, out is (T, n_out) f32; bias (n_out) or
// null. Work split over output rows across the pool.
void linear(const float* x, int64_t T, const WeightView& w, const float* bias, float* out,
            LinearScratch& scratch, ThreadPool& pool);
// out += x W^T: the output projections that feed the residual stream.
void linear_add(const float* x, int64_t T, const WeightView& w, float* out, LinearScratch& scratch,
                ThreadPool& pool);

// SwiGLU hidden layer: out (T, n_ff) = silu(norm(x) Wg^T) * (norm(x) Wu^T), gate and up (n_ff,
// n_in). With a fused gate_up view (pack_gate_up_into; gate_up.packed set) each thread computes
// gate and up rows for a range of group pairs into small tiles and writes only the product.
// gate_add and up_add, (T, n_ff) or null, are added to the gate and up products before the
// activation (LoRA adapters on those matrices).
void swiglu_hidden(const float* x, int64_t T, const RmsNorm& norm, const WeightView& gate,
                   const WeightView& up, const WeightView& gate_up, float* out,
                   LinearScratch& scratch, ThreadPool& pool, const float* gate_add = nullptr,
                   const float* up_add = nullptr);

// Row `row` of a (n_rows, n) weight in any storage type, dequantised to f32 (embedding lookup).
void get_row(const WeightView& w, int64_t row, float* out);

// x, out are (T, n); out = x / rms(x) * weight, rms over each row with eps.
void rms_norm(const float* x, const float* weight, int64_t T, int64_t n, float eps, float* out);

// gate and up are (T, n); gate = silu(gate) * up (SwiGLU), in place.
void swiglu(float* gate, const float* up, int64_t n_total);

// y += x, n elements.
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace brisk::ops
