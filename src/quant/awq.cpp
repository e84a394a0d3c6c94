#include "quant/awq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/cpu/quant.h"

namespace brisk::quant {

namespace {

void clip_row(float* w, int64_t cols, int64_t block, const float* ratios) {
  for (int64_t b = 0; b < cols / block; ++b) {
    if (ratios[b] >= 1.0f) continue;
    float* x = w + b * block;
    float mx = 0;
    for (int64_t i = 0; i < block; ++i) mx = std::max(mx, std::fabs(x[i]));
    const float t = ratios[b] * mx;
    for (int64_t i = 0; i < block; ++i) x[i] = std::clamp(x[i], -t, t);
  }
}

}  // namespace

void awq_apply_clip(float* W, int64_t rows, int64_t cols, int64_t block,
                    const std::vector<float>& ratios) {
  check(static_cast<int64_t>(ratios.size()) == rows * (cols / block), "awq: ", ratios.size(),
        " clip ratios for ", rows, " rows of ", cols / block, " blocks");
  for (int64_t r = 0; r < rows; ++r)
    clip_row(W + r * cols, cols, block, ratios.data() + r * (cols / block));
}

std::vector<float> awq_clip_search(const float* W, int64_t rows, int64_t cols, DType type,
                                   const float* G, int steps, ThreadPool& pool) {
  check(steps >= 1, "awq: the clip grid needs at least 1 step");
  const kernels::QuantKernels& k = kernels::quant_kernels(type);
  const int64_t B = dtype_layout(type).block_size, nb = cols / B, nc = steps + 1;
  check(cols % B == 0, "awq: ", cols, " columns are not a multiple of the ", dtype_name(type),
        " block");
  std::vector<float> ratios(static_cast<size_t>(rows * nb), 1.0f);
  pool.parallel_for(rows, [&](int64_t b0, int64_t e0, int) {
    // Per block, the rounding errors of all candidates D (nc, B), then E = D G_bb in one product
    // and err_k = E_k . D_k (for 256-element k-quant blocks a scalar loop here was 30 s on the
    // default model's 8192-row output matrix).
    std::vector<float> c(static_cast<size_t>(B)), q(static_cast<size_t>(B));
    std::vector<float> D(static_cast<size_t>(nc * B)), E(static_cast<size_t>(nc * B));
    std::vector<uint8_t> buf(row_bytes(type, B));
    for (int64_t r = b0; r < e0; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const float* w = W + r * cols + b * B;
        float mx = 0;
        for (int64_t i = 0; i < B; ++i) mx = std::max(mx, std::fabs(w[i]));
        if (mx == 0) continue;
        for (int64_t st = 0; st < nc; ++st) {
          const float t = (1.0f - 0.5f * static_cast<float>(st) / static_cast<float>(steps)) * mx;
          for (int64_t i = 0; i < B; ++i) c[static_cast<size_t>(i)] = std::clamp(w[i], -t, t);
          k.from_float(c.data(), buf.data(), B);
          k.to_float(buf.data(), q.data(), B);
          float* d = D.data() + st * B;
          for (int64_t i = 0; i < B; ++i) d[i] = w[i] - q[static_cast<size_t>(i)];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(nc),
                    static_cast<int>(B), static_cast<int>(B), 1.0f, D.data(), static_cast<int>(B),
                    G + b * B * cols + b * B, static_cast<int>(cols), 0.0f, E.data(),
                    static_cast<int>(B));
        double best = -1;
        for (int64_t st = 0; st < nc; ++st) {
          double e = 0;  // d^T G_bb d
          for (int64_t i = 0; i < B; ++i)
            e += static_cast<double>(E[static_cast<size_t>(st * B + i)]) *
                 D[static_cast<size_t>(st * B + i)];
          if (best < 0 || e < best) {
            best = e;
            ratios[static_cast<size_t>(r * nb + b)] =
                1.0f - 0.5f * static_cast<float>(st) / static_cast<float>(steps);
          }
        }
      }
  });
  return ratios;
}

double awq_error(const float* G, int64_t cols, const std::vector<AwqMatrix>& mats,
                 const std::vector<float>& s, ThreadPool& pool) {
  double total = 0;
  for (const AwqMatrix& m : mats) {
    const kernels::QuantKernels& k = kernels::quant_kernels(m.type);
    const size_t rb = row_bytes(m.type, cols);
    const int64_t block = dtype_layout(m.type).block_size;
    // D = W - Q(clip(W diag(s))) diag(1/s), (rows, cols)
    std::vector<float> D(static_cast<size_t>(m.rows * cols));
    pool.parallel_for(m.rows, [&](int64_t b, int64_t e, int) {
      std::vector<float> row(static_cast<size_t>(cols));
      std::vector<uint8_t> q(rb);
      for (int64_t r = b; r < e; ++r) {
        const float* w = m.W + r * cols;
        for (int64_t j = 0; j < cols; ++j)
          row[static_cast<size_t>(j)] = w[j] * s[static_cast<size_t>(j)];
        if (m.clip) clip_row(row.data(), cols, block, m.clip->data() + r * (cols / block));
        k.from_float(row.data(), q.data(), cols);
        k.to_float(q.data(), row.data(), cols);
        float* d = D.data() + r * cols;
        for (int64_t j = 0; j < cols; ++j)
          d[j] = w[j] - row[static_cast<size_t>(j)] / s[static_cast<size_t>(j)];
      }
    });
    // err = sum((D G) .* D)
    std::vector<float> DG(D.size());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m.rows),
                static_cast<int>(cols), static_cast<int>(cols), 1.0f, D.data(),
                static_cast<int>(cols), G, static_cast<int>(cols), 0.0f, DG.data(),
                static_cast<int>(cols));
    double e = 0;
    for (size_t i = 0; i < D.size(); ++i) e += static_cast<double>(DG[i]) * D[i];
    total += e;
  }
  return total;
}

