// Rotary position embedding with the variants GGUF models use.
//   layout Adjacent (llama in GGUF): rotates pairs (x[2i], x[2i+1]);
//   layout NeoX (qwen2, HF order): rotates pairs (x[i], x[i + n_dims/2]).
// Only the first n_dims of each head rotate (partial rotary); the rest pass through.
// Angle of pair i at position p: p * base^(-2i/n_dims), then
//   linear scaling: times freq_scale (= 1/factor);
//   YaRN: interpolated/extrapolated mix by a ramp over the correction dims, magnitude scaled;
//   llama3 / rope_freqs: divided by a per-pair frequency factor.
#pragma once
#include <cstdint>
#include <vector>

namespace brisk::ops {

enum class RopeLayout { Adjacent, NeoX };

struct RopeConfig {
  int n_dims = 0;    // rotated dims per head (even)
  int head_dim = 0;  // stride between heads
  float base = 10000.0f;
  RopeLayout layout = RopeLayout::Adjacent;
  float freq_scale = 1.0f;   // 1 / linear or YaRN factor
  float ext_factor = 0.0f;   // YaRN extrapolation mix (0 = off)
  float attn_factor = 1.0f;  // YaRN magnitude scale
  float beta_fast = 32.0f;   // YaRN correction range
  float beta_slow = 1.0f;
  int n_ctx_orig = 0;               // training context for YaRN correction dims
  std::vector<float> freq_factors;  // n_dims/2 divisors (llama3 scaling); empty = none
};

// cos/sin of every pair at one position: (n_dims/2) each.
void rope_angles(const RopeConfig& c, int64_t pos, float* cos_out, float* sin_out);

// x is (n_heads, head_dim) for one token; rotated in place with precomputed angles.
void rope_apply(const RopeConfig& c, const float* cos_t, const float* sin_t, float* x, int n_heads);

// llama3-style per-pair frequency divisors from the HF rope_scaling parameters.
std::vector<float> llama3_freq_factors(int n_dims, float base, float factor, float low_freq_factor,
                                       float high_freq_factor, int n_ctx_orig);

}  // namespace brisk::ops
