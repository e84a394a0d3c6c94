#include "quant/imatrix.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/gguf/gguf.h"
#include "io/model_file.h"

namespace brisk::quant {

const std::vector<float>* Imatrix::find(const std::string& tensor) const {
  auto it = values.find(tensor);
  return it == values.end() ? nullptr : &it->second;
}

void ImatrixCollector::process(const CalibSite& s, const float* X, int64_t n, float*, CalibModel&) {
  if (s.same_input && !last_.empty()) {  // k / v after q, up after gate: the same statistics
    im_.values[s.tensor] = im_.values[last_];
    last_ = s.tensor;
    return;
  }
  std::vector<double> acc(static_cast<size_t>(s.cols), 0.0);
  for (int64_t t = 0; t < n; ++t) {
    const float* x = X + t * s.cols;
    for (int64_t j = 0; j < s.cols; ++j) acc[static_cast<size_t>(j)] += double(x[j]) * x[j];
  }
  std::vector<float>& v = im_.values[s.tensor];
  v.resize(static_cast<size_t>(s.cols));
  for (int64_t j = 0; j < s.cols; ++j)
    v[static_cast<size_t>(j)] =
        static_cast<float>(acc[static_cast<size_t>(j)] / static_cast<double>(n));
  n_ = n;
  last_ = s.tensor;
}

Imatrix ImatrixCollector::take(std::string dataset) {
  im_.tokens = static_cast<uint64_t>(n_);
  im_.dataset = std::move(dataset);
  return std::move(im_);
}

void write_imatrix(const Imatrix& im, const std::string& path) {
  io::ModelFile f;
  f.set("general.type", gguf::Value::string("imatrix"));
  f.set("imatrix.tokens", gguf::Value::u64(im.tokens));
  f.set("imatrix.dataset", gguf::Value::string(im.dataset));
  for (const auto& [name, v] : im.values) {
    std::vector<uint8_t> bytes(v.size() * sizeof(float));
    std::memcpy(bytes.data(), v.data(), bytes.size());
    f.add_owned_tensor(name, DType::F32, {static_cast<int64_t>(v.size())}, std::move(bytes));
  }
  io::write_gguf(f, path);
}

Imatrix read_imatrix(const std::string& path) {
  const gguf::GgufFile g = gguf::GgufFile::open(path);
  const auto type = g.get_string("general.type");
  check(type && *type == "imatrix", path,
        ": not an importance matrix (general.type is not \"imatrix\"; write one with brisk "
        "imatrix)");
  Imatrix im;
  im.tokens = static_cast<uint64_t>(g.get_int("imatrix.tokens").value_or(0));
  im.dataset = g.get_string("imatrix.dataset").value_or("");
  for (const gguf::TensorInfo& t : g.tensors()) {
    check(t.type == DType::F32 && t.shape.size() == 1, path, ": imatrix entry ", t.name,
          " is not a 1-D f32 tensor");
    std::vector<float> v(static_cast<size_t>(t.shape[0]));
    std::memcpy(v.data(), t.data, v.size() * sizeof(float));
    for (float x : v)
      check(std::isfinite(x) && x >= 0, path, ": imatrix entry ", t.name,
            " holds a negative or non-finite value");
    im.values.emplace(t.name, std::move(v));
  }
  check(!im.values.empty(), path, ": the importance matrix is empty");
  return im;
}

}  // namespace brisk::quant
