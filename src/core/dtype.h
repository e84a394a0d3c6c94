// Storage types and their block layouts. The numeric values are the GGUF/ggml type ids, so a type
// read from a file maps to a DType with a range check and nothing else.
//
// Layout traits live here (core); the per-type kernels (to_float, from_float, vec_dot) live in
// kernels/cpu/quant_*.cpp and are reached through kernels/cpu/quant.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace brisk {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,  // activation type for Q4_1 / Q5_1 dot products
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,  // activation type for the k-quants
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct DTypeLayout {
  DType type;
  const char* name;    // as printed by ggml tools: "f32", "q4_0", "q4_K", ...
  int64_t block_size;  // elements per block (1 for plain types)
  size_t type_size;    // bytes per block
  bool quantized;
  bool storage;  // a weight storage type brisk computes with (the 13 of the foundation issue)
};

// nullopt for ids that are not (or no longer) valid ggml types.
const DTypeLayout* find_dtype_layout(uint32_t id);
const DTypeLayout& dtype_layout(DType t);
inline const char* dtype_name(DType t) {
  return dtype_layout(t).name;
}
// Accepts "q4_0", "Q4_0", "q4_K", "f16", "bf16", ... ; nullopt if unknown.
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes of a row of n elements; throws brisk::Error if n is not a multiple of the block size.
size_t row_bytes(DType t, int64_t n);

}  // namespace brisk
