// Shared pieces of the brisk CLI: exit codes, model/tokenizer loading, small parsers.
// Every subcommand registers itself with add_<name>_command(app); its callback runs inside
// app.parse(), so main() turns any brisk::Error (bad input) into "error: <message>" and exit 2.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/model_file.h"
#include "io/tokenizer/tokenizer.h"
#include "model/model.h"

namespace brisk::cli {

constexpr int kExitBadInput = 2;

struct Loaded {
  std::unique_ptr<model::Model> model;              // null when loaded for tokenization only
  std::shared_ptr<const tok::Tokenizer> tokenizer;  // null when the file has no tokenizer
};

// Loads a model file (any format). with_weights = false accepts vocab-only files.
Loaded load(const std::string& path, bool with_weights, const std::string& vocab_from = {});

// "1 2 3" or "1,2,3" -> ids; throws brisk::Error on anything else.
std::vector<int32_t> parse_token_list(const std::string& s);
std::string read_file_text(const std::string& path);
int default_threads();
// The embedded default model (models/brisk-default.gguf; BRISK_DEFAULT_MODEL overrides).
std::string default_model_path();
// `model`, or the default model when empty (an error if that file is missing).
std::string model_or_default(const std::string& model);

void add_run_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_bench_serve_command(CLI::App& app);
void add_bench_train_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_distill_command(CLI::App& app);
void add_perplexity_command(CLI::App& app);
void add_tokenizer_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_lora_command(CLI::App& app);
void add_imatrix_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_prune_command(CLI::App& app);
void add_lowrank_command(CLI::App& app);

}  // namespace brisk::cli