AwqResult awq_search(const float* G, const float* act, int64_t cols,
                     const std::vector<AwqMatrix>& mats, int grid, ThreadPool& pool) {
  check(grid >= 1, "awq: the alpha grid needs at least 1 step");
  AwqResult best;
  std::vector<float> s(static_cast<size_t>(cols));
  for (int g = 0; g <= grid; ++g) {
    const double alpha = static_cast<double>(g) / grid;
    float mx = 0, mn = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const float v =
          static_cast<float>(std::pow(std::max(static_cast<double>(act[j]), 1e-4), alpha));
      s[static_cast<size_t>(j)] = v;
      mx = j == 0 ? v : std::max(mx, v);
      mn = j == 0 ? v : std::min(mn, v);
    }
    const float norm = std::sqrt(mx * mn);
    for (float& v : s) v /= norm;
    const double err = awq_error(G, cols, mats, s, pool);
    if (g == 0) best.err_rtn = err;
    if (g == 0 || err < best.err_best) {
      best.err_best = err;
      best.alpha = alpha;
      best.s = s;
    }
  }
  return best;
}

void AwqProcessor::process(const CalibSite& site, const float* X, int64_t n, float*,
                           CalibModel& m) {
  using train::Mat;
  int kind = -1;
  std::vector<std::string> group;  // tensors sharing this input
  auto t = [&](Mat g) { return site_tensor_name(site.layer, g); };
  if (site.output) {
    kind = 4, group = {site.tensor};
  } else {
    switch (site.mat) {
      case Mat::Q:
        kind = 0, group = {t(Mat::Q), t(Mat::K), t(Mat::V)};
        break;
      case Mat::O:
        kind = 1, group = {t(Mat::O)};
        break;
      case Mat::Gate:
        kind = 2, group = {t(Mat::Gate), t(Mat::Up)};
        break;
      case Mat::Down:
        kind = 3, group = {t(Mat::Down)};
        break;
      default:
        break;
    }
  }
  if (kind < 0) return;
  const int64_t cols = site.cols;
  // Every row of X when n is small, else an even subsample of max_tokens rows.
  const int64_t take = std::min(n, max_tokens_);
  std::vector<float> Xs(static_cast<size_t>(take * cols));
  for (int64_t i = 0; i < take; ++i) {
    const int64_t src = i * n / take;
    std::copy(X + src * cols, X + (src + 1) * cols, Xs.begin() + i * cols);
  }
  std::vector<float> act(static_cast<size_t>(cols), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < cols; ++j) act[static_cast<size_t>(j)] += std::fabs(X[i * cols + j]);
  for (float& a : act) a /= static_cast<float>(n);
  const std::vector<float> G = gram(Xs.data(), take, cols, 1.0f);
  std::vector<AwqMatrix> mats;
  for (const std::string& name : group)
    mats.push_back({m.tensor(name), m.layout.at(name).rows, type_of_(name)});
  for (const AwqMatrix& a : mats)
    if (!dtype_layout(a.type).quantized) return;  // a float type (--keep-output-f16): no rounding
  // o under grouped-query attention (one v row feeds several o columns) and a tied output (also
  // the embedding table) are not scaled, only clipped.
  const bool scalable =
      (kind != 1 || m.shape.heads == m.shape.kv_heads) && (kind != 4 || !m.shape.tied);
  AwqResult r;
  if (scalable) {
    r = awq_search(G.data(), act.data(), cols, mats, grid_, pool_);
  } else {
    r.s.assign(static_cast<size_t>(cols), 1.0f);
    r.err_rtn = r.err_best = awq_error(G.data(), cols, mats, r.s, pool_);
  }
  // Clipping, searched on the scaled weights W diag(s) with the Gram matrix of X diag(1/s).
  std::vector<float> Gs(G.size());
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j)
      Gs[static_cast<size_t>(i * cols + j)] =
          G[static_cast<size_t>(i * cols + j)] /
          (r.s[static_cast<size_t>(i)] * r.s[static_cast<size_t>(j)]);
  std::vector<std::vector<float>> clips(mats.size());
  for (size_t k = 0; clip_ && k < mats.size(); ++k) {
    std::vector<float> Ws(mats[k].W, mats[k].W + mats[k].rows * cols);
    for (int64_t i = 0; i < mats[k].rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        Ws[static_cast<size_t>(i * cols + j)] *= r.s[static_cast<size_t>(j)];
    clips[k] = awq_clip_search(Ws.data(), mats[k].rows, cols, mats[k].type, Gs.data(), 20, pool_);
    mats[k].clip = &clips[k];
  }
  const double err_clip = clip_ ? awq_error(G.data(), cols, mats, r.s, pool_) : r.err_best;
  const bool clipped = err_clip < r.err_best;
  static const char* kNames[] = {"qkv", "o", "gate_up", "down"};
  log_.push_back({kind == 4 ? site.tensor : str_cat("blk.", site.layer, ".", kNames[kind]), r.alpha,
                  r.err_rtn, r.err_best, clipped ? err_clip : r.err_best, clipped});
  Fold f{site.layer, kind, {}, {}};
  if (r.alpha > 0) f.s = std::move(r.s);
  if (clipped)
    for (size_t k = 0; k < mats.size(); ++k) f.clips.emplace_back(group[k], std::move(clips[k]));
  if (!f.s.empty() || !f.clips.empty()) folds_.push_back(std::move(f));
}

