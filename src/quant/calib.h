// Calibration: one forward pass of a llama model in f32 over calibration text, stopping at every
// linear layer so that a compression method can look at the layer's inputs and rewrite its
// weights (imatrix statistics, GPTQ, AWQ scale search, Wanda / SparseGPT pruning).
//
// The pass is the trainer's forward (train::LlamaTrainer<float>) with a LinearHook: for each of the
// 7 matrices of each layer, in forward order (q, k, v, o, gate, up, down; layer 0 first), and then
// the output projection, the processor sees X (n, in), the inputs of all n calibration tokens,
// and may overwrite W (out, in). The hook then computes the layer's output with the weights as they
// are after the processor, so later layers are calibrated on the outputs of the already-compressed
// earlier ones (the sequential scheme of GPTQ and SparseGPT). The whole calibration set goes
// through as one batch: memory is ~ n x (ffn + vocab) floats (8192 tokens of the default model:
// ~0.3 GB).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "train/batch.h"
#include "train/llama_train.h"
#include "train/params.h"

namespace brisk::quant {

struct CalibSite {
  int64_t layer = 0;
  train::Mat mat = train::Mat::Q;
  std::string tensor;  // GGUF name, e.g. "blk.3.attn_q.weight"
  int64_t rows = 0, cols = 0;
  // The output projection (after the layers; `layer` and `mat` unused). Its tensor is
  // "output.weight", or "token_embd.weight" when the embeddings are tied: rewriting it then also
  // changes the input embeddings, which the pass has already read.
  bool output = false;
  // X is the very input the previous site of this layer saw (k and v after q; up after gate):
  // statistics of X computed there can be reused.
  bool same_input = false;
};

// Access to the whole model during the pass (AWQ scales groups of matrices and folds into norms).
struct CalibModel {
  const train::ModelShape& shape;
  const train::ParamLayout& layout;
  std::vector<float>& params;
  float* mat(int64_t layer, train::Mat m);
  float* attn_norm(int64_t layer);
  float* ffn_norm(int64_t layer);
  float* output_norm();
  float* tensor(const std::string& name);  // any parameter of the layout by GGUF name
};

class CalibProcessor {
 public:
  virtual ~CalibProcessor() = default;
  // X: (n, s.cols) row-major inputs; W: (s.rows, s.cols) the current weights, writable.
  virtual void process(const CalibSite& s, const float* X, int64_t n, float* W, CalibModel& m) = 0;
};

// The calibration tokens cut into windows of n_ctx tokens, at most max_tokens in all (whole
// windows; a shorter last window is kept when it has at least 2 tokens).
train::Batch calib_batch(std::span<const int32_t> tokens, int64_t n_ctx, int64_t max_tokens);

// Runs the pass; progress(site index, total sites, tensor) before each site. Returns the mean
// next-token loss of the calibration batch under the weights as they were used (a sanity value).
double run_calibration(
    const train::ModelShape& s, std::vector<float>& params, const train::Batch& b,
    CalibProcessor& p, int threads,
    const std::function<void(int64_t, int64_t, const std::string&)>& progress = {});

// scale * X^T X, (cols, cols), both triangles filled (f32 sums by ssyrk).
std::vector<float> gram(const float* X, int64_t n, int64_t cols, float scale);
// H = (2 / n) X^T X, as GPTQ / SparseGPT define it.
std::vector<float> input_hessian(const float* X, int64_t n, int64_t cols);

// "blk.<layer>.<attn_q|...>.weight"
std::string site_tensor_name(int64_t layer, train::Mat m);

}  // namespace brisk::quant
