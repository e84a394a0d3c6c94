#include "train/export.h"

#include <cstring>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "model/hparams.h"

namespace brisk::train {

io::ModelFile export_model(const ModelShape& s, const ParamLayout& layout, const float* params,
                           const io::Metadata& tok, DType matrix_type, const std::string& name) {
  check(dtype_layout(matrix_type).storage, "export: ", dtype_name(matrix_type),
        " is not a storage type");
  io::ModelFile m;
  m.path = name;
  m.format = "gguf";
  const std::string p = "llama.";
  auto u32 = [](int64_t v) { return gguf::Value::u32(static_cast<uint32_t>(v)); };
  m.set("general.architecture", gguf::Value::string("llama"));
  m.set("general.name", gguf::Value::string(name));
  m.set(p + "context_length", u32(s.context));
  m.set(p + "embedding_length", u32(s.dim));
  m.set(p + "block_count", u32(s.layers));
  m.set(p + "feed_forward_length", u32(s.ffn));
  m.set(p + "attention.head_count", u32(s.heads));
  m.set(p + "attention.head_count_kv", u32(s.kv_heads));
  m.set(p + "rope.dimension_count", u32(s.head_dim()));
  m.set(p + "attention.layer_norm_rms_epsilon", gguf::Value::f32(static_cast<float>(s.norm_eps)));
  m.set(p + "rope.freq_base", gguf::Value::f32(static_cast<float>(s.rope_base)));
  m.set(p + "vocab_size", u32(s.vocab));
  for (const auto& [k, v] : tok) m.set(k, v);
  for (const ParamInfo& pi : layout.params()) {
    const bool norm = pi.rows == 1;
    const DType t = norm ? DType::F32 : matrix_type;
    check(pi.cols % dtype_layout(t).block_size == 0, "export: tensor '", pi.name, "' rows of ",
          pi.cols, " are not a multiple of the ", dtype_name(t), " block size");
    const size_t rb = row_bytes(t, pi.cols);
    std::vector<uint8_t> bytes(rb * static_cast<size_t>(pi.rows));
    const kernels::QuantKernels& k = kernels::quant_kernels(t);
    for (int64_t r = 0; r < pi.rows; ++r)
      k.from_float(params + pi.offset + static_cast<size_t>(r * pi.cols),
                   bytes.data() + static_cast<size_t>(r) * rb, pi.cols);
    std::vector<int64_t> shape =
        norm ? std::vector<int64_t>{pi.cols} : std::vector<int64_t>{pi.cols, pi.rows};
    m.add_owned_tensor(pi.name, t, std::move(shape), std::move(bytes));
  }
  return m;
}

io::Metadata tokenizer_metadata(const io::ModelFile& f) {
  io::Metadata out;
  for (const auto& [k, v] : f.metadata)
    if (k.rfind("tokenizer.", 0) == 0) out.emplace_back(k, v);
  return out;
}

ImportedModel import_model(const std::string& path) {
  io::ModelFile f = io::load_model_file(path);
  const gguf::Value* av = f.find("general.architecture");
  check(av != nullptr, path, ": no general.architecture");
  const std::string arch = av->as_string("general.architecture");
  check(arch == "llama", path, ": architecture '", arch, "' (training supports llama)");
  const model::HParams hp = model::read_hparams(f, arch);
  ImportedModel out;
  ModelShape& s = out.shape;
  s.dim = hp.n_embd;
  s.layers = hp.n_layer;
  s.heads = hp.n_head;
  s.kv_heads = hp.n_head_kv;
  s.ffn = hp.n_ff;
  s.vocab = hp.n_vocab;
  s.context = hp.n_ctx_train > 0 ? hp.n_ctx_train : 2048;
  s.rope_base = hp.rope_base;
  s.norm_eps = hp.rms_eps;
  s.tied = f.find_tensor("output.weight") == nullptr;
  check(hp.head_dim == s.dim / s.heads && hp.rope_dims == hp.head_dim &&
            hp.rope_scaling == model::RopeScalingType::None,
        path, ": training supports plain RoPE over whole heads of dim / heads");
  const ParamLayout layout = ParamLayout::llama(s);
  out.params.assign(layout.total(), 0.0f);
  for (const ParamInfo& pi : layout.params()) {
    const gguf::TensorInfo* t = f.find_tensor(pi.name);
    check(t != nullptr, path, ": missing tensor '", pi.name, "'");
    const int64_t rows = t->shape.size() > 1 ? t->shape[1] : 1;
    check(t->shape[0] == pi.cols && rows == pi.rows, path, ": tensor '", pi.name,
          "' has the wrong shape");
    const size_t rb = row_bytes(t->type, pi.cols);
    const kernels::QuantKernels& k = kernels::quant_kernels(t->type);
    for (int64_t r = 0; r < pi.rows; ++r)
      k.to_float(t->data + static_cast<size_t>(r) * rb,
                 out.params.data() + pi.offset + static_cast<size_t>(r * pi.cols), pi.cols);
  }
  out.tokenizer = tokenizer_metadata(f);
  return out;
}

}  // namespace brisk::train
