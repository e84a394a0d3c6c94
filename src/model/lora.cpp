#include "model/lora.h"

#include <charconv>
#include <cmath>
#include <map>

#include "core/error.h"
#include "io/gguf/gguf.h"
#include "kernels/cpu/quant.h"

namespace brisk::model {

namespace {

constexpr std::string_view kSuffixA = ".lora_a", kSuffixB = ".lora_b";

constexpr TensorRole kLayerRoles[] = {TensorRole::AttnQ,   TensorRole::AttnK,   TensorRole::AttnV,
                                      TensorRole::AttnOut, TensorRole::FfnGate, TensorRole::FfnUp,
                                      TensorRole::FfnDown};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// The tensor as row-major f32 (its ggml shape [cols, rows] read as rows of cols), values checked.
std::vector<float> read_f32(const std::string& path, const gguf::TensorInfo& t) {
  if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16)
    fail(path, ": tensor '", t.name, "' has type ", dtype_name(t.type),
         "; adapter tensors must be f32, f16 or bf16");
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  kernels::quant_kernels(t.type).to_float(t.data, out.data(), t.n_elements());
  for (float v : out)
    if (!std::isfinite(v)) fail(path, ": tensor '", t.name, "' holds a non-finite value");
  return out;
}

}  // namespace

const LoraTarget* LoraAdapter::find(std::string_view base_name) const {
  for (const LoraTarget& t : targets)
    if (t.name == base_name) return &t;
  return nullptr;
}

float LoraAdapter::factor(const LoraTarget& t, float scale) const {
  return alpha != 0.0f ? scale * alpha / static_cast<float>(t.rank) : scale;
}

LoraAdapter load_lora_adapter(const std::string& path) {
  const gguf::GgufFile f = gguf::GgufFile::open(path);
  LoraAdapter a;
  a.path = path;
  try {
    const std::optional<std::string> type = f.get_string("general.type");
    if (!type)
      fail(path, ": not a LoRA adapter (no 'general.type' = \"adapter\"; is this a model file?)");
    if (*type != "adapter")
      fail(path, ": not a LoRA adapter (general.type is \"", *type, "\", expected \"adapter\")");
    const std::optional<std::string> atype = f.get_string("adapter.type");
    if (atype != "lora")
      fail(path, ": adapter.type is ", atype ? "\"" + *atype + "\"" : std::string("missing"),
           ", expected \"lora\"");
    const std::optional<std::string> arch = f.get_string("general.architecture");
    if (!arch) fail(path, ": missing metadata 'general.architecture'");
    a.arch = *arch;
    const double alpha = f.get_float("adapter.lora.alpha").value_or(0.0);
    if (!std::isfinite(alpha)) fail(path, ": adapter.lora.alpha is not finite");
    a.alpha = static_cast<float>(alpha);
  } catch (const Error& e) {
    // Typed getters know the key but not the file.
    const std::string msg = e.what();
    if (msg.rfind(path, 0) == 0) throw;
    fail(path, ": ", msg);
  }

  // Pair the halves by base name, in file order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, std::pair<const gguf::TensorInfo*, const gguf::TensorInfo*>> halves;
  for (const gguf::TensorInfo& t : f.tensors()) {
    const bool is_a = ends_with(t.name, kSuffixA), is_b = ends_with(t.name, kSuffixB);
    if (!is_a && !is_b)
      fail(path, ": unexpected tensor '", t.name, "' (adapter tensors end in .lora_a or .lora_b)");
    const std::string base = t.name.substr(0, t.name.size() - kSuffixA.size());
    auto [it, fresh] = halves.try_emplace(base, nullptr, nullptr);
    if (fresh) order.push_back(base);
    (is_a ? it->second.first : it->second.second) = &t;
  }
  if (order.empty()) fail(path, ": the adapter has no tensors");

  for (const std::string& base : order) {
    const auto [ta, tb] = halves[base];
    if (!ta) fail(path, ": tensor '", base, ".lora_b' has no matching '", base, ".lora_a'");
    if (!tb) fail(path, ": tensor '", base, ".lora_a' has no matching '", base, ".lora_b'");
    if (ta->shape.size() != 2)
      fail(path, ": tensor '", ta->name, "' has shape ", shape_str(ta->shape),
           ", expected [n_in, rank]");
    if (tb->shape.size() != 2)
      fail(path, ": tensor '", tb->name, "' has shape ", shape_str(tb->shape),
           ", expected [rank, n_out]");
    LoraTarget t;
    t.name = base;
    t.n_in = ta->shape[0];
    t.rank = ta->shape[1];
    t.n_out = tb->shape[1];
    if (tb->shape[0] != t.rank)
      fail(path, ": rank mismatch for '", base, "': lora_a ", shape_str(ta->shape), " has rank ",
           t.rank, " but lora_b ", shape_str(tb->shape), " has rank ", tb->shape[0]);
    if (t.rank <= 0 || t.n_in <= 0 || t.n_out <= 0)
      fail(path, ": tensor '", base, "' has an empty dimension");
    t.a = read_f32(path, *ta);  // (rank, n_in) row-major
    t.b = read_f32(path, *tb);  // (n_out, rank) row-major
    a.targets.push_back(std::move(t));
  }
  return a;
}

