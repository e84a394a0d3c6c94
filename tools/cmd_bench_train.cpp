// brisk bench-train: training speed of a model shape per precision mode, with and without
// activation checkpointing: step time (median), training tokens/s, model-FLOPs utilisation
// (6 x params x tokens/s over the CPU's measured f32 peak) and peak memory (the process's RSS
// high-water mark, reset before each configuration). Random token ids (speed does not depend on
// the data). Markdown table on stdout, or --json; progress on stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "core/error.h"
#include "engine/bench.h"
#include "train/trainer.h"

namespace brisk::cli {
namespace {

class RandomSource : public train::BatchSource {
 public:
  RandomSource(int64_t vocab, int64_t seqs, int64_t len) : V_(vocab), B_(seqs), T_(len) {}
  train::Batch next() override {
    train::Batch b;
    b.seq_start.push_back(0);
    for (int64_t s = 0; s < B_; ++s) {
      for (int64_t i = 0; i < T_; ++i) {
        x_ = x_ * 6364136223846793005ull + 1442695040888963407ull;
        b.tokens.push_back(static_cast<int32_t>((x_ >> 33) % static_cast<uint64_t>(V_)));
      }
      b.seq_start.push_back(b.n_tokens());
    }
    for (int64_t i = 0; i < b.n_tokens(); ++i)
      b.targets.push_back(i + 1 < b.n_tokens() ? b.tokens[i + 1] : train::Batch::kIgnore);
    return b;
  }
  std::vector<uint8_t> state() const override { return {}; }
  void restore(const std::vector<uint8_t>&) override {}

 private:
  int64_t V_, B_, T_;
  uint64_t x_ = 1;
};

// VmHWM of this process in bytes; reset_peak() starts a new measurement (Linux clear_refs 5).
size_t peak_rss() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}
void reset_peak() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ','))
    if (!x.empty()) out.push_back(x);
  return out;
}

}  // namespace

void add_bench_train_command(CLI::App& app) {
  struct Args {
    std::string preset = "gpt2-124m", precisions = "fp32,bf16,fp16", ckpt = "off,on";
    int64_t batch = 4, seq = 64, steps = 5, warmup = 1;
    int threads = default_threads();
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "bench-train", "Training speed (tokens/s, MFU, peak memory) per precision and checkpointing");
  c->add_option("--preset", a->preset, "Model shape: gpt2-124m, default, tiny")
      ->capture_default_str();
  c->add_option("--precision", a->precisions, "Comma list of fp32, bf16, fp16")
      ->capture_default_str();
  c->add_option("--checkpointing", a->ckpt, "Comma list of off, on")->capture_default_str();
  c->add_option("-b,--batch", a->batch, "Sequences per step")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  c->add_option("-s,--seq", a->seq, "Tokens per sequence")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  c->add_option("--steps", a->steps, "Timed steps per configuration")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  c->add_option("--warmup", a->warmup, "Untimed steps first")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  c->add_option("-t,--threads", a->threads, "Threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  c->add_flag("--json", a->json, "One JSON document on stdout");
  c->callback([a] {
    train::ModelShape shape;
    check(train::train_preset(a->preset, shape), "unknown preset '", a->preset,
          "' (gpt2-124m, default, tiny)");
    check(a->seq <= shape.context, "--seq ", a->seq, " exceeds the preset's context ",
          shape.context);
    std::vector<train::Precision> precs;
    for (const std::string& p : split(a->precisions)) precs.push_back(train::parse_precision(p));
    std::vector<bool> ckpts;
    for (const std::string& k : split(a->ckpt)) {
      check(k == "on" || k == "off", "--checkpointing takes on/off, not '", k, "'");
      ckpts.push_back(k == "on");
    }
    check(!precs.empty() && !ckpts.empty(), "nothing to measure");

    ThreadPool probe_pool(a->threads);
    std::fprintf(stderr, "bench-train: measuring the f32 peak on %d threads...\n", a->threads);
    const engine::ComputePeak peak = engine::probe_compute(probe_pool);
    const train::ParamLayout layout = train::ParamLayout::llama(shape);
    const double n_params = static_cast<double>(layout.total());
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (train::Precision prec : precs) {
      for (bool ck : ckpts) {
        reset_peak();
        std::fprintf(stderr, "bench-train: %s %s, checkpointing %s: %lld warm-up + %lld steps\n",
                     a->preset.c_str(), train::precision_name(prec), ck ? "on" : "off",
                     static_cast<long long>(a->warmup), static_cast<long long>(a->steps));
        std::vector<double> secs;
        size_t act = 0;
        {
          train::LlamaTrainer<float> model(shape, a->threads);
          RandomSource src(shape.vocab, a->batch, a->seq);
          train::OptimizerConfig oc;
          oc.warmup_steps = 1;
          train::LoopConfig lc;
          lc.precision = prec;
          lc.checkpointing = ck;
          lc.init_loss_scale = 1024;
          train::Trainer tr(model, train::init_params(model.layout(), shape, 1), oc, lc, src);
          for (int64_t i = 0; i < a->warmup + a->steps; ++i) {
            const train::StepStats st = tr.step();
            if (i >= a->warmup) secs.push_back(st.seconds);
            std::fprintf(stderr, "  step %lld: %.3f s, loss %.4f\n", static_cast<long long>(i + 1),
                         st.seconds, st.loss);
          }
          act = tr.peak_activation_bytes();
        }
        std::sort(secs.begin(), secs.end());
        const double med = secs[secs.size() / 2];
        const double tps = static_cast<double>(a->batch * a->seq) / med;
        const double mfu = 6.0 * n_params * tps / (peak.f32_gflops * 1e9);
        rows.push_back({{"preset", a->preset},
                        {"params", layout.total()},
                        {"precision", train::precision_name(prec)},
                        {"checkpointing", ck},
                        {"batch", a->batch},
                        {"seq", a->seq},
                        {"threads", a->threads},
                        {"step_s_median", med},
                        {"step_s", secs},
                        {"tokens_per_s", tps},
                        {"mfu", mfu},
                        {"f32_peak_gflops", peak.f32_gflops},
                        {"activation_bytes", act},
                        {"peak_rss_bytes", peak_rss()}});
      }
    }
    if (a->json) {
      std::printf("%s\n", rows.dump(2).c_str());
      return;
    }
    std::printf(
        "%s, %.1f M parameters, batch %lld x %lld tokens, %d threads, f32 peak %.0f GFLOP/s\n\n",
        a->preset.c_str(), n_params / 1e6, static_cast<long long>(a->batch),
        static_cast<long long>(a->seq), a->threads, peak.f32_gflops);
    std::printf(
        "| precision | checkpointing | step s (median) | tokens/s | MFU | activations MiB | peak "
        "RSS MiB |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
    for (const auto& r : rows)
      std::printf("| %s | %s | %.3f | %.1f | %.1f%% | %.1f | %.0f |\n",
                  r["precision"].get<std::string>().c_str(),
                  r["checkpointing"].get<bool>() ? "on" : "off", r["step_s_median"].get<double>(),
                  r["tokens_per_s"].get<double>(), 100 * r["mfu"].get<double>(),
                  r["activation_bytes"].get<double>() / 1048576.0,
                  r["peak_rss_bytes"].get<double>() / 1048576.0);
  });
}

}  // namespace brisk::cli
