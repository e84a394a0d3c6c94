// Forward and hand-written backward of the llama architecture for training.
//
// One call runs a packed micro-batch (train/batch.h) forward, takes the cross-entropy (optionally
// mixed with a distillation KL term), and backpropagates into a gradient array with the parameter
// layout of train/params.h (accumulating, so several micro-batches add up to one step).
//
// Activations: per layer the forward keeps x_in (N, D), r1 (N), q (N, H*hd) and k (N, G*hd) after
// RoPE, v (N, G*hd), the attention output o (N, H*hd), its log-sum-exp (N, H), x_mid (N, D), r2
// (N), gate and up (N, F). The normed inputs and the SwiGLU product are recomputed in the
// backward (cheap, O(N*D) / O(N*F)); attention probabilities are recomputed from q, k and the
// log-sum-exp (nothing (T, T) is stored).
//
// Precision: activations are stored in f32, bf16 or f16 (Precision); master weights and gradients
// are f32. Matrix products are f32 (OpenBLAS), or in bf16 mode on CPUs with AVX512-BF16 bf16
// products with f32 sums (kernels/cpu/gemm_bf16.h). In the half modes, the gradient of the residual
// stream passed from layer to layer is also rounded to the storage type, so fp16 needs loss
// scaling (trainer.h) exactly as on hardware that stores it in fp16.
// Checkpointing: only x_in of each layer is kept; the backward recomputes the layer's forward
// (same code, same thread split, so the gradients are bit-identical to the stored-activation run).
//
// Matrices may be replaced by a LinearHook (LoRA / QLoRA adapters over a frozen, possibly
// quantised base); the rest of the parameters then stay frozen when train_base is false.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "train/batch.h"
#include "train/params.h"

namespace brisk::train {

enum class Precision { F32, BF16, F16 };
const char* precision_name(Precision p);
Precision parse_precision(const std::string& s);  // "fp32"/"f32", "bf16", "fp16"/"f16"

// The seven matrices of a layer.
enum class Mat { Q = 0, K, V, O, Gate, Up, Down };
constexpr int kNumMats = 7;
const char* mat_tensor_name(Mat m);  // "attn_q", ..., "ffn_down"

// Replaces the dense matrices of the layers (LoRA over a frozen base, QLoRA over a quantised one).
// x (N, in) -> y (N, out); backward writes dx (or accumulates when accumulate_dx) and accumulates
// the hook's own gradients.
template <class T>
class LinearHook {
 public:
  virtual ~LinearHook() = default;
  virtual void forward(int64_t layer, Mat m, const T* x, T* y, int64_t N) = 0;
  virtual void backward(int64_t layer, Mat m, const T* x, const T* dy, T* dx, int64_t N,
                        bool accumulate_dx) = 0;
  // Called before each micro-batch's forward + backward (keys LoRA dropout masks).
  virtual void set_step(uint64_t step, uint64_t micro) {}
  // Sees the final normalised hidden states x (N, D) just before the output projection reads the
  // output matrix (the calibration pass of quant/calib.h may rewrite that matrix here).
  virtual void before_output(const T* x, int64_t N) {}
};

struct StepOptions {
  bool grad = true;            // false: loss only (validation)
  bool checkpointing = false;  // recompute each layer in the backward
  Precision precision = Precision::F32;
  double loss_scale = 1.0;  // the gradient is of loss * loss_scale
  double denominator = 0;   // loss tokens of the whole global batch (0: this micro-batch's)
  bool train_base = true;   // false: no gradient for norms / embeddings / output (LoRA)
  // Distillation: teacher probabilities at temperature kd_tau (N, V); the loss becomes
  // (1 - kd_alpha) * CE + kd_alpha * tau^2 * KL(teacher || student_tau).
  const float* teacher_probs = nullptr;
  double kd_alpha = 0, kd_tau = 1;
};

struct StepResult {
  double loss_sum = 0;  // summed over counted positions (CE part)
  double kl_sum = 0;    // summed distillation term (when a teacher is given)
  int64_t n_counted = 0;
};

template <class T>
class LlamaTrainer {
 public:
  LlamaTrainer(const ModelShape& shape, int n_threads);
  ~LlamaTrainer();
  const ModelShape& shape() const { return shape_; }
  const ParamLayout& layout() const { return layout_; }
  ThreadPool& pool() { return *pool_; }
  void set_hook(LinearHook<T>* hook) { hook_ = hook; }
  LinearHook<T>* hook() const { return hook_; }

  // params / grads have layout().total() entries; grads accumulate (+=).
  StepResult step(const Batch& b, const T* params, T* grads, const StepOptions& o);
  // Logits (N, V) of every position (no loss, no gradient): for parity with inference.
  void logits(const Batch& b, const T* params, std::vector<T>& out);
  // Bytes of activation storage the last step() held at its peak.
  size_t activation_bytes() const { return act_bytes_; }

 private:
  struct Impl;
  ModelShape shape_;
  ParamLayout layout_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Impl> impl_;
  LinearHook<T>* hook_ = nullptr;
  size_t act_bytes_ = 0;
};

}  // namespace brisk::train