void write_lora_adapter(const std::string& path, const std::string& arch, float alpha,
                        std::span<const LoraTarget> targets) {
  check(!targets.empty(), path, ": an adapter needs at least one target");
  check(std::isfinite(alpha), path, ": alpha must be finite");
  gguf::GgufWriter w;
  w.set("general.architecture", gguf::Value::string(arch));
  w.set("general.type", gguf::Value::string("adapter"));
  w.set("adapter.type", gguf::Value::string("lora"));
  w.set("adapter.lora.alpha", gguf::Value::f32(alpha));
  std::map<std::string, int> seen;
  for (const LoraTarget& t : targets) {
    check(!t.name.empty() && ++seen[t.name] == 1, path, ": duplicate or empty target name '",
          t.name, "'");
    check(t.rank > 0 && t.n_in > 0 && t.n_out > 0, path, ": target '", t.name,
          "' has an empty dimension");
    check(t.a.size() == static_cast<size_t>(t.rank * t.n_in) &&
              t.b.size() == static_cast<size_t>(t.n_out * t.rank),
          path, ": target '", t.name, "' holds ", t.a.size(), " + ", t.b.size(),
          " values, expected ", t.rank * t.n_in, " + ", t.n_out * t.rank);
    w.add_tensor(t.name + std::string(kSuffixA), DType::F32, {t.n_in, t.rank}, t.a.data(),
                 t.a.size() * sizeof(float));
    w.add_tensor(t.name + std::string(kSuffixB), DType::F32, {t.rank, t.n_out}, t.b.data(),
                 t.b.size() * sizeof(float));
  }
  w.write(path);
}

std::optional<LoraSlot> lora_slot(const ArchSpec& arch, std::string_view name, int64_t n_layer) {
  if (name == tensor_name(arch, TensorRole::Output)) return LoraSlot{TensorRole::Output, -1};
  // "blk.<layer>.<...>": find the layer, then which of its matrices the name is.
  constexpr std::string_view kBlk = "blk.";
  if (name.substr(0, kBlk.size()) != kBlk) return std::nullopt;
  const char* p = name.data() + kBlk.size();
  const char* end = name.data() + name.size();
  int layer = -1;
  const auto [q, ec] = std::from_chars(p, end, layer);
  if (ec != std::errc() || q == p || layer < 0 || layer >= n_layer) return std::nullopt;
  for (TensorRole r : kLayerRoles)
    if (name == tensor_name(arch, r, layer)) return LoraSlot{r, layer};
  return std::nullopt;
}

void check_lora_fits(const LoraAdapter& a, const io::ModelFile& base, const ArchSpec& arch,
                     int64_t n_layer) {
  const std::string src = a.path.empty() ? std::string("adapter") : a.path;
  if (a.arch != arch.name)
    fail(src, ": adapter is for architecture '", a.arch, "' but ", base.path, " is '", arch.name,
         "'");
  for (const LoraTarget& t : a.targets) {
    const std::optional<LoraSlot> slot = lora_slot(arch, t.name, n_layer);
    if (!slot)
      fail(src, ": tensor '", t.name,
           "' is not an adaptable matrix of the base (attn_q/k/v/output, ffn_gate/up/down of a "
           "layer in [0, ",
           n_layer, "), or output.weight)");
    const gguf::TensorInfo* w = base.find_tensor(t.name);
    // A tied model has no output.weight: the output product reads token_embd.weight.
    if (!w && slot->role == TensorRole::Output)
      w = base.find_tensor(tensor_name(arch, TensorRole::TokenEmbd));
    if (!w) fail(src, ": tensor '", t.name, "' has no base tensor in ", base.path);
    if (w->shape.size() != 2 || w->shape[0] != t.n_in || w->shape[1] != t.n_out)
      fail(src, ": tensor '", t.name, "' adapts a matrix of shape [", t.n_in, ", ", t.n_out,
           "] but the base's '", w->name, "' has shape ", shape_str(w->shape));
    check(t.a.size() == static_cast<size_t>(t.rank * t.n_in) &&
              t.b.size() == static_cast<size_t>(t.n_out * t.rank),
          src, ": target '", t.name, "' holds the wrong number of values");
  }
}

}  // namespace brisk::model
