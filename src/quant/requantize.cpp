#include "quant/requantize.h"

#include "core/error.h"
#include "quant/quantize_model.h"

namespace brisk::quant {

DType fallback_type(DType want, int64_t n) {
  auto fits = [n](DType t) { return n % dtype_layout(t).block_size == 0; };
  if (fits(want)) return want;
  // k-quants (256) fall back to a 32-block type of similar or more bits; 32-block types to f16.
  DType alt = DType::F16;
  switch (want) {
    case DType::Q2_K:
    case DType::Q3_K:
      alt = DType::Q4_0;
      break;
    case DType::Q4_K:
      alt = DType::Q5_0;
      break;
    case DType::Q5_K:
      alt = DType::Q5_1;
      break;
    case DType::Q6_K:
      alt = DType::Q8_0;
      break;
    default:
      break;
  }
  return fits(alt) ? alt : DType::F16;
}

QuantizeReport requantize(io::ModelFile& m, DType type, ThreadPool& pool,
                          const std::function<void(size_t, size_t, const std::string&)>& progress) {
  check(dtype_layout(type).storage, "cannot store weights as ", dtype_name(type));
  QuantizeOptions o;
  o.recipe.name = dtype_name(type);
  o.recipe.base = type;
  std::set<std::string> done;  // already in their target type
  for (const gguf::TensorInfo& t : m.tensors)
    if (t.shape.size() == 2 && target_type(m, t, o) == t.type) done.insert(t.name);
  return quantize_model(m, o, pool, done, progress);
}

}  // namespace brisk::quant

namespace brisk::quant {
uint32_t gguf_file_type(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1;
    case DType::Q4_0:
      return 2;
    case DType::Q4_1:
      return 3;
    case DType::Q8_0:
      return 7;
    case DType::Q5_0:
      return 8;
    case DType::Q5_1:
      return 9;
    case DType::Q2_K:
      return 10;
    case DType::Q3_K:
      return 12;  // Q3_K_M
    case DType::Q4_K:
      return 15;  // Q4_K_M
    case DType::Q5_K:
      return 17;  // Q5_K_M
    case DType::Q6_K:
      return 18;
    case DType::BF16:
      return 32;
    default:
      return 0;
  }
}
}  // namespace brisk::quant
