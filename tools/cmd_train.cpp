// brisk train --config FILE [--resume]: pretraining or full fine-tuning of a llama-architecture
// model from token shards written by `brisk data prepare` (train/train_config.h documents the
// file). Writes into the config's out directory: checkpoint.bin (atomic, every
// checkpoint_interval steps and at the end), log.jsonl (one line per logged step and per
// validation), config.conf (a copy) and the final model.gguf (+ hf/ when export_hf). --resume
// continues from checkpoint.bin bit-identically.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "io/safetensors/hf_dir.h"
#include "model/lora.h"
#include "train/batcher.h"
#include "train/bpe_trainer.h"
#include "train/export.h"
#include "train/grad_ops.h"
#include "train/lora_hook.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace brisk::cli {
namespace {

namespace fs = std::filesystem;

// The data helper's Batcher as the trainer's BatchSource.
class BatcherSource : public train::BatchSource {
 public:
  explicit BatcherSource(std::unique_ptr<train::Batcher> b) : b_(std::move(b)) {}
  train::Batch next() override { return b_->next(); }
  std::vector<uint8_t> state() const override { return b_->state().to_bytes(); }
  void restore(const std::vector<uint8_t>& s) override {
    b_->restore(train::BatcherState::from_bytes(s));
  }

 private:
  std::unique_ptr<train::Batcher> b_;
};

std::unique_ptr<BatcherSource> make_source(const train::TrainConfig& c, const std::string& path,
                                           int64_t vocab, uint64_t seed) {
  auto ds = train::TokenDataset::open(path);
  check(ds->vocab_size() <= vocab, path, ": tokens of a ", ds->vocab_size(),
        "-token vocabulary do not fit the model's ", vocab);
  train::BatcherConfig bc;
  bc.mode = c.budget_mode ? train::BatcherConfig::Mode::kTokenBudget
                          : train::BatcherConfig::Mode::kWindows;
  bc.seq_len = c.seq_len;
  bc.batch_size = c.batch_size;
  bc.token_budget = c.token_budget;
  bc.max_seq_len = c.max_seq_len;
  bc.seed = seed;
  return std::make_unique<BatcherSource>(std::make_unique<train::Batcher>(ds, bc));
}

std::string eta(double s) {
  char b[32];
  if (s >= 3600)
    std::snprintf(b, sizeof b, "%dh%02dm", static_cast<int>(s / 3600),
                  static_cast<int>(s / 60) % 60);
  else
    std::snprintf(b, sizeof b, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  return b;
}

struct TrainArgs {
  std::string config;
  bool resume = false, json = false;
  int64_t steps = 0;
  std::string teacher;  // brisk distill: overrides distill.teacher
  double kd_alpha = -1, kd_tau = -1;
};

void run_train(const TrainArgs* a);

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* c =
      app.add_subcommand("train", "Pretrain or fine-tune a llama model from a config file");
  c->add_option("-c,--config", a->config, "Training config (see configs/*.conf)")->required();
  c->add_flag("--resume", a->resume, "Continue from <out>/checkpoint.bin");
  c->add_option("--steps", a->steps, "Override train.steps (the schedule keeps the config's)");
  c->add_flag("--json", a->json, "Progress as JSON lines on stdout");
  c->callback([a] { run_train(a.get()); });
}

void add_distill_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* c = app.add_subcommand(
      "distill",
      "Train a student (config file) on the data mixed with a teacher's softened distribution");
  c->add_option("--teacher", a->teacher, "Teacher model (GGUF or HF directory)")->required();
  c->add_option("--student", a->config, "The student's training config")->required();
  c->add_option("--alpha", a->kd_alpha, "Weight of the KL term (default: distill.alpha or 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--tau", a->kd_tau, "Temperature (default: distill.tau or 2)")
      ->check(CLI::Range(0.05, 100.0));
  c->add_flag("--resume", a->resume, "Continue from <out>/checkpoint.bin");
  c->add_option("--steps", a->steps, "Override train.steps");
  c->add_flag("--json", a->json, "Progress as JSON lines on stdout");
  c->callback([a] { run_train(a.get()); });
}

