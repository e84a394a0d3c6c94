// GPTQ and the fixed-scale block grids it rounds to: grids reproduce to_float, set_codes is the
// exact inverse of to_float for the blocks from_float writes and rounds to the nearest grid point
// otherwise; GPTQ with H = I (or any diagonal H) is RTN byte for byte, lowers the layer's output
// error against RTN on correlated calibration inputs, returns W = to_float(bytes), handles dead
// inputs, does not depend on the thread count, and rejects bad arguments.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "common/random_data.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cpu/quant.h"
#include "quant/block_grid.h"
#include "quant/gptq.h"

using namespace brisk;
using test::gaussian;
using namespace brisk::quant;

namespace {

const DType kGridTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                            DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Row by row from_float: what `brisk convert` (round to nearest) stores.
std::vector<uint8_t> rtn(DType t, const std::vector<float>& W, int64_t rows, int64_t cols) {
  const size_t rb = row_bytes(t, cols);
  std::vector<uint8_t> q(static_cast<size_t>(rows) * rb);
  for (int64_t r = 0; r < rows; ++r)
    kernels::quant_kernels(t).from_float(&W[static_cast<size_t>(r * cols)], &q[r * rb], cols);
  return q;
}

std::vector<float> dequant(DType t, const std::vector<uint8_t>& q, int64_t rows, int64_t cols) {
  const size_t rb = row_bytes(t, cols);
  std::vector<float> y(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    kernels::quant_kernels(t).to_float(&q[r * rb], &y[static_cast<size_t>(r * cols)], cols);
  return y;
}

std::vector<float> identity(int64_t n) {
  std::vector<float> H(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) H[i * n + i] = 1.0f;
  return H;
}

// Calibration inputs X (N, cols) = Z M diag(s): Gaussian Z, a random mixing M (so that columns
// are correlated) and per-column scales s spread over ~e^3 (uneven input channels).
std::vector<double> calibration(int64_t N, int64_t cols, uint32_t seed, bool mix = true) {
  const std::vector<float> Z = gaussian(N * cols, seed);
  if (!mix) return std::vector<double>(Z.begin(), Z.end());
  const std::vector<float> M = gaussian(cols * cols, seed + 1);
  std::mt19937 rng(seed + 2);
  std::uniform_real_distribution<double> u(-1.5, 1.5);
  std::vector<double> s(static_cast<size_t>(cols));
  for (double& v : s) v = std::exp(u(rng));
  std::vector<double> X(static_cast<size_t>(N * cols), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < cols; ++k) {
      const double z = Z[n * cols + k];
      for (int64_t j = 0; j < cols; ++j) X[n * cols + j] += z * M[k * cols + j];
    }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < cols; ++j)
      X[n * cols + j] *= s[j] / std::sqrt(static_cast<double>(cols));
  return X;
}

// H = (2 / N) X^T X as f32 (cols, cols).
std::vector<float> hessian(const std::vector<double>& X, int64_t N, int64_t cols) {
  std::vector<float> H(static_cast<size_t>(cols * cols));
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = i; j < cols; ++j) {
      double s = 0;
      for (int64_t n = 0; n < N; ++n) s += X[n * cols + i] * X[n * cols + j];
      H[i * cols + j] = H[j * cols + i] = static_cast<float>(2.0 * s / static_cast<double>(N));
    }
  return H;
}

// ||X W^T - X Wq^T||_F^2 = sum over rows r of ||X (W_r - Wq_r)||^2.
double output_error(const std::vector<double>& X, int64_t N, const std::vector<float>& W,
                    const std::vector<float>& Wq, int64_t rows, int64_t cols) {
  double e = 0;
  std::vector<double> d(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j)
      d[j] = static_cast<double>(W[r * cols + j]) - static_cast<double>(Wq[r * cols + j]);
    for (int64_t n = 0; n < N; ++n) {
      double y = 0;
      for (int64_t j = 0; j < cols; ++j) y += X[n * cols + j] * d[j];
      e += y * y;
    }
  }
  return e;
}

