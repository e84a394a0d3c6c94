// LoRA adapters in llama.cpp's GGUF convention: reading, validating and writing them.
//
// File: general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (f32; absent or 0
// means "no alpha / rank factor"), general.architecture = the base model's architecture. For each
// adapted base matrix W named N (ggml shape [n_in, n_out], math (n_out, n_in), y = W x) two
// tensors:
//   N.lora_a  ggml [n_in, r]   math A (r, n_in)
//   N.lora_b  ggml [r, n_out]  math B (n_out, r)
// and the adapted layer computes y = W x + s * (alpha / r) * B (A x), s the user's scale.
// Adapter tensors are read from F32, F16 or BF16 and written as F32.
//
// Targets may be any per-layer matrix (attn_q/k/v/output, ffn_gate/up/down) and output.weight
// (also on a model with tied embeddings, where it adapts the output product only). Applying an
// adapter without merging lives in model.h (Model::add_lora, lora_apply.cpp); merging is
// merge_lora below (lora_merge.cpp, `brisk lora merge`).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/thread_pool.h"
#include "io/model_file.h"
#include "model/arch.h"

namespace brisk::model {

// One adapted matrix: A (rank, n_in) and B (n_out, rank), row-major f32.
struct LoraTarget {
  std::string name;  // the base tensor, e.g. "blk.0.attn_q.weight"
  int64_t n_in = 0, n_out = 0, rank = 0;
  std::vector<float> a, b;
};

struct LoraAdapter {
  std::string path;  // where it came from (for messages); empty when built in memory
  std::string arch;  // general.architecture of the base it belongs to
  float alpha = 0;   // adapter.lora.alpha
  std::vector<LoraTarget> targets;

  const LoraTarget* find(std::string_view base_name) const;
  // The factor applied to B A for a target: scale * alpha / rank, or scale when alpha is 0.
  float factor(const LoraTarget& t, float scale) const;
};

// Reads and validates an adapter file: the keys above, every tensor a .lora_a or .lora_b with its
// other half present, 2-D shapes with consistent ranks, a supported type, finite values. Throws
// brisk::Error naming the file and the tensor or key at fault.
LoraAdapter load_lora_adapter(const std::string& path);

// Writes an adapter file (A and B as F32). Throws brisk::Error for inconsistent targets.
void write_lora_adapter(const std::string& path, const std::string& arch, float alpha,
                        std::span<const LoraTarget> targets);

// Where a target lands in an architecture's block: role (AttnQ ... FfnDown, or Output) and layer
// (-1 for Output). nullopt for a name that is not an adaptable matrix.
struct LoraSlot {
  TensorRole role;
  int layer;
};
std::optional<LoraSlot> lora_slot(const ArchSpec& arch, std::string_view name, int64_t n_layer);

// Checks an adapter against the base model file it will be applied to: same architecture, every
// target an adaptable matrix of the base with the base's shape. Throws brisk::Error naming the
// adapter file and the tensor at fault.
void check_lora_fits(const LoraAdapter& a, const io::ModelFile& base, const ArchSpec& arch,
                     int64_t n_layer);

// One adapter of a merge and its user scale.
struct LoraMergeInput {
  const LoraAdapter* adapter;
  float scale = 1.0f;
};

// Writes `base` to out_path as GGUF with the adapters merged into their matrices:
// W' = W + sum scale * alpha / r * B A, computed in f32 from the dequantised W, then stored as
// `type` (F32, F16 or BF16), or requantised to W's own type when type is nullopt ("keep").
// Every other tensor and all metadata are copied unchanged; an adapter on output.weight of a
// tied model adds an output.weight (token_embd.weight + delta). One merged matrix is in memory at
// a time. progress(i, n, name) is called before each merged matrix. Returns the number merged.
size_t merge_lora(const io::ModelFile& base, std::span<const LoraMergeInput> adapters,
                  const std::string& out_path, std::optional<DType> type, ThreadPool& pool,
                  const std::function<void(size_t, size_t, const std::string&)>& progress = {});

}  // namespace brisk::model
