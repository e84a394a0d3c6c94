#include "quant/requantize.h"

#include "core/error.h"
#include "kernels/cpu/quant.h"

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

RequantizeReport requantize(
    io::ModelFile& m, DType type, ThreadPool& pool,
    const std::function<void(size_t, size_t, const std::string&)>& progress) {
  check(dtype_layout(type).storage, "cannot store weights as ", dtype_name(type));
  RequantizeReport rep;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    gguf::TensorInfo& t = m.tensors[i];
    if (progress) progress(i, m.tensors.size(), t.name);
    if (t.shape.size() != 2) continue;  // norms, biases, rope factors stay as they are
    const int64_t n_in = t.shape[0], n_out = t.shape[1];
    const DType to = fallback_type(type, n_in);
    if (to != type) {
      ++rep.n_fallback;
      rep.fallbacks += str_cat(rep.fallbacks.empty() ? "" : "; ", t.name, ": ", dtype_name(type),
                               " -> ", dtype_name(to));
    }
    if (to == t.type) continue;
    const kernels::QuantKernels& src = kernels::quant_kernels(t.type);
    const kernels::QuantKernels& dst = kernels::quant_kernels(to);
    const size_t src_rb = row_bytes(t.type, n_in), dst_rb = row_bytes(to, n_in);
    std::vector<uint8_t> out(dst_rb * static_cast<size_t>(n_out));
    const uint8_t* in = t.data;
    pool.parallel_for(n_out, [&](int64_t b, int64_t e, int) {
      std::vector<float> row(static_cast<size_t>(n_in));
      for (int64_t r = b; r < e; ++r) {
        src.to_float(in + static_cast<size_t>(r) * src_rb, row.data(), n_in);
        dst.from_float(row.data(), out.data() + static_cast<size_t>(r) * dst_rb, n_in);
      }
    });
    auto buf = std::make_shared<std::vector<uint8_t>>(std::move(out));
    t.type = to;
    t.data = buf->data();
    t.nbytes = buf->size();
    m.owned.push_back(std::move(buf));
    ++rep.n_converted;
  }
  return rep;
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
