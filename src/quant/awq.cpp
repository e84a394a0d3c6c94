#include "quant/awq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/cpu/quant.h"

namespace brisk::quant {

double awq_error(const float* G, int64_t cols, const std::vector<AwqMatrix>& mats,
                 const std::vector<float>& s, ThreadPool& pool) {
  double total = 0;
  for (const AwqMatrix& m : mats) {
    const kernels::QuantKernels& k = kernels::quant_kernels(m.type);
    const size_t rb = row_bytes(m.type, cols);
    // D = W - Q(W diag(s)) diag(1/s), (rows, cols)
    std::vector<float> D(static_cast<size_t>(m.rows * cols));
    pool.parallel_for(m.rows, [&](int64_t b, int64_t e, int) {
      std::vector<float> row(static_cast<size_t>(cols));
      std::vector<uint8_t> q(rb);
      for (int64_t r = b; r < e; ++r) {
        const float* w = m.W + r * cols;
        for (int64_t j = 0; j < cols; ++j)
          row[static_cast<size_t>(j)] = w[j] * s[static_cast<size_t>(j)];
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
  std::vector<Mat> group;
  switch (site.mat) {
    case Mat::Q:
      kind = 0, group = {Mat::Q, Mat::K, Mat::V};
      break;
    case Mat::O:
      if (m.shape.heads == m.shape.kv_heads) kind = 1, group = {Mat::O};
      break;
    case Mat::Gate:
      kind = 2, group = {Mat::Gate, Mat::Up};
      break;
    case Mat::Down:
      kind = 3, group = {Mat::Down};
      break;
    default:
      break;
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
  std::vector<float> G(static_cast<size_t>(cols * cols));
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(cols), static_cast<int>(take),
              1.0f, Xs.data(), static_cast<int>(cols), 0.0f, G.data(), static_cast<int>(cols));
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < i; ++j) G[i * cols + j] = G[j * cols + i];
  std::vector<AwqMatrix> mats;
  for (Mat g : group) {
    const std::string name = site_tensor_name(site.layer, g);
    mats.push_back({m.mat(site.layer, g), m.layout.at(name).rows, type_of_(name)});
  }
  AwqResult r = awq_search(G.data(), act.data(), cols, mats, grid_, pool_);
  static const char* kNames[] = {"qkv", "o", "gate_up", "down"};
  log_.push_back({str_cat("blk.", site.layer, ".", kNames[kind]), r.alpha, r.err_rtn, r.err_best});
  if (r.alpha > 0) folds_.push_back({site.layer, kind, std::move(r.s)});
}

void AwqProcessor::apply(CalibModel& m) const {
  using train::Mat;
  for (const Fold& f : folds_) {
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
    }
  }
}

}  // namespace brisk::quant
