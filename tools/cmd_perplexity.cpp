// brisk perplexity -m MODEL -f TEXT [--ctx 512] [--stride N] [--json]: perplexity of a model on a
// text file with its standard error (eval/perplexity.h describes the windows and the scoring).
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "eval/perplexity.h"

namespace brisk::cli {

void add_perplexity_command(CLI::App& app) {
  struct Args {
    std::string model, file;
    int64_t ctx = 512, stride = 0;
    int threads = default_threads();
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("perplexity", "Perplexity of a model on a text file");
  c->add_option("-m,--model", a->model, "Model (default: brisk's embedded model)");
  c->add_option("-f,--file", a->file, "Text file")->required();
  c->add_option("--ctx", a->ctx, "Tokens per window (capped at the model's context)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  c->add_option("--stride", a->stride, "Tokens between window starts (default: ctx, disjoint)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
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
    ThreadPool pool(a->threads);
    std::fprintf(stderr, "perplexity: %s on %s: %zu tokens, windows of %lld every %lld\n",
                 path.c_str(), a->file.c_str(), toks.size(), static_cast<long long>(ctx),
                 static_cast<long long>(stride));
    const eval::PerplexityResult r =
        eval::perplexity(*l.model, toks, ctx, stride, pool, [](int64_t done, int64_t total) {
          std::fprintf(stderr, "\rperplexity: window %lld / %lld", static_cast<long long>(done),
                       static_cast<long long>(total));
        });
    std::fprintf(stderr, "\n");
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
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("perplexity %.4f +/- %.4f (%lld tokens scored, mean NLL %.5f)\n", r.ppl,
                  r.ppl_stderr, static_cast<long long>(r.n_scored), r.mean_nll);
    }
  });
}

}  // namespace brisk::cli