void AwqProcessor::apply(CalibModel& m) const {
  using train::Mat;
  for (const Fold& f : folds_) {
    if (f.s.empty()) continue;
    const int64_t cols = static_cast<int64_t>(f.s.size());
    auto scale_cols = [&](Mat g) {
      float* W = m.mat(f.layer, g);
      const int64_t rows = m.layout.at(site_tensor_name(f.layer, g)).rows;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) W[r * cols + j] *= f.s[static_cast<size_t>(j)];
    };
    auto unscale_rows = [&](Mat g) {  // previous linear layer: output row j divided by s_j
      float* W = m.mat(f.layer, g);
      const int64_t in = m.layout.at(site_tensor_name(f.layer, g)).cols;
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t c = 0; c < in; ++c) W[j * in + c] /= f.s[static_cast<size_t>(j)];
    };
    auto unscale_norm = [&](float* w) {
      for (int64_t j = 0; j < cols; ++j) w[j] /= f.s[static_cast<size_t>(j)];
    };
    switch (f.kind) {
      case 0:
        unscale_norm(m.attn_norm(f.layer));
        for (Mat g : {Mat::Q, Mat::K, Mat::V}) scale_cols(g);
        break;
      case 1:
        unscale_rows(Mat::V);
        scale_cols(Mat::O);
        break;
      case 2:
        unscale_norm(m.ffn_norm(f.layer));
        for (Mat g : {Mat::Gate, Mat::Up}) scale_cols(g);
        break;
      case 3:
        unscale_rows(Mat::Up);
        scale_cols(Mat::Down);
        break;
      case 4: {
        unscale_norm(m.output_norm());
        const train::ParamInfo& info = m.layout.params()[m.layout.output()];
        float* W = m.params.data() + info.offset;
        for (int64_t r = 0; r < info.rows; ++r)
          for (int64_t j = 0; j < cols; ++j) W[r * cols + j] *= f.s[static_cast<size_t>(j)];
        break;
      }
    }
  }
  // Clipping last, on the scaled weights. Its ratios are relative to each block's maximum, so the
  // row scalings of v and up by later folds (uniform along a row) do not change what they mean.
  for (const Fold& f : folds_)
    for (const auto& [name, ratios] : f.clips) {
      const train::ParamInfo& info = m.layout.at(name);
      awq_apply_clip(m.tensor(name), info.rows, info.cols, dtype_layout(type_of_(name)).block_size,
                     ratios);
    }
}

}  // namespace brisk::quant
