#include "calib_common.h"

#include <unistd.h>
#include <algorithm>

#include <cstdio>

#include "core/error.h"

namespace brisk::cli {

void add_calib_options(CLI::App* c, CalibArgs& a) {
  c->add_option("--calib-tokens", a.tokens, "Calibration tokens (whole windows)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 24));
  c->add_option("--calib-ctx", a.ctx, "Calibration window (default: the model's context, <= 512)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  c->add_option("-t,--threads", a.threads, "Threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
}

train::ImportedModel import_for_compression(const std::string& model_path) {
  try {
    return train::import_model(model_path);
  } catch (const Error& e) {
    fail(e.what(),
         "; calibration and pruning run the model through the trainer's forward, which "
         "supports llama models without biases (plain RTN quantisation works on any model)");
  }
}

Calibration prepare_calibration(const std::string& model_path, const CalibArgs& a) {
  Loaded l = load(model_path, false);
  if (!l.tokenizer) fail(model_path, ": the model has no tokenizer to read the calibration text");
  const std::string text = read_file_text(a.calib);
  const std::vector<int32_t> toks = l.tokenizer->encode(text, true, false);
  Calibration c{import_for_compression(model_path), {}, {}};
  c.layout = train::ParamLayout::llama(c.model.shape);
  const int64_t ctx = a.ctx > 0 ? a.ctx : std::min<int64_t>(c.model.shape.context, 512);
  c.batch = quant::calib_batch(toks, ctx, a.tokens);
  std::fprintf(stderr, "calibration: %s: %lld tokens in %lld windows of <= %lld (of %zu in %s)\n",
               model_path.c_str(), static_cast<long long>(c.batch.n_tokens()),
               static_cast<long long>(c.batch.n_seqs()), static_cast<long long>(ctx), toks.size(),
               a.calib.c_str());
  return c;
}

void progress_line(const char* what, int64_t i, int64_t n, const std::string& name) {
  static const bool tty = isatty(2) != 0;
  if (!tty) return;
  std::fprintf(stderr, "\r%s: [%lld/%lld] %-36s", what, static_cast<long long>(i + 1),
               static_cast<long long>(n), name.c_str());
  if (i + 1 == n) std::fprintf(stderr, "\n");
}

double run_calibration_pass(Calibration& c, quant::CalibProcessor& p, const CalibArgs& a,
                            const char* what) {
  const double loss = quant::run_calibration(
      c.model.shape, c.model.params, c.batch, p, a.threads,
      [what](int64_t i, int64_t n, const std::string& name) { progress_line(what, i, n, name); });
  std::fprintf(stderr, "%s: calibration loss %.4f\n", what, loss);
  return loss;
}

}  // namespace brisk::cli
