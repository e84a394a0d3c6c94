#include "quant/recipe.h"

#include <cctype>
#include <cstdlib>

#include "quant/requantize.h"

namespace brisk::quant {

bool recipe_more_bits(int64_t i, int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

namespace {
// The layer index of "blk.<i>.<rest>", or -1.
int64_t layer_of(std::string_view tensor) {
  if (tensor.substr(0, 4) != "blk.") return -1;
  int64_t i = 0;
  size_t p = 4;
  if (p >= tensor.size() || !std::isdigit(static_cast<unsigned char>(tensor[p]))) return -1;
  while (p < tensor.size() && std::isdigit(static_cast<unsigned char>(tensor[p])))
    i = i * 10 + (tensor[p++] - '0');
  return i;
}
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
}  // namespace

DType Recipe::type_for(std::string_view tensor, int64_t n_layer) const {
  if (!mixed) return base;
  if (tensor == "output.weight") return DType::Q6_K;
  if (ends_with(tensor, ".attn_v.weight") || ends_with(tensor, ".ffn_down.weight")) {
    const int64_t i = layer_of(tensor);
    if (i >= 0 && recipe_more_bits(i, n_layer)) return DType::Q6_K;
  }
  return base;
}

uint32_t Recipe::file_type() const {
  if (mixed) return base == DType::Q4_K ? 15 : 17;
  return gguf_file_type(base);
}

std::optional<Recipe> parse_recipe(std::string_view name) {
  Recipe r;
  r.name = std::string(name);
  std::string_view base = name;
  if (name.size() > 2 && (ends_with(name, "_m") || ends_with(name, "_M"))) {
    base = name.substr(0, name.size() - 2);
    r.mixed = true;
  }
  const std::optional<DType> t = dtype_from_name(base);
  if (!t || !dtype_layout(*t).storage) return std::nullopt;
  if (r.mixed && *t != DType::Q4_K && *t != DType::Q5_K) return std::nullopt;
  r.base = *t;
  return r;
}

}  // namespace brisk::quant
