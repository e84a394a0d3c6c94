// The training loop: micro-batches accumulated into one optimizer step, loss scaling for fp16,
// clipping, the schedule, validation, and checkpoints that resume bit-identically.
//
// One step: draw micro-batches from the source until the step's token target is reached (a fixed
// count, or a token budget), count their loss tokens (the denominator of the mean), run forward +
// backward of each into one f32 gradient, then (fp16) skip the step and halve the loss scale if
// any gradient is not finite, else unscale, clip to the global norm and update.
//
// Determinism: every reduction has a fixed order, OpenBLAS is deterministic for a fixed thread
// count, and the data source's cursor is part of the checkpoint, so N steps + resume + M steps
// gives the losses of N + M uninterrupted steps (tests/unit/test_trainer.cpp).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "train/batch.h"
#include "train/llama_train.h"
#include "train/optim.h"

namespace brisk::train {

// Where micro-batches come from; state() / restore() make the position part of a checkpoint.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
  virtual std::vector<uint8_t> state() const = 0;
  virtual void restore(const std::vector<uint8_t>& s) = 0;
};

struct LoopConfig {
  int64_t micro_batches = 1;  // per optimizer step (ignored when global_tokens > 0)
  int64_t global_tokens = 0;  // > 0: draw micro-batches until this many tokens (token budget)
  Precision precision = Precision::F32;
  bool checkpointing = false;
  double init_loss_scale = 65536.0;     // fp16 only
  int64_t loss_scale_growth = 200;      // good steps before the scale doubles
  double kd_alpha = 0.5, kd_tau = 2.0;  // distillation mix, when a teacher is set
};

struct StepStats {
  int64_t step = 0;  // 1-based index of the optimizer step just taken (or skipped)
  double loss = 0;   // mean cross-entropy over the step's loss tokens
  double kl = 0;     // mean distillation term (0 without a teacher)
  double lr = 0, grad_norm = 0, loss_scale = 1;
  int64_t tokens = 0, loss_tokens = 0, micro_batches = 0;
  bool skipped = false;  // fp16 overflow: no update
  double seconds = 0;
};

// Produces teacher probabilities (N, V) at temperature tau for a batch (distillation).
using TeacherFn = std::function<void(const Batch&, double tau, std::vector<float>& probs)>;

class Trainer {
 public:
  // params: the initial f32 master weights (layout of model.layout(), or of the hook's adapter
  // parameters when a hook trains adapters only). grads of the same size are kept inside.
  Trainer(LlamaTrainer<float>& model, std::vector<float> params, const OptimizerConfig& opt,
          const LoopConfig& loop, BatchSource& source);
  // LoRA: the trainable parameters are the hook's; the base (params) stays frozen.
  void set_adapter_params(float* adapter_params, float* adapter_grads, size_t n,
                          std::vector<DecayRange> ranges);
  void set_teacher(TeacherFn t) { teacher_ = std::move(t); }

  StepStats step();
  // Mean loss over n_batches micro-batches of `val` (no gradient; restores val's position).
  double evaluate(BatchSource& val, int64_t n_batches);

  int64_t steps_done() const { return step_; }
  const std::vector<float>& params() const { return params_; }
  std::vector<float>& params() { return params_; }
  Optimizer& optimizer() { return *opt_; }
  double loss_scale() const { return loss_scale_; }
  size_t peak_activation_bytes() const { return peak_act_; }

  // Checkpoint: everything a bit-identical resume needs. `config_text` is stored for the record.
  void save(const std::string& path, const std::string& config_text) const;
  // Restores a checkpoint written by save() for the same shape and optimizer.
  void load(const std::string& path);

 private:
  float* train_params() { return adapter_ ? adapter_ : params_.data(); }
  float* train_grads() { return adapter_ ? adapter_grads_ : grads_.data(); }
  size_t n_train() const { return adapter_ ? n_adapter_ : params_.size(); }
  LlamaTrainer<float>& model_;
  std::vector<float> params_, grads_;
  float* adapter_ = nullptr;
  float* adapter_grads_ = nullptr;
  size_t n_adapter_ = 0;
  OptimizerConfig opt_cfg_;
  std::unique_ptr<Optimizer> opt_;
  LoopConfig loop_;
  BatchSource& source_;
  TeacherFn teacher_;
  int64_t step_ = 0;
  double loss_scale_ = 1;
  int64_t good_steps_ = 0;
  size_t peak_act_ = 0;
  std::vector<float> teacher_probs_;
};

}  // namespace brisk::train
