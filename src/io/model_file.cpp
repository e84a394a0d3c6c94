#include "io/model_file.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/llama2c/llama2c.h"
#include "io/safetensors/hf_dir.h"

namespace brisk::io {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool has_gguf_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  return f.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

// Copies every tokenizer.* key of the GGUF at `vocab_path` into `m`; the token count must match
// the model's vocabulary when both are known.
void attach_vocab(ModelFile& m, const std::string& vocab_path) {
  gguf::GgufFile v = gguf::GgufFile::open(vocab_path);
  size_t n = 0;
  for (const auto& [k, val] : v.metadata())
    if (k.rfind("tokenizer.", 0) == 0) {
      m.set(k, val);
      ++n;
    }
  if (n == 0) fail(vocab_path, ": no tokenizer.* metadata to take the vocabulary from");
  const gguf::Value* toks = m.find("tokenizer.ggml.tokens");
  const gguf::TensorInfo* emb = m.find_tensor("token_embd.weight");
  if (toks && emb && emb->shape.size() == 2) {
    if (toks->type != gguf::ValueType::ARRAY)
      fail(vocab_path, ": tokenizer.ggml.tokens is not an array");
    const size_t n_tok = toks->arr.size();
    if (static_cast<int64_t>(n_tok) != emb->shape[1])
      fail(vocab_path, ": vocabulary of ", n_tok, " tokens does not match the model's ",
           emb->shape[1], " embeddings");
  }
}

}  // namespace

const gguf::Value* ModelFile::find(std::string_view key) const {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

const gguf::TensorInfo* ModelFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

void ModelFile::set(const std::string& key, gguf::Value v) {
  for (auto& [k, old] : metadata)
    if (k == key) {
      old = std::move(v);
      return;
    }
  metadata.emplace_back(key, std::move(v));
}

void ModelFile::add_owned_tensor(std::string name, DType type, std::vector<int64_t> shape,
                                 std::vector<uint8_t> bytes) {
  check(!shape.empty(), path, ": tensor '", name, "': empty shape");
  int64_t rows = 1;
  for (size_t d = 1; d < shape.size(); ++d) rows *= shape[d];
  const size_t expect = row_bytes(type, shape[0]) * static_cast<size_t>(rows);
  check(expect == bytes.size(), path, ": tensor '", name, "': ", bytes.size(),
        " bytes, shape needs ", expect);
  auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  gguf::TensorInfo t;
  t.name = std::move(name);
  t.type = type;
  t.shape = std::move(shape);
  t.nbytes = buf->size();
  t.data = buf->data();
  owned.push_back(std::move(buf));
  // Replace a tensor of the same name in place (keeps file order), else append.
  for (auto& old : tensors)
    if (old.name == t.name) {
      old = std::move(t);
      return;
    }
  tensors.push_back(std::move(t));
}

ModelFile model_file_from_gguf(const gguf::GgufFile& f) {
  ModelFile m;
  m.path = f.path();
  m.format = "gguf";
  m.metadata = f.metadata();
  m.tensors = f.tensors();
  if (auto map = f.mapping()) m.mappings.push_back(std::move(map));
  return m;
}

ModelFile load_model_file(const std::string& path, const LoadOptions& opts) {
  namespace fs = std::filesystem;
  std::error_code ec;
  ModelFile m;
  if (fs::is_directory(path, ec)) {
    m = load_hf_dir(path);
  } else if (has_gguf_magic(path)) {
    m = model_file_from_gguf(gguf::GgufFile::open(path));
  } else if (ends_with(path, ".safetensors")) {
    m = load_safetensors_model(path);
  } else {
    // llama2.c has no magic: it is the fallback, and its exact-size check rejects everything else.
    try {
      m = llama2c::load(path);
    } catch (const Error& e) {
      fail(e.what(),
           " (no GGUF magic and no .safetensors extension, so read as a llama2.c checkpoint)");
    }
  }
  if (!opts.vocab_from.empty()) {
    attach_vocab(m, opts.vocab_from);
  }
  return m;
}

void write_gguf(const ModelFile& m, const std::string& path) {
  gguf::GgufWriter w;
  for (const auto& [k, v] : m.metadata) w.set(k, v);
  for (const auto& t : m.tensors) w.add_tensor(t.name, t.type, t.shape, t.data, t.nbytes);
  w.write(path);
}

}  // namespace brisk::io
