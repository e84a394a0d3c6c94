// brisk: one CLI for running, inspecting, converting and (later) serving, training and compressing
// models. Exit codes: 0 success, 2 bad usage or bad input (one-line "error: ..." on stderr).
#include <cstdio>
#include <exception>

#include "cli.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"brisk: train, compress and serve LLMs efficiently (C++20, no Python)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "brisk 0.1.0");
  brisk::cli::add_run_command(app);
  brisk::cli::add_inspect_command(app);
  brisk::cli::add_tokenize_command(app);
  brisk::cli::add_logits_command(app);
  brisk::cli::add_synth_command(app);
  brisk::cli::add_convert_command(app);
  brisk::cli::add_bench_command(app);
  brisk::cli::add_serve_command(app);
  brisk::cli::add_bench_serve_command(app);
  brisk::cli::add_bench_train_command(app);
  brisk::cli::add_train_command(app);
  brisk::cli::add_distill_command(app);
  brisk::cli::add_perplexity_command(app);
  brisk::cli::add_tokenizer_command(app);
  brisk::cli::add_data_command(app);
  brisk::cli::add_lora_command(app);
  brisk::cli::add_imatrix_command(app);
  brisk::cli::add_quantize_command(app);
  brisk::cli::add_prune_command(app);
  brisk::cli::add_lowrank_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s\n(run with --help for usage)\n", e.what());
    return brisk::cli::kExitBadInput;
  } catch (const brisk::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return brisk::cli::kExitBadInput;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return brisk::cli::kExitBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
