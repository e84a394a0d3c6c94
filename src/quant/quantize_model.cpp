#include "quant/quantize_model.h"

#include <cstring>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "quant/requantize.h"

namespace brisk::quant {

int64_t count_layers(const io::ModelFile& m) {
  int64_t n = 0;
  for (const gguf::TensorInfo& t : m.tensors) {
    if (t.name.rfind("blk.", 0) != 0) continue;
    n = std::max<int64_t>(n, std::atoll(t.name.c_str() + 4) + 1);
  }
  return n;
}

namespace {
// The recipe's type before the block-size fallback.
DType wanted_type(const io::ModelFile& m, const gguf::TensorInfo& t, const QuantizeOptions& o) {
  const bool is_output = t.name == "output.weight" ||
                         (t.name == "token_embd.weight" && !m.find_tensor("output.weight"));
  if (is_output && o.keep_output_f16) return DType::F16;
  return o.recipe.type_for(is_output ? "output.weight" : t.name, count_layers(m));
}
}  // namespace

DType target_type(const io::ModelFile& m, const gguf::TensorInfo& t, const QuantizeOptions& o) {
  if (t.shape.size() != 2) return t.type;
  return fallback_type(wanted_type(m, t, o), t.shape[0]);
}

std::vector<uint8_t> quantize_matrix(const float* W, int64_t rows, int64_t cols, DType type,
                                     const float* importance, ThreadPool& pool) {
  const size_t rb = row_bytes(type, cols);
  std::vector<uint8_t> out(rb * static_cast<size_t>(rows));
  pool.parallel_for(rows, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r)
      kernels::quantize_row_weighted(type, W + r * cols, out.data() + static_cast<size_t>(r) * rb,
                                     cols, importance);
  });
  return out;
}

void replace_tensor(io::ModelFile& m, const std::string& name, DType type,
                    std::vector<uint8_t> bytes) {
  for (gguf::TensorInfo& t : m.tensors) {
    if (t.name != name) continue;
    int64_t rows = 1;
    for (size_t i = 1; i < t.shape.size(); ++i) rows *= t.shape[i];
    check(bytes.size() == row_bytes(type, t.shape[0]) * static_cast<size_t>(rows),
          "replace_tensor: ", name, ": ", bytes.size(), " bytes do not fit its shape as ",
          dtype_name(type));
    auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    t.type = type;
    t.data = buf->data();
    t.nbytes = buf->size();
    m.owned.push_back(std::move(buf));
    return;
  }
  fail("replace_tensor: the model has no tensor ", name);
}

void store_params(io::ModelFile& m, const train::ParamLayout& lay, const std::vector<float>& params,
                  const std::set<std::string>* only) {
  for (const train::ParamInfo& p : lay.params()) {
    if (only && !only->count(p.name)) continue;
    std::vector<uint8_t> bytes(p.size() * sizeof(float));
    std::memcpy(bytes.data(), params.data() + p.offset, bytes.size());
    replace_tensor(m, p.name, DType::F32, std::move(bytes));
  }
}

QuantizeReport quantize_model(
    io::ModelFile& m, const QuantizeOptions& o, ThreadPool& pool, const std::set<std::string>& done,
    const std::function<void(size_t, size_t, const std::string&)>& progress) {
  QuantizeReport rep;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const gguf::TensorInfo t = m.tensors[i];
    if (progress) progress(i, m.tensors.size(), t.name);
    if (t.shape.size() != 2) continue;
    const DType want = wanted_type(m, t, o), to = fallback_type(want, t.shape[0]);
    if (to != want) {
      ++rep.n_fallback;
      rep.fallbacks += str_cat(rep.fallbacks.empty() ? "" : "; ", t.name, ": ", dtype_name(want),
                               " -> ", dtype_name(to));
    }
    if (done.count(t.name)) continue;
    const int64_t cols = t.shape[0], rows = t.shape[1];
    std::vector<float> W(static_cast<size_t>(rows * cols));
    const kernels::QuantKernels& src = kernels::quant_kernels(t.type);
    const size_t src_rb = row_bytes(t.type, cols);
    pool.parallel_for(rows, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r)
        src.to_float(t.data + static_cast<size_t>(r) * src_rb, W.data() + r * cols, cols);
    });
    const std::vector<float>* imp = o.imatrix ? o.imatrix->find(t.name) : nullptr;
    if (imp && static_cast<int64_t>(imp->size()) != cols)
      fail("imatrix entry ", t.name, " has ", imp->size(), " columns, the tensor ", cols);
    rep.n_imatrix += imp != nullptr;
    replace_tensor(m, t.name, to,
                   quantize_matrix(W.data(), rows, cols, to, imp ? imp->data() : nullptr, pool));
    ++rep.n_quantized;
  }
  return rep;
}

}  // namespace brisk::quant
