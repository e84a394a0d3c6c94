// The quant-type traits table: one row per DType with kernels, and the shared packing helpers.
// The vec_dot_type column mirrors ggml's CPU backend so that dots round their activations the
// same way (F16 -> F16, Q4_0/Q5_0/Q8_0 -> Q8_0, Q4_1/Q5_1 -> Q8_1, k-quants -> Q8_K), except BF16,
// which dots f32 activations (see quant_float.cpp). kTable holds the scalar reference; the
// per-ISA tables derived from it are what quant_kernels() hands out (see isa.h).
#include <array>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_isa.h"

namespace brisk::kernels {
namespace {

constexpr std::array<QuantKernels, 15> kTable{{
    {DType::F32, f32_to_float, f32_from_float, f32_vec_dot, DType::F32},
    {DType::F16, f16_to_float, f16_from_float, f16_vec_dot, DType::F16},
    {DType::BF16, bf16_to_float, bf16_from_float, bf16_vec_dot, DType::F32},
    {DType::Q4_0, q4_0_to_float, q4_0_from_float, q4_0_vec_dot, DType::Q8_0},
    {DType::Q4_1, q4_1_to_float, q4_1_from_float, q4_1_vec_dot, DType::Q8_1},
    {DType::Q5_0, q5_0_to_float, q5_0_from_float, q5_0_vec_dot, DType::Q8_0},
    {DType::Q5_1, q5_1_to_float, q5_1_from_float, q5_1_vec_dot, DType::Q8_1},
    {DType::Q8_0, q8_0_to_float, q8_0_from_float, q8_0_vec_dot, DType::Q8_0},
    // Activation-only types still get a self dot so that every row is callable.
    {DType::Q8_1, q8_1_to_float, q8_1_from_float, q8_1_vec_dot, DType::Q8_1},
    {DType::Q2_K, q2_k_to_float, q2_k_from_float, q2_k_vec_dot, DType::Q8_K},
    {DType::Q3_K, q3_k_to_float, q3_k_from_float, q3_k_vec_dot, DType::Q8_K},
    {DType::Q4_K, q4_k_to_float, q4_k_from_float, q4_k_vec_dot, DType::Q8_K},
    {DType::Q5_K, q5_k_to_float, q5_k_from_float, q5_k_vec_dot, DType::Q8_K},
    {DType::Q6_K, q6_k_to_float, q6_k_from_float, q6_k_vec_dot, DType::Q8_K},
    {DType::Q8_K, q8_k_to_float, q8_k_from_float, q8_k_vec_dot, DType::Q8_K},
}};

const QuantKernels* find_scalar(DType t) {
  for (const QuantKernels& k : kTable)
    if (k.type == t) return &k;
  return nullptr;
}

// DType values are small (< 32); rows are looked up by value.
constexpr int kMaxDType = 32;
static_assert([] {
  for (const QuantKernels& k : kTable)
    if (static_cast<uint32_t>(k.type) >= kMaxDType) return false;
  return true;
}());

// One table per ISA variant, built on first use: the scalar row with the variant's kernels laid
// over it. A variant the CPU lacks keeps null rows, and its file's code is never entered.
struct IsaTables {
  std::array<std::array<QuantKernels, kTable.size()>, kIsaCount> rows{};
  std::array<std::array<const QuantKernels*, kMaxDType>, kIsaCount> by_type{};

