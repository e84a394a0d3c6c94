// The --lora / --lora-scale options shared by the commands that run a model (run, serve, logits,
// bench): adapters applied at inference without merging (model::Model::add_lora).
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "model/model.h"

namespace brisk::cli {

struct LoraOptions {
  std::vector<std::string> files;
  std::vector<float> scales;  // none: 1 for all; one: for all; else one per file
};

void add_lora_options(CLI::App* c, LoraOptions& o);
// Loads each adapter and attaches it to m (checked against m; brisk::Error otherwise). Prints one
// line per adapter on stderr unless quiet.
void attach_loras(model::Model& m, const LoraOptions& o, bool quiet = false);

}  // namespace brisk::cli
