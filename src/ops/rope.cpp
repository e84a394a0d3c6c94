#include "ops/rope.h"

#include <algorithm>
#include <cmath>

namespace brisk::ops {
namespace {

// Dimension (in pairs*2 units) at which a wavelength spans n_rot rotations over the original
// context; YaRN blends between interpolation and extrapolation across [corr_lo, corr_hi].
float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
  return static_cast<float>(n_dims) *
         std::log(static_cast<float>(n_ctx_orig) / (n_rot * 2.0f * static_cast<float>(M_PI))) /
         (2.0f * std::log(base));
}

float yarn_ramp(float low, float high, int i0) {
  const float y = (static_cast<float>(i0) / 2.0f - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

}  // namespace

void rope_angles(const RopeConfig& c, int64_t pos, float* cos_out, float* sin_out) {
  const float theta_scale = std::pow(c.base, -2.0f / static_cast<float>(c.n_dims));
  float corr_lo = 0, corr_hi = 0;
  if (c.ext_factor != 0.0f) {
    corr_lo =
        std::max(0.0f, std::floor(yarn_corr_dim(c.n_dims, c.n_ctx_orig, c.beta_fast, c.base)));
    corr_hi = std::min(static_cast<float>(c.n_dims - 1),
                       std::ceil(yarn_corr_dim(c.n_dims, c.n_ctx_orig, c.beta_slow, c.base)));
  }
  // The angle is advanced multiplicatively pair by pair (as the reference implementation does),
  // which keeps our logits within float rounding of it.
  float theta_base = static_cast<float>(pos);
  for (int i0 = 0; i0 < c.n_dims; i0 += 2) {
    const float ff = c.freq_factors.empty() ? 1.0f : c.freq_factors[static_cast<size_t>(i0 / 2)];
    const float theta_extrap = theta_base / ff;
    const float theta_interp = c.freq_scale * theta_extrap;
    float theta = theta_interp;
    float mscale = c.attn_factor;
    if (c.ext_factor != 0.0f) {
      const float mix = yarn_ramp(corr_lo, corr_hi, i0) * c.ext_factor;
      theta = theta_interp * (1 - mix) + theta_extrap * mix;
      mscale *= 1.0f + 0.1f * std::log(1.0f / c.freq_scale);
    }
    cos_out[i0 / 2] = std::cos(theta) * mscale;
    sin_out[i0 / 2] = std::sin(theta) * mscale;
    theta_base *= theta_scale;
  }
}

void rope_apply(const RopeConfig& c, const float* cos_t, const float* sin_t, float* x,
                int n_heads) {
  const int half = c.n_dims / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * c.head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = c.layout == RopeLayout::Adjacent ? 2 * i : i;
      const int b = c.layout == RopeLayout::Adjacent ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cos_t[i] - x1 * sin_t[i];
      v[b] = x0 * sin_t[i] + x1 * cos_t[i];
    }
  }
}

std::vector<float> llama3_freq_factors(int n_dims, float base, float factor, float low_freq_factor,
                                       float high_freq_factor, int n_ctx_orig) {
  // Long wavelengths (beyond the original context / low_freq_factor) are slowed by `factor`,
  // short ones (below n_ctx_orig / high_freq_factor) are kept, and the band between is blended.
  std::vector<float> out(static_cast<size_t>(n_dims / 2));
  const double low_wavelen = n_ctx_orig / static_cast<double>(low_freq_factor);
  const double high_wavelen = n_ctx_orig / static_cast<double>(high_freq_factor);
  for (int i = 0; i < n_dims / 2; ++i) {
    const double freq = 1.0 / std::pow(static_cast<double>(base), 2.0 * i / n_dims);
    const double wavelen = 2.0 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1.0;
    } else if (wavelen > low_wavelen) {
      f = factor;
    } else {
      const double smooth =
          (n_ctx_orig / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    out[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  return out;
}

}  // namespace brisk::ops