  IsaTables() {
    for (int v = 0; v < kIsaCount; ++v) {
      const Isa isa = static_cast<Isa>(v);
      if (!cpu_supports(isa)) continue;
      for (size_t i = 0; i < kTable.size(); ++i) {
        QuantKernels& row = rows[v][i];
        row = kTable[i];
#ifdef BRISK_X86_KERNELS
        // Each variant builds on the one below it (an AVX-512 CPU has AVX2).
        if (isa >= Isa::Avx2) {
          apply_avx2_kernels(row);
          apply_avx2_extra_kernels(row);
        }
        if (isa >= Isa::Avx512) {
          apply_avx512_kernels(row, isa == Isa::Avx512Vnni);
          apply_avx512_extra_kernels(row, isa == Isa::Avx512Vnni);
        }
#endif
        by_type[v][static_cast<uint32_t>(row.type)] = &row;
      }
    }
  }
};

const IsaTables& isa_tables() {
  static const IsaTables t;
  return t;
}

// The active variant's rows, resolved once (throws, and retries next call, on a bad BRISK_ISA).
const std::array<const QuantKernels*, kMaxDType>& active_rows() {
  static const std::array<const QuantKernels*, kMaxDType>& rows =
      isa_tables().by_type[static_cast<int>(active_isa_kind())];
  return rows;
}

}  // namespace

const QuantKernels& quant_kernels(DType t) {
  const uint32_t i = static_cast<uint32_t>(t);
  const QuantKernels* k = i < kMaxDType ? active_rows()[i] : nullptr;
  if (!k) fail("no CPU kernels for tensor type ", dtype_layout(t).name);
  return *k;
}

const QuantKernels* quant_kernels_for(DType t, Isa isa) {
  const uint32_t i = static_cast<uint32_t>(t);
  const int v = static_cast<int>(isa);
  if (i >= kMaxDType || v < 0 || v >= kIsaCount) return nullptr;
  return isa_tables().by_type[v][i];
}

bool has_quant_kernels(DType t) {
  return find_scalar(t) != nullptr;
}

void quantize_row_weighted(DType t, const float* src, void* dst, int64_t n,
                           const float* importance) {
  switch (t) {
    case DType::Q4_0:
      q4_0_quantize(src, dst, n, importance);
      return;
    case DType::Q5_0:
      q5_0_quantize(src, dst, n, importance);
      return;
    case DType::Q2_K:
      q2_k_quantize(src, dst, n, importance);
      return;
    case DType::Q3_K:
      q3_k_quantize(src, dst, n, importance);
      return;
    case DType::Q4_K:
      q4_k_quantize(src, dst, n, importance);
      return;
    case DType::Q5_K:
      q5_k_quantize(src, dst, n, importance);
      return;
    case DType::Q6_K:
      q6_k_quantize(src, dst, n, importance);
      return;
    default:
      quant_kernels(t).from_float(src, dst, n);
      return;
  }
}

void fail_block_multiple(DType t, int64_t n, const char* what) {
  const DTypeLayout& l = dtype_layout(t);
  fail(l.name, " ", what, ": row of ", n, " elements is not a multiple of the block size ",
       l.block_size);
}

void pack_scale_min_k4(const uint8_t sc[8], const uint8_t mn[8], uint8_t q[kKScaleSize]) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

void unpack_scales_q3_k(const uint8_t q[kKScaleSize], int8_t out[16]) {
  for (int i = 0; i < 16; ++i) {
    const int lo = i < 8 ? (q[i] & 0xF) : (q[i - 8] >> 4);
    const int hi = (q[8 + i % 4] >> (2 * (i / 4))) & 3;
    out[i] = static_cast<int8_t>((lo | (hi << 4)) - 32);
  }
}

void pack_scales_q3_k(const int8_t in[16], uint8_t q[kKScaleSize]) {
  std::memset(q, 0, kKScaleSize);
  for (int i = 0; i < 16; ++i) {
    const int v = in[i] + 32;  // [0, 63]
    if (i < 8)
      q[i] = static_cast<uint8_t>(q[i] | (v & 0xF));
    else
      q[i - 8] = static_cast<uint8_t>(q[i - 8] | ((v & 0xF) << 4));
    q[8 + i % 4] = static_cast<uint8_t>(q[8 + i % 4] | ((v >> 4) << (2 * (i / 4))));
  }
}

}  // namespace brisk::kernels
