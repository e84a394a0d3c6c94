// The readable configuration of `brisk train`: `key = value` lines grouped in [sections], `#`
// comments. Every key is validated; an unknown key or section is an error (a typo must not
// silently fall back to a default). See configs/*.conf for complete examples.
//
//   [model]  preset | dim layers heads kv_heads ffn context rope_base norm_eps tied ; init (GGUF
//            or HF model to fine-tune from: its shape wins)
//   [data]   tokenizer train val mode (windows | budget) seq_len batch_size token_budget
//            max_seq_len
//   [optim]  optimizer (adamw | lion) lr min_lr warmup beta1 beta2 eps weight_decay grad_clip
//   [train]  steps micro_batches global_tokens precision (fp32 | bf16 | fp16) checkpointing seed
//            threads log_interval eval_interval eval_batches checkpoint_interval out export_type
//            export_hf
//   [lora]   rank (0 = full fine-tuning) alpha dropout targets (attn_q,... | all) base_type
//            (f32 = LoRA; q8_0 / q4_0 / ... = QLoRA) ; needs model.init
//   [distill] teacher (a model file) alpha (weight of the KL term) tau (temperature)
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "core/dtype.h"
#include "train/llama_train.h"
#include "train/lora_hook.h"
#include "train/optim.h"
#include "train/params.h"

namespace brisk::train {

// key = value pairs by "section.key", with typed, checked getters.
class ConfigFile {
 public:
  static ConfigFile parse(const std::string& text, const std::string& name);
  static ConfigFile load(const std::string& path);
  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  std::string str(const std::string& key, const std::string& def) const;
  int64_t integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) const;
  double number(const std::string& key, double def, double lo, double hi) const;
  bool boolean(const std::string& key, bool def) const;
  // Throws naming the first key no getter asked for.
  void check_all_used() const;
  const std::string& text() const { return text_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_, text_;
  std::map<std::string, std::pair<std::string, int>> kv_;  // value, line
  mutable std::map<std::string, bool> used_;
};

struct TrainConfig {
  ModelShape shape;
  std::string init;  // fine-tune from this model
  std::string tokenizer, train_data, val_data;
  bool budget_mode = false;
  int64_t seq_len = 256, batch_size = 8, token_budget = 4096, max_seq_len = 256;
  OptimizerConfig optim;
  int64_t steps = 1000, micro_batches = 1, global_tokens = 0;
  Precision precision = Precision::F32;
  bool checkpointing = false;
  uint64_t seed = 1;
  int threads = 0;  // 0: the machine's cores
  int64_t log_interval = 10, eval_interval = 100, eval_batches = 20, checkpoint_interval = 200;
  std::string out = "runs/train";
  DType export_type = DType::F32;
  bool export_hf = false;
  int64_t lora_rank = 0;  // > 0: train LoRA adapters only
  LoraConfig lora;
  std::string teacher;  // distillation teacher model
  double kd_alpha = 0.5, kd_tau = 2.0;
  std::string text;  // the file as written (stored in checkpoints)
};

TrainConfig read_train_config(const ConfigFile& f);

}  // namespace brisk::train
