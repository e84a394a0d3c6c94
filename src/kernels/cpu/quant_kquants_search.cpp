// k-quant quantisers: per-sub-block scale (and min) search, then quantisation of the sub-block
// scales against one f16 super-scale, then the codes recomputed against the scales as stored.
//
// Sub-block fits minimise a weighted squared error sum_i w_i (x_i - xhat_i)^2:
//   symmetric  (Q3_K, Q6_K): xhat = d * l, l in [-nmax, nmax - 1];
//   asymmetric (Q2_K, Q4_K, Q5_K): xhat = d * l - m, l in [0, nmax], m >= 0 (the block's min is
//     clamped to <= 0 so that m is non-negative, as the format's unsigned mins require).
// Each fit tries a small grid of inverse scales around the one that maps the extreme element to
// the end of the code range, solves the least-squares scale (and min) for the codes each one
// gives, keeps the best, and then alternates "re-round codes / re-solve scale" until it stops
// improving. Default weights follow ggml's choices (x^2 for the symmetric types, |x| for Q2_K,
// rms + |x| for Q4_K/Q5_K); an importance vector multiplies sqrt(sigma^2 + x^2) instead.
// Cost: ~20-40 passes over each sub-block, i.e. O(50 n) flops; this runs at conversion time only.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/quant_blocks.h"

