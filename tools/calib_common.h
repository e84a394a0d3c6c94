// Shared by the commands that calibrate on text (imatrix, quantize --method gptq|awq, prune):
// options, loading the model in f32 with its tokenizer, and the pass with progress output.
#pragma once
#include <string>

#include "cli.h"
#include "quant/calib.h"
#include "train/export.h"

namespace brisk::cli {

struct CalibArgs {
  std::string model, calib;
  int64_t tokens = 8192;  // calibration tokens
  int64_t ctx = 0;        // window length (0: the model's context, at most 512)
  int threads = default_threads();
};
// --calib-tokens, --calib-ctx, -t.
void add_calib_options(CLI::App* c, CalibArgs& a);

struct Calibration {
  train::ImportedModel model;
  train::ParamLayout layout;
  train::Batch batch;
};
Calibration prepare_calibration(const std::string& model_path, const CalibArgs& a);
// train::import_model with the reason the compression commands need it in the error message.
train::ImportedModel import_for_compression(const std::string& model_path);
// "\rwhat: [i+1/n] name" on a terminal (a newline after the last), nothing when stderr is a file:
// the per-tensor progress of the compression commands.
void progress_line(const char* what, int64_t i, int64_t n, const std::string& name);
// Runs the pass with a progress line; returns the calibration loss (quant::run_calibration).
double run_calibration_pass(Calibration& c, quant::CalibProcessor& p, const CalibArgs& a,
                            const char* what);

}  // namespace brisk::cli
