// brisk perplexity -m MODEL -f TEXT [--ctx 512] [--stride N] [--save-logits BASE] [--kl-base BASE]
// [--json]: perplexity of a model on a text file with its standard error (eval/perplexity.h
// describes the windows and the scoring); with a base model's saved distributions, the
// KL-divergence to them, top-1 agreement and the change in perplexity (eval/kl.h).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "calib_common.h"
#include "cli.h"
#include "core/error.h"
#include "eval/kl.h"
#include "eval/perplexity.h"

namespace brisk::cli {

void add_perplexity_command(CLI::App& app) {
  struct Args {
    std::string model, file, save_logits, kl_base;
    int64_t ctx = 512, stride = 0;
    int threads = default_threads();
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("perplexity", "Perplexity (and KL to a base model) on a text");
  c->add_option("-m,--model", a->model, "Model (default: brisk's embedded model)");
  c->add_option("-f,--file", a->file, "Text file")->required();
  c->add_option("--ctx", a->ctx, "Tokens per window (capped at the model's context)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  c->add_option("--stride", a->stride, "Tokens between window starts (default: ctx, disjoint)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("--save-logits", a->save_logits,
                "Write this model's log-probabilities (f32, n_scored x n_vocab) for --kl-base");
  c->add_option("--kl-base", a->kl_base,
                "Compare with a base model's distributions saved by --save-logits (same text, "
                "ctx and stride)");
  c->add_option("-t,--threads", a->threads, "Threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  c->add_flag("--json", a->json, "One JSON object on stdout");
  c->callback([a] {
    const std::string path = model_or_default(a->model);
    Loaded l = load(path, true);
    if (!l.tokenizer) fail(path, ": the model has no tokenizer");
    const std::string text = read_file_text(a->file);
    const std::vector<int32_t> toks = l.tokenizer->encode(text, true, false);
    const int64_t ctx_train = l.model->hparams().n_ctx_train;
    const int64_t ctx = ctx_train > 0 ? std::min(a->ctx, ctx_train) : a->ctx;
    const int64_t stride = a->stride > 0 ? std::min(a->stride, ctx) : ctx;
    const int64_t V = l.model->n_vocab();
    eval::LogprobHeader hdr;
    hdr.n_vocab = static_cast<uint32_t>(V);
    hdr.n_rows =
        static_cast<uint64_t>(eval::count_scored(static_cast<int64_t>(toks.size()), ctx, stride));
    hdr.ctx = ctx;
    hdr.stride = stride;
    hdr.tokens_hash = eval::hash_tokens(toks);
    std::unique_ptr<eval::LogprobReader> base;
    std::unique_ptr<eval::KlAccumulator> kl;
    if (!a->kl_base.empty()) {
      base = std::make_unique<eval::LogprobReader>(a->kl_base);
      const eval::LogprobHeader& b = base->header();
      if (b.n_vocab != hdr.n_vocab)
        fail(a->kl_base, ": base vocabulary ", b.n_vocab, ", this model's ", V);
      if (b.tokens_hash != hdr.tokens_hash || b.n_rows != hdr.n_rows)
        fail(a->kl_base, ": saved for a different text or tokenization (", b.n_rows,
             " positions, this run scores ", hdr.n_rows, ")");
      if (b.ctx != ctx || b.stride != stride)
        fail(a->kl_base, ": saved with --ctx ", b.ctx, " --stride ", b.stride, ", this run uses ",
             ctx, " / ", stride);
      kl = std::make_unique<eval::KlAccumulator>(V);
    }
    std::unique_ptr<eval::LogprobWriter> save;
    if (!a->save_logits.empty()) save = std::make_unique<eval::LogprobWriter>(a->save_logits, hdr);
    ThreadPool pool(a->threads);
    std::fprintf(stderr, "perplexity: %s on %s: %zu tokens, windows of %lld every %lld\n",
                 path.c_str(), a->file.c_str(), toks.size(), static_cast<long long>(ctx),
                 static_cast<long long>(stride));
    const eval::PerplexityResult r = eval::perplexity(
        *l.model, toks, ctx, stride, pool,
        [](int64_t done, int64_t total) {
          progress_line("perplexity", done - 1, total, "windows");
        },
        [&](int64_t i, const float* z, int32_t target, double lse) {
          if (save) save->add(z, lse);
          if (kl) kl->add(base->row(static_cast<uint64_t>(i)), z, target, lse);
        });
    if (save) {
      save->commit();
      std::fprintf(stderr, "perplexity: wrote %s (%llu positions x %lld log-probabilities)\n",
                   a->save_logits.c_str(), static_cast<unsigned long long>(hdr.n_rows),
                   static_cast<long long>(V));
    }
    eval::KlStats ks;
    if (kl) ks = kl->result();
    if (a->json) {
      nlohmann::ordered_json j = {{"model", path},
                                  {"file", a->file},
                                  {"tokens", toks.size()},
                                  {"ctx", ctx},
                                  {"stride", stride},
                                  {"scored", r.n_scored},
                                  {"mean_nll", r.mean_nll},
                                  {"ppl", r.ppl},
                                  {"ppl_stderr", r.ppl_stderr}};
      if (kl) {
        j["kl"] = {{"base", a->kl_base},
                   {"mean", ks.kl_mean},
                   {"stderr", ks.kl_stderr},
                   {"median", ks.kl_median},
                   {"p99", ks.kl_p99},
                   {"max", ks.kl_max},
                   {"top1_agree", ks.top1_agree},
                   {"base_ppl", ks.base_ppl},
                   {"delta_ppl", r.ppl - ks.base_ppl},
                   {"delta_ppl_pct", 100.0 * (r.ppl / ks.base_ppl - 1.0)}};
      }
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("perplexity %.4f +/- %.4f (%lld tokens scored, mean NLL %.5f)\n", r.ppl,
                  r.ppl_stderr, static_cast<long long>(r.n_scored), r.mean_nll);
      if (kl) {
        std::printf("base perplexity %.4f, change %+.4f (%+.2f%%)\n", ks.base_ppl,
                    r.ppl - ks.base_ppl, 100.0 * (r.ppl / ks.base_ppl - 1.0));
        std::printf("KL-divergence to base: mean %.6f +/- %.6f, median %.6f, p99 %.6f, max %.6f\n",
                    ks.kl_mean, ks.kl_stderr, ks.kl_median, ks.kl_p99, ks.kl_max);
        std::printf("top-1 agreement with base: %.2f%%\n", 100.0 * ks.top1_agree);
      }
    }
  });
}

}  // namespace brisk::cli