namespace brisk::kernels {
namespace {

constexpr float kGroupEps = 1e-15f;

inline int clampi(int v, int lo, int hi) {
  return std::min(hi, std::max(lo, v));
}

// ---- symmetric fit ------------------------------------------------------------------------------

// Score of codes L for x: with the optimal d = sum(wxl) / sum(wll) the error falls by
// sum(wxl)^2 / sum(wll), so a larger score is better. Returns d through `d`.
inline float sym_score(const float* x, const float* w, const int8_t* L, int n, float& d) {
  float sxl = 0, sll = 0;
  for (int i = 0; i < n; ++i) {
    sxl += w[i] * x[i] * L[i];
    sll += w[i] * L[i] * L[i];
  }
  if (sll <= 0) {
    d = 0;
    return 0;
  }
  d = sxl / sll;
  return sxl * sxl / sll;
}

// Fits x (n values) as d * L with L in [-nmax, nmax - 1]; returns d (0 for an all-zero group).
float fit_symmetric(const float* x, const float* w, int n, int nmax, int8_t* L) {
  float amax = 0, mx = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      mx = x[i];
    }
  if (amax < kGroupEps) {
    std::memset(L, 0, static_cast<size_t>(n));
    return 0;
  }
  int8_t cand[32];
  float best = -1, best_d = 0;
  for (int step = -9; step <= 9; ++step) {
    const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / mx;
    for (int i = 0; i < n; ++i)
      cand[i] = static_cast<int8_t>(clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
    float d;
    const float s = sym_score(x, w, cand, n, d);
    if (s > best) {
      best = s;
      best_d = d;
      std::memcpy(L, cand, static_cast<size_t>(n));
    }
  }
  // Alternate: codes nearest to x / d, then the least-squares d for those codes.
  for (int iter = 0; iter < 8 && best_d != 0; ++iter) {
    const float id = 1.0f / best_d;
    for (int i = 0; i < n; ++i)
      cand[i] = static_cast<int8_t>(clampi(nearest_int(id * x[i]), -nmax, nmax - 1));
    float d;
    const float s = sym_score(x, w, cand, n, d);
    if (!(s > best * (1.0f + 1e-6f))) break;
    best = s;
    best_d = d;
    std::memcpy(L, cand, static_cast<size_t>(n));
  }
  return best_d;
}

// ---- asymmetric fit -----------------------------------------------------------------------------

// Weighted least squares of x ~ d * L + b over codes L, with b <= 0 enforced. Returns the error
// less the constant sum(w x^2), from the sums (no second pass):
//   sum w (dL + b - x)^2 - sum w x^2 = d^2 Sll + 2 d b Sl + b^2 Sw - 2 d Sxl - 2 b Sx.
inline float asym_solve(const float* x, const float* w, const uint8_t* L, int n, float& d,
                        float& b) {
  float sw = 0, sx = 0, sl = 0, sll = 0, sxl = 0;
  for (int i = 0; i < n; ++i) {
    const float l = L[i];
    sw += w[i];
    sx += w[i] * x[i];
    sl += w[i] * l;
    sll += w[i] * l * l;
    sxl += w[i] * x[i] * l;
  }
  const float det = sw * sll - sl * sl;
  if (det > 0) {
    d = (sw * sxl - sx * sl) / det;
    b = (sll * sx - sl * sxl) / det;
    if (b > 0) {  // a positive offset cannot be stored: fit through the origin instead
      b = 0;
      d = sll > 0 ? sxl / sll : 0;
    }
  } else {
    d = 0;
    b = sw > 0 ? std::min(0.0f, sx / sw) : 0;
  }
  return d * d * sll + 2 * d * b * sl + b * b * sw - 2 * d * sxl - 2 * b * sx;
}

// Fits x (n values) as d * L - m with L in [0, nmax], m >= 0. Candidate inverse scales are
// (nmax + rmin + rdelta * k) / (max - min) for k in [0, nstep]. Returns d; m through `m_out`.
float fit_asymmetric(const float* x, const float* w, int n, int nmax, uint8_t* L, float& m_out,
                     float rmin, float rdelta, int nstep) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  lo = std::min(lo, 0.0f);
  if (hi - lo < kGroupEps) {
    std::memset(L, 0, static_cast<size_t>(n));
    m_out = -lo;
    return 0;
  }
  uint8_t cand[32];
  float best_err = INFINITY, best_d = 0, best_b = lo;
  auto try_codes = [&](float iscale, float b0) {
    for (int i = 0; i < n; ++i)
      cand[i] = static_cast<uint8_t>(clampi(nearest_int(iscale * (x[i] - b0)), 0, nmax));
    float d, b;
    const float err = asym_solve(x, w, cand, n, d, b);
    if (err < best_err && d >= 0) {
      best_err = err;
      best_d = d;
      best_b = b;
      std::memcpy(L, cand, static_cast<size_t>(n));
      return true;
    }
    return false;
  };
  try_codes(static_cast<float>(nmax) / (hi - lo), lo);
  for (int k = 0; k <= nstep; ++k)
    try_codes((static_cast<float>(nmax) + rmin + rdelta * static_cast<float>(k)) / (hi - lo), lo);
  for (int iter = 0; iter < 8 && best_d > 0; ++iter)
    if (!try_codes(1.0f / best_d, best_b)) break;
  if (best_d <= 0) {  // degenerate (e.g. all weights zero): plain min/max grid
    best_d = (hi - lo) / static_cast<float>(nmax);
    best_b = lo;
    for (int i = 0; i < n; ++i)
      L[i] = static_cast<uint8_t>(clampi(nearest_int((x[i] - lo) / best_d), 0, nmax));
  }
  m_out = -best_b;
  return best_d;
}

// ---- weights
// --------------------------------------------------------------------------------------

enum class Weighting { kSquare, kAbs, kRmsPlusAbs };

// w[i] for one group of n values; `imp` (may be null) is the importance of the same elements and
// sigma2 the block's mean square (used only with importance).
void group_weights(const float* x, const float* imp, int n, Weighting kind, float sigma2,
                   float* w) {
  if (imp) {
    for (int i = 0; i < n; ++i) w[i] = imp[i] * std::sqrt(sigma2 + x[i] * x[i]);
    return;
  }
  switch (kind) {
    case Weighting::kSquare:
      for (int i = 0; i < n; ++i) w[i] = x[i] * x[i];
      break;
    case Weighting::kAbs:
      for (int i = 0; i < n; ++i) w[i] = std::fabs(x[i]);
      break;
    case Weighting::kRmsPlusAbs: {
      float s = 0;
      for (int i = 0; i < n; ++i) s += x[i] * x[i];
      const float rms = std::sqrt(s / static_cast<float>(n));
      for (int i = 0; i < n; ++i) w[i] = rms + std::fabs(x[i]);
      break;
    }
  }
}

inline float block_sigma2(const float* x) {
  float s = 0;
  for (int i = 0; i < kQK_K; ++i) s += x[i] * x[i];
  return 2.0f * s / static_cast<float>(kQK_K);
}

// Packs 256 2-bit codes as Q2_K/Q3_K's qs: e = 128 h + 32 k + l goes to qs[32 h + l] bit pair k.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* e = L + 128 * h + l;
      qs[32 * h + l] = static_cast<uint8_t>((e[0] & 3) | ((e[32] & 3) << 2) | ((e[64] & 3) << 4) |
                                            ((e[96] & 3) << 6));
    }
}