// ---- block grids ----------------------------------------------------------------------------

TEST(BlockGrid, GridAndSetCodesInvertToFloat) {
  for (DType t : kGridTypes) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t bs = grid_block_size(t), nb = 8, n = bs * nb;
    std::vector<float> x = gaussian(n, 11);
    for (int64_t i = 0; i < n; ++i) x[i] *= 1.0f + static_cast<float>(i / bs);  // uneven blocks
    const size_t ts = dtype_layout(t).type_size;
    std::vector<uint8_t> q(row_bytes(t, n));
    kernels::quant_kernels(t).from_float(x.data(), q.data(), n);
    std::vector<float> y(static_cast<size_t>(n));
    kernels::quant_kernels(t).to_float(q.data(), y.data(), n);
    std::vector<int> l(static_cast<size_t>(bs));
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = &q[b * ts];
      get_codes(t, blk, l.data());
      for (int64_t i = 0; i < bs; ++i) {
        const ElementGrid g = element_grid(t, blk, i);
        ASSERT_GE(l[i], g.lo);
        ASSERT_LE(l[i], g.hi);
        ASSERT_EQ(g.value(l[i]), y[b * bs + i]) << "block " << b << " element " << i;
      }
    }
    std::vector<uint8_t> q2 = q;
    for (int64_t b = 0; b < nb; ++b) set_codes(t, &q2[b * ts], &y[b * bs]);
    EXPECT_EQ(q2, q);
  }
}

TEST(BlockGrid, SetCodesPicksNearestGridPointAndKeepsScales) {
  for (DType t : kGridTypes) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t bs = grid_block_size(t), nb = 4, n = bs * nb;
    const size_t ts = dtype_layout(t).type_size;
    const std::vector<float> a = gaussian(n, 21), x = gaussian(n, 22, 1.5f);  // x overshoots
    std::vector<uint8_t> qa(row_bytes(t, n));
    kernels::quant_kernels(t).from_float(a.data(), qa.data(), n);
    std::vector<float> ya(static_cast<size_t>(n));
    kernels::quant_kernels(t).to_float(qa.data(), ya.data(), n);
    std::vector<uint8_t> qx = qa;
    for (int64_t b = 0; b < nb; ++b) set_codes(t, &qx[b * ts], &x[b * bs]);
    std::vector<float> yx(static_cast<size_t>(n));
    kernels::quant_kernels(t).to_float(qx.data(), yx.data(), n);
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t i = 0; i < bs; ++i) {
        const ElementGrid g = element_grid(t, &qa[b * ts], i);
        const float xi = x[b * bs + i];
        float best = INFINITY;
        for (int l = g.lo; l <= g.hi; ++l) best = std::min(best, std::fabs(g.value(l) - xi));
        ASSERT_LE(std::fabs(yx[b * bs + i] - xi), best * (1 + 1e-6f) + 1e-7f)
            << "block " << b << " element " << i;
      }
    // Only codes changed: putting a's values back restores a's bytes.
    for (int64_t b = 0; b < nb; ++b) set_codes(t, &qx[b * ts], &ya[b * bs]);
    EXPECT_EQ(qx, qa);
  }
}

TEST(BlockGrid, RejectsOtherTypes) {
  const float x[32] = {};
  uint8_t blk[64] = {};
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_1, DType::Q8_K}) {
    EXPECT_FALSE(has_block_grid(t));
    EXPECT_THROW(element_grid(t, blk, 0), Error);
    EXPECT_THROW(set_codes(t, blk, x), Error);
  }
  EXPECT_THROW(element_grid(DType::Q4_0, blk, 32), Error);
}

// ---- GPTQ -----------------------------------------------------------------------------------