namespace {

void run_train(const TrainArgs* a) {
  {
    const train::ConfigFile cf = train::ConfigFile::load(a->config);
    train::TrainConfig tc = train::read_train_config(cf);
    if (!a->teacher.empty()) tc.teacher = a->teacher;
    if (a->kd_alpha >= 0) tc.kd_alpha = a->kd_alpha;
    if (a->kd_tau > 0) tc.kd_tau = a->kd_tau;
    const int threads = tc.threads > 0 ? tc.threads : default_threads();

    // Shape and initial weights: from a model to fine-tune, or fresh.
    io::Metadata tok_md;
    std::vector<float> init;
    if (!tc.init.empty()) {
      train::ImportedModel im = train::import_model(tc.init);
      tc.shape = im.shape;
      init = std::move(im.params);
      tok_md = std::move(im.tokenizer);
    }
    if (!tc.tokenizer.empty()) tok_md = train::read_tokenizer_metadata(tc.tokenizer);
    check(!tok_md.empty(), a->config, ": no tokenizer (set data.tokenizer or model.init)");
    if (tc.init.empty()) {
      for (const auto& [k, v] : tok_md)
        if (k == "tokenizer.ggml.tokens")
          tc.shape.vocab = static_cast<int64_t>(v.as_array(k).size());
    }
    check(tc.budget_mode ? tc.max_seq_len <= tc.shape.context : tc.seq_len <= tc.shape.context,
          a->config, ": data.", tc.budget_mode ? "max_seq_len " : "seq_len ",
          tc.budget_mode ? tc.max_seq_len : tc.seq_len, " exceeds model.context ",
          tc.shape.context);

    train::LlamaTrainer<float> model(tc.shape, threads);
    if (init.empty()) init = train::init_params(model.layout(), tc.shape, tc.seed);
    auto src = make_source(tc, tc.train_data, tc.shape.vocab, tc.seed);
    std::unique_ptr<BatcherSource> val;
    if (!tc.val_data.empty()) val = make_source(tc, tc.val_data, tc.shape.vocab, tc.seed + 1);
    train::LoopConfig lc;
    lc.micro_batches = tc.micro_batches;
    lc.global_tokens = tc.global_tokens;
    lc.precision = tc.precision;
    lc.checkpointing = tc.checkpointing;
    lc.kd_alpha = tc.kd_alpha;
    lc.kd_tau = tc.kd_tau;
    // LoRA / QLoRA: the matrices run through adapters over a frozen (possibly quantised) base.
    std::unique_ptr<train::LoraHook> hook;
    if (tc.lora_rank > 0) {
      hook = std::make_unique<train::LoraHook>(model, init.data(), tc.lora);
      model.set_hook(hook.get());
    }
    train::Trainer tr(model, std::move(init), tc.optim, lc, *src);
    if (hook) {
      tr.set_adapter_params(hook->params().data(), hook->grads().data(), hook->params().size(),
                            hook->decay_ranges());
      std::fprintf(stderr,
                   "train: LoRA rank %lld, alpha %g, %zu adapted matrices, %.2f M trainable "
                   "parameters, base in %s (%.1f MiB)\n",
                   static_cast<long long>(tc.lora.rank), tc.lora.alpha, hook->targets().size(),
                   static_cast<double>(hook->params().size()) / 1e6, dtype_name(tc.lora.base_type),
                   static_cast<double>(hook->base_bytes()) / 1048576.0);
    }
    // Distillation: the teacher's probabilities at temperature tau for every micro-batch.
    std::unique_ptr<train::LlamaTrainer<float>> teacher;
    std::vector<float> teacher_params;
    if (!tc.teacher.empty()) {
      train::ImportedModel im = train::import_model(tc.teacher);
      check(im.shape.vocab == tc.shape.vocab, tc.teacher, ": the teacher's vocabulary of ",
            im.shape.vocab, " differs from the student's ", tc.shape.vocab);
      teacher = std::make_unique<train::LlamaTrainer<float>>(im.shape, threads);
      teacher_params = std::move(im.params);
      const int64_t V = im.shape.vocab;
      tr.set_teacher(
          [&teacher, &teacher_params, V](const train::Batch& b, double tau, std::vector<float>& p) {
            teacher->logits(b, teacher_params.data(), p);
            train::softmax_rows(p.data(), b.n_tokens(), V, tau, teacher->pool());
          });
      std::fprintf(stderr, "train: distilling from %s (%.2f M parameters), alpha %.2f, tau %.2f\n",
                   tc.teacher.c_str(), static_cast<double>(teacher->layout().total()) / 1e6,
                   tc.kd_alpha, tc.kd_tau);
    }

    fs::create_directories(tc.out);
    const std::string ckpt = (fs::path(tc.out) / "checkpoint.bin").string();
    if (a->resume) {
      tr.load(ckpt);
      std::fprintf(stderr, "train: resumed from %s at step %lld\n", ckpt.c_str(),
                   static_cast<long long>(tr.steps_done()));
    } else {
      std::ofstream(fs::path(tc.out) / "config.conf") << cf.text();
    }
    const int64_t steps = a->steps > 0 ? a->steps : tc.steps;
    std::ofstream log(fs::path(tc.out) / "log.jsonl", a->resume ? std::ios::app : std::ios::trunc);
    std::fprintf(stderr,
                 "train: %.2f M parameters (D %lld, %lld layers, %lld/%lld heads, FFN %lld, vocab "
                 "%lld), %s, %s, %d threads, %lld steps\n",
                 static_cast<double>(model.layout().total()) / 1e6,
                 static_cast<long long>(tc.shape.dim), static_cast<long long>(tc.shape.layers),
                 static_cast<long long>(tc.shape.heads), static_cast<long long>(tc.shape.kv_heads),
                 static_cast<long long>(tc.shape.ffn), static_cast<long long>(tc.shape.vocab),
                 train::precision_name(tc.precision), train::optimizer_name(tc.optim.kind), threads,
                 static_cast<long long>(steps));

    auto emit = [&](const nlohmann::ordered_json& j) {
      log << j.dump() << "\n";
      log.flush();
      if (a->json) std::printf("%s\n", j.dump().c_str());
    };
    auto validate = [&] {
      if (!val) return;
      const double vl = tr.evaluate(*val, tc.eval_batches);
      std::fprintf(stderr, "train: step %lld validation loss %.4f (perplexity %.2f)\n",
                   static_cast<long long>(tr.steps_done()), vl, std::exp(vl));
      emit({{"step", tr.steps_done()}, {"val_loss", vl}, {"val_ppl", std::exp(vl)}});
    };
    double tok_window = 0, sec_window = 0, loss_window = 0;
    int64_t n_window = 0;
    const auto t_start = std::chrono::steady_clock::now();
    const int64_t first = tr.steps_done();
    while (tr.steps_done() < steps) {
      const train::StepStats st = tr.step();
      tok_window += static_cast<double>(st.tokens);
      sec_window += st.seconds;
      loss_window += st.loss;
      ++n_window;
      if (st.step % tc.log_interval == 0 || st.step == steps) {
        const double tps = tok_window / sec_window;
        const double el =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
        const double left =
            el / static_cast<double>(st.step - first) * static_cast<double>(steps - st.step);
        std::fprintf(stderr, "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s\n",
                     static_cast<long long>(st.step), static_cast<long long>(steps),
                     loss_window / static_cast<double>(n_window), st.lr, tps, eta(left).c_str(),
                     st.skipped ? " | skipped (fp16 overflow)" : "");
        emit({{"step", st.step},
              {"loss", loss_window / static_cast<double>(n_window)},
              {"last_loss", st.loss},
              {"lr", st.lr},
              {"grad_norm", st.grad_norm},
              {"loss_scale", st.loss_scale},
              {"tokens_per_s", tps},
              {"elapsed_s", el}});
        tok_window = sec_window = loss_window = 0;
        n_window = 0;
      }
      if (tc.eval_interval > 0 && st.step % tc.eval_interval == 0) validate();
      if (tc.checkpoint_interval > 0 && st.step % tc.checkpoint_interval == 0)
        tr.save(ckpt, cf.text());
    }
    tr.save(ckpt, cf.text());
    if (tc.eval_interval == 0 || tr.steps_done() % tc.eval_interval != 0) validate();
    if (hook) {
      // The adapters as a GGUF LoRA adapter (brisk run --lora, brisk lora merge).
      std::vector<model::LoraTarget> targets;
      for (const train::LoraHook::Target& t : hook->targets()) {
        model::LoraTarget lt;
        lt.name =
            "blk." + std::to_string(t.layer) + "." + train::mat_tensor_name(t.mat) + ".weight";
        lt.n_in = t.in;
        lt.n_out = t.out;
        lt.rank = tc.lora.rank;
        lt.a.assign(
            hook->params().begin() + static_cast<std::ptrdiff_t>(t.a_off),
            hook->params().begin() +
                static_cast<std::ptrdiff_t>(t.a_off + static_cast<size_t>(tc.lora.rank * t.in)));
        lt.b.assign(
            hook->params().begin() + static_cast<std::ptrdiff_t>(t.b_off),
            hook->params().begin() +
                static_cast<std::ptrdiff_t>(t.b_off + static_cast<size_t>(tc.lora.rank * t.out)));
        targets.push_back(std::move(lt));
      }
      const std::string ap = (fs::path(tc.out) / "adapter.gguf").string();
      model::write_lora_adapter(ap, "llama", static_cast<float>(tc.lora.alpha), targets);
      std::fprintf(stderr, "train: wrote %s (use: brisk run -m %s --lora %s)\n", ap.c_str(),
                   tc.init.c_str(), ap.c_str());
      return;
    }
    const std::string gguf = (fs::path(tc.out) / "model.gguf").string();
    const io::ModelFile mf =
        train::export_model(tc.shape, model.layout(), tr.params().data(), tok_md, tc.export_type,
                            fs::path(tc.out).filename().string());
    io::write_gguf(mf, gguf);
    std::fprintf(stderr, "train: wrote %s\n", gguf.c_str());
    if (tc.export_hf) {
      io::write_hf_dir(mf, (fs::path(tc.out) / "hf").string());
      std::fprintf(stderr, "train: wrote %s/hf\n", tc.out.c_str());
    }
  }
}

}  // namespace
}  // namespace brisk::cli
