// Merging LoRA adapters into a base model's matrices (`brisk lora merge`): W' = W + f B A per
// adapter, f = scale * alpha / r. Each merged matrix is computed when the GGUF writer reaches it
// (GgufWriter::add_tensor_fn), so memory holds one f32 matrix at a time, not the whole model.
#include <cmath>
#include <map>

#include "core/error.h"
#include "io/gguf/gguf.h"
#include "kernels/cpu/quant.h"
#include "model/hparams.h"
#include "model/lora.h"

namespace brisk::model {

namespace {

struct Contribution {
  const LoraTarget* t;
  float f;
};

// dst (row_bytes(out_type, n_in) * n_out bytes) = W + sum f B A, W the (n_out, n_in) matrix at src.
void merge_matrix(const gguf::TensorInfo& src, std::span<const Contribution> cs, DType out_type,
                  uint8_t* dst, ThreadPool& pool) {
  const int64_t n_in = src.shape[0], n_out = src.shape[1];
  const kernels::QuantKernels& in = kernels::quant_kernels(src.type);
  const kernels::QuantKernels& out = kernels::quant_kernels(out_type);
  const size_t in_row = row_bytes(src.type, n_in), out_row = row_bytes(out_type, n_in);
  // Rows in chunks: each thread dequantises a row, adds the adapters' row of B A, stores it.
  pool.parallel_for(n_out, [&](int64_t b, int64_t e, int) {
    std::vector<float> w(static_cast<size_t>(n_in));
    for (int64_t o = b; o < e; ++o) {
      in.to_float(src.data + static_cast<size_t>(o) * in_row, w.data(), n_in);
      for (const Contribution& c : cs) {
        const int64_t r = c.t->rank;
        for (int64_t j = 0; j < r; ++j) {
          // Row o of f B A: sum over j of f B[o][j] times row j of A.
          const float s = c.f * c.t->b[static_cast<size_t>(o * r + j)];
          if (s == 0.0f) continue;
          const float* a = c.t->a.data() + j * n_in;
          for (int64_t i = 0; i < n_in; ++i) w[static_cast<size_t>(i)] += s * a[i];
        }
      }
      out.from_float(w.data(), dst + static_cast<size_t>(o) * out_row, n_in);
    }
  });
}

}  // namespace

size_t merge_lora(const io::ModelFile& base, std::span<const LoraMergeInput> adapters,
                  const std::string& out_path, std::optional<DType> type, ThreadPool& pool,
                  const std::function<void(size_t, size_t, const std::string&)>& progress) {
  check(!adapters.empty(), "lora merge: no adapters given");
  if (type)
    check(*type == DType::F32 || *type == DType::F16 || *type == DType::BF16,
          "lora merge: output type must be f32, f16, bf16 or keep, not ", dtype_name(*type));
  const gguf::Value* av = base.find("general.architecture");
  if (!av) fail(base.path, ": missing metadata 'general.architecture' (is this a model file?)");
  if (const gguf::Value* t = base.find("general.type");
      t && t->type == gguf::ValueType::STRING && t->str == "adapter")
    fail(base.path, ": this is a LoRA adapter, not a base model");
  const std::string& arch_name = av->as_string("general.architecture");
  const ArchSpec* arch = find_arch(arch_name);
  if (!arch)
    fail(base.path, ": unsupported architecture '", arch_name,
         "' (supported: ", supported_arch_list(), ")");
  const HParams hp = read_hparams(base, arch_name);

  // Base tensor name -> the adapters' contributions, in the order given.
  std::map<std::string, std::vector<Contribution>> merges;
  for (const LoraMergeInput& in : adapters) {
    check(in.adapter != nullptr, "lora merge: null adapter");
    const std::string src = in.adapter->path.empty() ? "adapter" : in.adapter->path;
    check(std::isfinite(in.scale), src, ": the LoRA scale must be finite");
    check_lora_fits(*in.adapter, base, *arch, hp.n_layer);
    for (const LoraTarget& t : in.adapter->targets)
      merges[t.name].push_back({&t, in.adapter->factor(t, in.scale)});
  }

  gguf::GgufWriter w;
  for (const auto& [k, v] : base.metadata) w.set(k, v);
  const size_t n_merge = merges.size();
  size_t done = 0;
  auto add_merged = [&](const std::string& name, const gguf::TensorInfo& src) {
    if (!kernels::has_quant_kernels(src.type))
      fail(base.path, ": tensor '", src.name, "' has type ", dtype_name(src.type),
           " which brisk cannot dequantise");
    const DType out_type = type.value_or(src.type);
    const size_t nbytes = row_bytes(out_type, src.shape[0]) * static_cast<size_t>(src.shape[1]);
    const std::vector<Contribution>& cs = merges.at(name);
    w.add_tensor_fn(name, out_type, src.shape, nbytes,
                    [&, name, out_type, s = &src, c = &cs](uint8_t* dst) {
                      if (progress) progress(done, n_merge, name);
                      ++done;
                      merge_matrix(*s, *c, out_type, dst, pool);
                    });
  };
  for (const gguf::TensorInfo& t : base.tensors) {
    if (merges.count(t.name))
      add_merged(t.name, t);
    else
      w.add_tensor(t.name, t.type, t.shape, t.data, t.nbytes);
  }
  // output.weight of a tied model: a new untied matrix, token_embd.weight + delta.
  const std::string out_name = tensor_name(*arch, TensorRole::Output);
  if (merges.count(out_name) && !base.find_tensor(out_name))
    add_merged(out_name, *base.find_tensor(tensor_name(*arch, TensorRole::TokenEmbd)));
  w.write(out_path);
  return n_merge;
}

}  // namespace brisk::model