// Asymmetric super-block: fit nsub groups of `sub` elements, quantise scales and mins to
// [0, smax] against d = max_scale / smax and dmin = max_min / smax, recompute codes. Fills
// L (256 codes), sc/mn (nsub quantised values); returns f16 d and dmin through the last two.
void quantize_asym_block(const float* x, const float* imp, int sub, int nmax, int smax,
                         Weighting wk, float rmin, float rdelta, int nstep, uint8_t* L, uint8_t* sc,
                         uint8_t* mn, uint16_t& d16, uint16_t& dmin16) {
  const int nsub = kQK_K / sub;
  float scales[16], mins[16], w[32];
  const float sigma2 = imp ? block_sigma2(x) : 0;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < nsub; ++j) {
    group_weights(x + sub * j, imp ? imp + sub * j : nullptr, sub, wk, sigma2, w);
    scales[j] =
        fit_asymmetric(x + sub * j, w, sub, nmax, L + sub * j, mins[j], rmin, rdelta, nstep);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? static_cast<float>(smax) / max_scale : 0;
  const float inv_min = max_min > 0 ? static_cast<float>(smax) / max_min : 0;
  for (int j = 0; j < nsub; ++j) {
    sc[j] = static_cast<uint8_t>(std::min(smax, nearest_int(inv_scale * scales[j])));
    mn[j] = static_cast<uint8_t>(std::min(smax, nearest_int(inv_min * mins[j])));
  }
  d16 = f32_to_f16(max_scale / static_cast<float>(smax));
  dmin16 = f32_to_f16(max_min / static_cast<float>(smax));
  // Codes against the scales as a reader will see them.
  const float d = fp16(d16), dmin = fp16(dmin16);
  for (int j = 0; j < nsub; ++j) {
    const float dl = d * static_cast<float>(sc[j]);
    if (dl == 0) continue;
    const float ml = dmin * static_cast<float>(mn[j]);
    for (int i = 0; i < sub; ++i)
      L[sub * j + i] =
          static_cast<uint8_t>(clampi(nearest_int((x[sub * j + i] + ml) / dl), 0, nmax));
  }
}

}  // namespace

// ---- Q2_K: 16 groups of 16, 2-bit codes, 4-bit scales and mins ---------------------------------

void q2_k_quantize(const float* src, void* dst, int64_t n, const float* importance) {
  check_block_multiple(DType::Q2_K, n, "from_float");
  BlockQ2_K* b = static_cast<BlockQ2_K*>(dst);
  uint8_t L[kQK_K], sc[16], mn[16];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    const float* imp = importance ? importance + i * kQK_K : nullptr;
    quantize_asym_block(x, imp, 16, 3, 15, Weighting::kAbs, -0.5f, 0.1f, 15, L, sc, mn, b[i].d,
                        b[i].dmin);
    for (int j = 0; j < 16; ++j) b[i].scales[j] = static_cast<uint8_t>(sc[j] | (mn[j] << 4));
    pack_2bit(L, b[i].qs);
  }
}
void q2_k_from_float(const float* src, void* dst, int64_t n) {
  q2_k_quantize(src, dst, n, nullptr);
}

// ---- Q3_K: 16 groups of 16, 3-bit signed codes, 6-bit signed scales -----------------------------

void q3_k_quantize(const float* src, void* dst, int64_t n, const float* importance) {
  check_block_multiple(DType::Q3_K, n, "from_float");
  BlockQ3_K* b = static_cast<BlockQ3_K*>(dst);
  int8_t L[kQK_K], isc[16];
  float scales[16], w[16];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    const float* imp = importance ? importance + i * kQK_K : nullptr;
    const float sigma2 = imp ? block_sigma2(x) : 0;
    float amax = 0, max_scale = 0;
    for (int j = 0; j < 16; ++j) {
      group_weights(x + 16 * j, imp ? imp + 16 * j : nullptr, 16, Weighting::kSquare, sigma2, w);
      scales[j] = fit_symmetric(x + 16 * j, w, 16, 4, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(&b[i], 0, sizeof(BlockQ3_K));
    if (amax < kGroupEps) continue;  // all-zero block: d = 0
    // The largest scale maps to -32 exactly; the others land in [-32, 32] and are capped at 31.
    const float iscale = -32.0f / max_scale;
    for (int j = 0; j < 16; ++j)
      isc[j] = static_cast<int8_t>(clampi(nearest_int(iscale * scales[j]), -32, 31));
    pack_scales_q3_k(isc, b[i].scales);
    b[i].d = f32_to_f16(1.0f / iscale);
    const float d = fp16(b[i].d);
    uint8_t codes[kQK_K];
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(isc[j]);
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * j + l;
        const int q = dl != 0 ? clampi(nearest_int(x[e] / dl), -4, 3) : 0;
        codes[e] = static_cast<uint8_t>(q + 4);  // [0, 7]
      }
    }
    for (int e = 0; e < kQK_K; ++e)
      if (codes[e] > 3)
        b[i].hmask[e % 32] = static_cast<uint8_t>(b[i].hmask[e % 32] | (1u << (e / 32)));
    pack_2bit(codes, b[i].qs);
  }
}
void q3_k_from_float(const float* src, void* dst, int64_t n) {
  q3_k_quantize(src, dst, n, nullptr);
}