TEST(Gptq, IdentityOrDiagonalHessianIsRtn) {
  const int64_t rows = 21, cols = 512;  // 21 rows: a partial row chunk
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.1f, 3.0f);
  std::vector<float> Hdiag(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) Hdiag[i * cols + i] = u(rng);
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(t));
    const std::vector<float> W0 = gaussian(rows * cols, 3, 0.02f);
    const std::vector<uint8_t> ref = rtn(t, W0, rows, cols);
    for (int variant = 0; variant < 3; ++variant) {  // I; diagonal; diagonal with act_order
      std::vector<float> W = W0;
      GptqOptions o;
      o.act_order = variant == 2;
      const std::vector<uint8_t> q = gptq_quantize(
          W.data(), rows, cols, variant == 0 ? identity(cols).data() : Hdiag.data(), t, o, nullptr);
      EXPECT_EQ(q, ref) << "variant " << variant;
      EXPECT_EQ(W, dequant(t, q, rows, cols));
    }
  }
}

TEST(Gptq, LowersOutputErrorAgainstRtn) {
  const int64_t N = 512, cols = 256, rows = 48;
  const std::vector<double> X = calibration(N, cols, 7);
  const std::vector<float> H = hessian(X, N, cols);
  const std::vector<float> W0 = gaussian(rows * cols, 9, 0.05f);
  for (DType t : {DType::Q4_0, DType::Q4_K, DType::Q8_0, DType::Q6_K, DType::Q3_K}) {
    const std::vector<float> Wr = dequant(t, rtn(t, W0, rows, cols), rows, cols);
    const double e_rtn = output_error(X, N, W0, Wr, rows, cols);
    for (bool act : {false, true}) {
      std::vector<float> W = W0;
      GptqOptions o;
      o.act_order = act;
      const std::vector<uint8_t> q = gptq_quantize(W.data(), rows, cols, H.data(), t, o, nullptr);
      EXPECT_EQ(W, dequant(t, q, rows, cols));
      const double ratio = output_error(X, N, W0, W, rows, cols) / e_rtn;
      std::printf("gptq/rtn output error %-5s act_order=%d: %.3f\n", dtype_name(t), act, ratio);
      EXPECT_LT(ratio, 0.8) << dtype_name(t) << " act_order " << act;
    }
  }
}

TEST(Gptq, LazyBatchWidthDoesNotChangeTheResultMuch) {
  // Lazy batching only regroups the same updates (one GEMM per batch instead of rank-1 updates):
  // widths 32 (a GEMM after every block) and 256 (none) must give nearly the same error.
  const int64_t N = 256, cols = 256, rows = 16;
  const std::vector<double> X = calibration(N, cols, 17);
  const std::vector<float> H = hessian(X, N, cols);
  const std::vector<float> W0 = gaussian(rows * cols, 19, 0.05f);
  double e[2];
  int k = 0;
  for (int64_t width : {32, 256}) {
    std::vector<float> W = W0;
    GptqOptions o;
    o.block = width;
    gptq_quantize(W.data(), rows, cols, H.data(), DType::Q4_0, o, nullptr);
    e[k++] = output_error(X, N, W0, W, rows, cols);
  }
  EXPECT_NEAR(e[0] / e[1], 1.0, 0.02);
}

TEST(Gptq, DeadColumnsGetZeroWeight) {
  const int64_t N = 256, cols = 256, rows = 16;
  std::vector<double> X = calibration(N, cols, 27);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j : {0, 5, 100, 255}) X[n * cols + j] = 0;  // inputs that never fire
  const std::vector<float> H = hessian(X, N, cols);
  const std::vector<float> W0 = gaussian(rows * cols, 29, 0.05f);
  for (DType t : {DType::Q8_0, DType::Q4_K}) {
    for (bool act : {false, true}) {
      std::vector<float> W = W0;
      GptqOptions o;
      o.act_order = act;
      const std::vector<uint8_t> q = gptq_quantize(W.data(), rows, cols, H.data(), t, o, nullptr);
      for (float v : W) ASSERT_TRUE(std::isfinite(v));
      const std::vector<float> Wr = dequant(t, rtn(t, W0, rows, cols), rows, cols);
      EXPECT_LT(output_error(X, N, W0, W, rows, cols), output_error(X, N, W0, Wr, rows, cols));
      if (t == DType::Q8_0) {  // symmetric grid: zero is a grid point
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j : {0, 5, 100, 255}) EXPECT_EQ(W[r * cols + j], 0.0f);
      }
    }
  }
}

