#include "quant/methods.h"

#include "quant/block_grid.h"

namespace brisk::quant {

void GptqProcessor::process(const CalibSite& s, const float* X, int64_t n, float* W, CalibModel&) {
  const DType t = type_of_(s.tensor);
  if (!has_block_grid(t)) return;  // kept in a float type (--keep-output-f16): nothing to do
  if (!s.same_input || H_.empty()) H_ = input_hessian(X, n, s.cols);
  std::vector<uint8_t> bytes = gptq_quantize(W, s.rows, s.cols, H_.data(), t, o_, &pool_);
  out_[s.tensor] = Out{t, std::move(bytes)};
}

void PruneProcessor::process(const CalibSite& s, const float* X, int64_t n, float* W, CalibModel&) {
  if (s.output) return;  // the output projection (and tied embeddings) are not pruned
  if (o_.method != PruneMethod::Magnitude && (!s.same_input || H_.empty()))
    H_ = input_hessian(X, n, s.cols);
  zeros_ += prune_matrix(W, s.rows, s.cols, H_.empty() ? nullptr : H_.data(), o_, &pool_);
  total_ += s.rows * s.cols;
}

}  // namespace brisk::quant
