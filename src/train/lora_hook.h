// LoRA and QLoRA training: low-rank adapters over frozen base matrices.
//
// For a target matrix W (out, in) the layer computes y = x W^T + s * (drop(x) A^T) B^T with
// A (r, in) ~ N(0, 1/in) and B (out, r) = 0 (the adapter starts as the
// identity change), s = alpha / r, drop = inverted dropout with probability p on the adapter's
// input only (a pure function of (seed, step, micro-batch, layer, matrix), so the checkpointed
// recomputation and a resumed run see the same mask).
// The base is f32 (LoRA) or stored in a block type such as Q4_0 / Q8_0 (QLoRA: about 4.5 / 8.5 bits
// per weight resident); a quantised matrix is dequantised into a per-thread scratch for each
// product (O(out * in) against the product's O(N * out * in)). Matrices that are not targets run
// on the frozen base too. Only the adapters have gradients.
//
// Adapter parameters live in one flat f32 array: for each (layer, target) in order, A then B.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "train/llama_train.h"
#include "train/optim.h"

namespace brisk::train {

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0;
  std::vector<Mat> targets = {Mat::Q, Mat::V};
  DType base_type = DType::F32;  // F32: LoRA; a block type: QLoRA
  uint64_t seed = 1;
};
// "attn_q,attn_v,ffn_down" or "all" -> matrices.
std::vector<Mat> parse_lora_targets(const std::string& s);

class LoraHook : public LinearHook<float> {
 public:
  // base_params: the full model's f32 parameters (layout of model.layout()); the matrices are
  // copied (or quantised) into the hook, so the caller may keep or drop its copy of them.
  LoraHook(const LlamaTrainer<float>& model, const float* base_params, const LoraConfig& c);

  std::vector<float>& params() { return params_; }
  std::vector<float>& grads() { return grads_; }
  std::vector<DecayRange> decay_ranges() const;
  const LoraConfig& config() const { return c_; }
  // Bytes the frozen base matrices occupy in the hook (the QLoRA memory saving).
  size_t base_bytes() const;
  // The dropout key of the coming forward/backward: the trainer's step and micro-batch.
  void set_step(uint64_t step, uint64_t micro) override { key_ = (step << 20) ^ micro; }

  struct Target {
    int64_t layer;
    Mat mat;
    int64_t in, out;
    size_t a_off, b_off;  // into params()
  };
  const std::vector<Target>& targets() const { return targets_; }
  // W + s * B A for every target, written into `full` (layout of the model): the merged weights.
  void merge_into(float* full) const;

  void forward(int64_t layer, Mat m, const float* x, float* y, int64_t N) override;
  void backward(int64_t layer, Mat m, const float* x, const float* dy, float* dx, int64_t N,
                bool accumulate_dx) override;

 private:
  struct Base {
    int64_t in = 0, out = 0;
    DType type = DType::F32;
    std::vector<uint8_t> bytes;  // (out, in) rows in `type`
    int target = -1;             // index into targets_, or -1
    size_t w_off = 0;            // offset of the matrix in the full model's layout
  };
  uint64_t mask_key(int64_t layer, Mat m) const;
  const float* base_f32(const Base& b, std::vector<float>& scratch) const;
  // drop(x) into xd (N, in); returns x itself when dropout is off.
  const float* dropped(const float* x, int64_t N, int64_t in, int64_t layer, Mat m,
                       std::vector<float>& xd) const;
  LoraConfig c_;
  float scale_ = 1;
  std::vector<Base> base_;  // (layer * kNumMats + mat)
  std::vector<Target> targets_;
  std::vector<float> params_, grads_;
  uint64_t key_ = 0;
  std::vector<float> w_scratch_, xd_, xa_, dxa_;
};

}  // namespace brisk::train
