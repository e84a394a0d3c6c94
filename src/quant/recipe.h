// Storage recipes: which type each weight matrix gets. A plain recipe ("q4_0", "q8_0", "q4_K")
// stores every matrix in that type; the mixed "_M" recipes (q4_K_m, q5_K_m) follow the convention
// GGUF files in the wild use for those names: the output matrix in Q6_K, and attn_v and ffn_down
// in Q6_K in the layers where precision matters most (the first and last eighth of the stack and
// every third layer between), everything else in the base type. Benchmarks need these files to
// compare with published figures for "Q4_K_M" models.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/dtype.h"

namespace brisk::quant {

struct Recipe {
  std::string name;  // as given, e.g. "q4_K_m"
  DType base = DType::F16;
  bool mixed = false;
  // The type of tensor `name` ("blk.3.attn_v.weight", "output.weight", ...) in a model of n_layer
  // blocks. 1-D tensors are not the recipe's business (callers keep them f32).
  DType type_for(std::string_view tensor, int64_t n_layer) const;
  // general.file_type of the whole file (15 for Q4_K_M, 17 for Q5_K_M, else by base type).
  uint32_t file_type() const;
};

// "q4_0", "Q4_K", "q4_K_m", "q5_k_m", "f16", ...; nullopt for unknown names or non-storage types.
std::optional<Recipe> parse_recipe(std::string_view name);

// True for layer i of n where the mixed recipes spend more bits.
bool recipe_more_bits(int64_t i, int64_t n);

}  // namespace brisk::quant