TEST(Gptq, ResultDoesNotDependOnThreadCount) {
  const int64_t N = 256, cols = 512, rows = 50;
  const std::vector<double> X = calibration(N, cols, 37);
  const std::vector<float> H = hessian(X, N, cols);
  const std::vector<float> W0 = gaussian(rows * cols, 39, 0.05f);
  ThreadPool one(1), three(3);
  for (bool act : {false, true}) {
    GptqOptions o;
    o.act_order = act;
    std::vector<float> W1 = W0, W3 = W0, Wn = W0;
    const auto q1 = gptq_quantize(W1.data(), rows, cols, H.data(), DType::Q4_K, o, &one);
    const auto q3 = gptq_quantize(W3.data(), rows, cols, H.data(), DType::Q4_K, o, &three);
    const auto qn = gptq_quantize(Wn.data(), rows, cols, H.data(), DType::Q4_K, o, nullptr);
    EXPECT_EQ(q1, q3);
    EXPECT_EQ(q1, qn);
    EXPECT_EQ(W1, W3);
  }
}

TEST(Gptq, RejectsBadArguments) {
  std::vector<float> W(8 * 288, 0.1f);
  const std::vector<float> H = identity(288);
  const GptqOptions o;
  // 288 is a multiple of 32 but not of 256.
  EXPECT_NO_THROW(gptq_quantize(W.data(), 8, 288, H.data(), DType::Q4_0, o, nullptr));
  EXPECT_THROW(gptq_quantize(W.data(), 8, 288, H.data(), DType::Q4_K, o, nullptr), Error);
  EXPECT_THROW(gptq_quantize(W.data(), 8, 100, H.data(), DType::Q4_0, o, nullptr), Error);
  EXPECT_THROW(gptq_quantize(W.data(), 8, 288, H.data(), DType::F16, o, nullptr), Error);
  EXPECT_THROW(gptq_quantize(W.data(), 8, 288, H.data(), DType::Q8_K, o, nullptr), Error);
  GptqOptions bad = o;
  bad.block = 0;
  EXPECT_THROW(gptq_quantize(W.data(), 8, 288, H.data(), DType::Q4_0, bad, nullptr), Error);
  bad = o;
  bad.damp = -1;
  EXPECT_THROW(gptq_quantize(W.data(), 8, 288, H.data(), DType::Q4_0, bad, nullptr), Error);
  std::vector<float> neg = H;
  for (float& v : neg) v = -v;  // negative definite: no Cholesky factor
  EXPECT_THROW(gptq_quantize(W.data(), 8, 288, neg.data(), DType::Q4_0, o, nullptr), Error);
  std::vector<float> nan_h = H;
  nan_h[5] = NAN;
  EXPECT_THROW(gptq_quantize(W.data(), 8, 288, nan_h.data(), DType::Q4_0, o, nullptr), Error);
}

TEST(Gptq, TimesOfTwoShapes) {
  // Informational: the time of a 768x256 and a 256x768 Q4_K matrix (no assertion on time).
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{768, 256}, {256, 768}}) {
    const int64_t N = 256;
    const std::vector<double> X = calibration(N, cols, 47, /*mix=*/false);
    const std::vector<float> H = hessian(X, N, cols);
    const std::vector<float> W0 = gaussian(rows * cols, 49, 0.05f);
    ThreadPool pool(2);
    std::vector<uint8_t> q;
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      std::vector<float> W = W0;
      const auto t0 = std::chrono::steady_clock::now();
      q = gptq_quantize(W.data(), rows, cols, H.data(), DType::Q4_K, GptqOptions{}, p);
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::printf("gptq q4_K %lldx%lld: %.1f ms (%d threads)\n", static_cast<long long>(rows),
                  static_cast<long long>(cols), ms, p ? p->size() : 1);
    }
    EXPECT_EQ(q.size(), static_cast<size_t>(rows) * row_bytes(DType::Q4_K, cols));
  }
}

}  // namespace
