#include "core/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "core/error.h"

namespace brisk {
namespace {

// Block sizes and byte counts follow the ggml block structs bit for bit (QK_K = 256).
constexpr std::array<DTypeLayout, 20> kLayouts{{
    {DType::F32, "f32", 1, 4, false, true},
    {DType::F16, "f16", 1, 2, false, true},
    {DType::Q4_0, "q4_0", 32, 2 + 16, true, true},
    {DType::Q4_1, "q4_1", 32, 2 + 2 + 16, true, true},
    {DType::Q5_0, "q5_0", 32, 2 + 4 + 16, true, true},
    {DType::Q5_1, "q5_1", 32, 2 + 2 + 4 + 16, true, true},
    {DType::Q8_0, "q8_0", 32, 2 + 32, true, true},
    {DType::Q8_1, "q8_1", 32, 2 + 2 + 32, true, false},
    {DType::Q2_K, "q2_K", 256, 16 + 64 + 2 + 2, true, true},
    {DType::Q3_K, "q3_K", 256, 32 + 64 + 12 + 2, true, true},
    {DType::Q4_K, "q4_K", 256, 2 + 2 + 12 + 128, true, true},
    {DType::Q5_K, "q5_K", 256, 2 + 2 + 12 + 32 + 128, true, true},
    {DType::Q6_K, "q6_K", 256, 128 + 64 + 16 + 2, true, true},
    {DType::Q8_K, "q8_K", 256, 4 + 256 + 32, true, false},
    {DType::I8, "i8", 1, 1, false, false},
    {DType::I16, "i16", 1, 2, false, false},
    {DType::I32, "i32", 1, 4, false, false},
    {DType::I64, "i64", 1, 8, false, false},
    {DType::F64, "f64", 1, 8, false, false},
    {DType::BF16, "bf16", 1, 2, false, true},
}};

}  // namespace

const DTypeLayout* find_dtype_layout(uint32_t id) {
  for (const auto& l : kLayouts)
    if (static_cast<uint32_t>(l.type) == id) return &l;
  return nullptr;
}

const DTypeLayout& dtype_layout(DType t) {
  const DTypeLayout* l = find_dtype_layout(static_cast<uint32_t>(t));
  if (!l) fail("unknown tensor type id ", static_cast<uint32_t>(t));
  return *l;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& l : kLayouts) {
    std::string n = l.name;
    std::transform(n.begin(), n.end(), n.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (n == lower) return l.type;
  }
  return std::nullopt;
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeLayout& l = dtype_layout(t);
  if (n < 0 || n % l.block_size != 0)
    fail("row of ", n, " elements is not a multiple of the ", l.name, " block size ", l.block_size);
  return static_cast<size_t>(n / l.block_size) * l.type_size;
}

}  // namespace brisk
