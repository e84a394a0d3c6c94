#include "quant/calib.h"

#include <cblas.h>

#include <algorithm>

#include "core/error.h"

namespace brisk::quant {

float* CalibModel::mat(int64_t layer, train::Mat m) {
  const train::ParamLayout::Layer& L = layout.layer(layer);
  size_t idx = 0;
  switch (m) {
    case train::Mat::Q:
      idx = L.wq;
      break;
    case train::Mat::K:
      idx = L.wk;
      break;
    case train::Mat::V:
      idx = L.wv;
      break;
    case train::Mat::O:
      idx = L.wo;
      break;
    case train::Mat::Gate:
      idx = L.gate;
      break;
    case train::Mat::Up:
      idx = L.up;
      break;
    case train::Mat::Down:
      idx = L.down;
      break;
  }
  return params.data() + layout.params()[idx].offset;
}

float* CalibModel::attn_norm(int64_t layer) {
  return params.data() + layout.params()[layout.layer(layer).attn_norm].offset;
}

float* CalibModel::ffn_norm(int64_t layer) {
  return params.data() + layout.params()[layout.layer(layer).ffn_norm].offset;
}

float* CalibModel::output_norm() {
  return params.data() + layout.params()[layout.output_norm()].offset;
}

float* CalibModel::tensor(const std::string& name) {
  return params.data() + layout.at(name).offset;
}

std::string site_tensor_name(int64_t layer, train::Mat m) {
  return str_cat("blk.", layer, ".", train::mat_tensor_name(m), ".weight");
}

train::Batch calib_batch(std::span<const int32_t> tokens, int64_t n_ctx, int64_t max_tokens) {
  check(n_ctx >= 2, "calibration: the context must be at least 2 tokens");
  train::Batch b;
  b.seq_start.push_back(0);
  const int64_t N = std::min<int64_t>(static_cast<int64_t>(tokens.size()), max_tokens);
  for (int64_t s = 0; s + 2 <= N; s += n_ctx) {
    const int64_t e = std::min(N, s + n_ctx);
    for (int64_t i = s; i < e; ++i) {
      b.tokens.push_back(tokens[static_cast<size_t>(i)]);
      b.targets.push_back(i + 1 < e ? tokens[static_cast<size_t>(i + 1)] : train::Batch::kIgnore);
    }
    b.seq_start.push_back(static_cast<int64_t>(b.tokens.size()));
  }
  check(b.n_tokens() >= 2, "calibration: need at least 2 tokens of calibration text, got ",
        tokens.size());
  return b;
}

std::vector<float> gram(const float* X, int64_t n, int64_t cols, float scale) {
  std::vector<float> H(static_cast<size_t>(cols * cols));
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(cols), static_cast<int>(n),
              scale, X, static_cast<int>(cols), 0.0f, H.data(), static_cast<int>(cols));
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < i; ++j) H[i * cols + j] = H[j * cols + i];
  return H;
}

std::vector<float> input_hessian(const float* X, int64_t n, int64_t cols) {
  return gram(X, n, cols, 2.0f / static_cast<float>(n));
}

namespace {

class Hook final : public train::LinearHook<float> {
 public:
  Hook(CalibModel& m, CalibProcessor& p,
       const std::function<void(int64_t, int64_t, const std::string&)>& progress)
      : m_(m), p_(p), progress_(progress) {}
  void forward(int64_t layer, train::Mat mat, const float* x, float* y, int64_t N) override {
    CalibSite s;
    s.layer = layer;
    s.mat = mat;
    s.tensor = site_tensor_name(layer, mat);
    const train::ParamInfo& info = m_.layout.at(s.tensor);
    s.rows = info.rows;
    s.cols = info.cols;
    // The trainer hands q/k/v (and gate/up) one normalised buffer, untouched between the calls.
    s.same_input = x == last_x_ && layer == last_layer_ && N == last_n_;
    last_x_ = x;
    last_layer_ = layer;
    last_n_ = N;
    if (progress_) progress_(site_++, m_.shape.layers * train::kNumMats + 1, s.tensor);
    float* W = m_.mat(layer, mat);
    p_.process(s, x, N, W, m_);
    // y (N, rows) = x (N, cols) W^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(N),
                static_cast<int>(s.rows), static_cast<int>(s.cols), 1.0f, x,
                static_cast<int>(s.cols), W, static_cast<int>(s.cols), 0.0f, y,
                static_cast<int>(s.rows));
  }
  void before_output(const float* x, int64_t N) override {
    const train::ParamInfo& info = m_.layout.params()[m_.layout.output()];
    CalibSite s;
    s.output = true;
    s.tensor = info.name;  // "token_embd.weight" when tied
    s.rows = info.rows;
    s.cols = info.cols;
    if (progress_) progress_(site_++, m_.shape.layers * train::kNumMats + 1, s.tensor);
    p_.process(s, x, N, m_.params.data() + info.offset, m_);
  }
  void backward(int64_t, train::Mat, const float*, const float*, float*, int64_t, bool) override {
    fail("calibration: no backward pass");
  }

 private:
  CalibModel& m_;
  CalibProcessor& p_;
  const std::function<void(int64_t, int64_t, const std::string&)>& progress_;
  int64_t site_ = 0;
  const float* last_x_ = nullptr;
  int64_t last_layer_ = -1, last_n_ = 0;
};

}  // namespace

double run_calibration(const train::ModelShape& s, std::vector<float>& params,
                       const train::Batch& b, CalibProcessor& p, int threads,
                       const std::function<void(int64_t, int64_t, const std::string&)>& progress) {
  train::LlamaTrainer<float> tr(s, threads);
  check(params.size() == tr.layout().total(), "calibration: ", params.size(),
        " parameters, the shape needs ", tr.layout().total());
  CalibModel m{s, tr.layout(), params};
  Hook hook(m, p, progress);
  tr.set_hook(&hook);
  train::StepOptions o;
  o.grad = false;
  const train::StepResult r = tr.step(b, params.data(), nullptr, o);
  return r.n_counted ? r.loss_sum / static_cast<double>(r.n_counted) : 0.0;
}

}  // namespace brisk::quant