// ---- Q4_K / Q5_K: 8 groups of 32, 4/5-bit codes, 6-bit scales and mins
// ----------------------------

void q4_k_quantize(const float* src, void* dst, int64_t n, const float* importance) {
  check_block_multiple(DType::Q4_K, n, "from_float");
  BlockQ4_K* b = static_cast<BlockQ4_K*>(dst);
  uint8_t L[kQK_K], sc[8], mn[8];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    const float* imp = importance ? importance + i * kQK_K : nullptr;
    quantize_asym_block(x, imp, 32, 15, 63, Weighting::kRmsPlusAbs, -1.0f, 0.1f, 20, L, sc, mn,
                        b[i].d, b[i].dmin);
    pack_scale_min_k4(sc, mn, b[i].scales);
    for (int p = 0; p < 4; ++p)
      for (int l = 0; l < 32; ++l)
        b[i].qs[32 * p + l] = static_cast<uint8_t>(L[64 * p + l] | (L[64 * p + 32 + l] << 4));
  }
}
void q4_k_from_float(const float* src, void* dst, int64_t n) {
  q4_k_quantize(src, dst, n, nullptr);
}

void q5_k_quantize(const float* src, void* dst, int64_t n, const float* importance) {
  check_block_multiple(DType::Q5_K, n, "from_float");
  BlockQ5_K* b = static_cast<BlockQ5_K*>(dst);
  uint8_t L[kQK_K], sc[8], mn[8];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    const float* imp = importance ? importance + i * kQK_K : nullptr;
    quantize_asym_block(x, imp, 32, 31, 63, Weighting::kRmsPlusAbs, -0.5f, 0.1f, 15, L, sc, mn,
                        b[i].d, b[i].dmin);
    pack_scale_min_k4(sc, mn, b[i].scales);
    std::memset(b[i].qh, 0, sizeof(b[i].qh));
    for (int p = 0; p < 4; ++p)
      for (int l = 0; l < 32; ++l) {
        const int lo = L[64 * p + l], hi = L[64 * p + 32 + l];
        b[i].qs[32 * p + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
        b[i].qh[l] =
            static_cast<uint8_t>(b[i].qh[l] | ((lo >> 4) << (2 * p)) | ((hi >> 4) << (2 * p + 1)));
      }
  }
}
void q5_k_from_float(const float* src, void* dst, int64_t n) {
  q5_k_quantize(src, dst, n, nullptr);
}

// ---- Q6_K: 16 groups of 16, 6-bit signed codes, int8 scales ------------------------------------

void q6_k_quantize(const float* src, void* dst, int64_t n, const float* importance) {
  check_block_multiple(DType::Q6_K, n, "from_float");
  BlockQ6_K* b = static_cast<BlockQ6_K*>(dst);
  int8_t L[kQK_K];
  float scales[16], w[16];
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    const float* imp = importance ? importance + i * kQK_K : nullptr;
    const float sigma2 = imp ? block_sigma2(x) : 0;
    float amax = 0, max_scale = 0;
    for (int j = 0; j < 16; ++j) {
      group_weights(x + 16 * j, imp ? imp + 16 * j : nullptr, 16, Weighting::kSquare, sigma2, w);
      scales[j] = fit_symmetric(x + 16 * j, w, 16, 32, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(&b[i], 0, sizeof(BlockQ6_K));
    if (amax < kGroupEps) continue;
    const float iscale =
        -128.0f / max_scale;  // largest scale -> -128 exactly, others capped at 127
    for (int j = 0; j < 16; ++j)
      b[i].scales[j] = static_cast<int8_t>(clampi(nearest_int(iscale * scales[j]), -128, 127));
    b[i].d = f32_to_f16(1.0f / iscale);
    const float d = fp16(b[i].d);
    uint8_t codes[kQK_K];
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(b[i].scales[j]);
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * j + l;
        codes[e] =
            static_cast<uint8_t>((dl != 0 ? clampi(nearest_int(x[e] / dl), -32, 31) : 0) + 32);
      }
    }
    for (int h = 0; h < 2; ++h) {
      const uint8_t* c = codes + 128 * h;
      uint8_t* ql = b[i].ql + 64 * h;
      uint8_t* qh = b[i].qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((c[l] & 0xF) | ((c[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((c[l + 32] & 0xF) | ((c[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((c[l] >> 4) | ((c[l + 32] >> 4) << 2) |
                                     ((c[l + 64] >> 4) << 4) | ((c[l + 96] >> 4) << 6));
      }
    }
  }
}
void q6_k_from_float(const float* src, void* dst, int64_t n) {
  q6_k_quantize(src, dst, n, nullptr);
}

}  // namespace brisk::kernels
