// Weight pruning of one matrix (src/quant/prune.h): exact zero counts per row and N:M group for
// every method, the reconstruction-error ordering magnitude > Wanda > SparseGPT on correlated
// calibration inputs with uneven column scales, thread-count independence, and bad settings.
#include "quant/prune.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "train/rng.h"

namespace brisk::quant {
namespace {

constexpr PruneMethod kMethods[] = {PruneMethod::Magnitude, PruneMethod::Wanda,
                                    PruneMethod::SparseGPT};

// Standard normals from SplitMix64 (Box-Muller): the same values on every platform.
std::vector<double> randn(size_t n, uint64_t seed) {
  train::SplitMix64 rng(seed);
  auto uniform = [&] { return (static_cast<double>(rng.next() >> 11) + 0.5) * 0x1.0p-53; };
  std::vector<double> v(n);
  for (size_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform())), t = 6.283185307179586 * uniform();
    v[i] = r * std::cos(t);
    if (i + 1 < n) v[i + 1] = r * std::sin(t);
  }
  return v;
}

// Calibration inputs X (N, C): a rank-16 common part plus noise (correlated columns), each column
// then scaled by exp(u), u uniform in [-2, 2] (scales 0.14 .. 7.4), as LLM activations have a few
// large channels.
struct Calib {
  int64_t N, C;
  std::vector<double> X;  // (N, C)
  std::vector<float> H;   // (C, C) = (2/N) X^T X
};

Calib make_calib(int64_t N, int64_t C, uint64_t seed) {
  constexpr int64_t kRank = 16;
  const auto a = randn(static_cast<size_t>(N * kRank), seed);
  const auto b = randn(static_cast<size_t>(kRank * C), seed + 1);
  const auto noise = randn(static_cast<size_t>(N * C), seed + 2);
  const auto u = randn(static_cast<size_t>(C), seed + 3);
  Calib c{N, C, std::vector<double>(static_cast<size_t>(N * C)), {}};
  for (int64_t j = 0; j < C; ++j) {
    const double scale = std::exp(4.0 * (std::erf(u[j] / std::sqrt(2.0)) / 2.0));  // exp(U[-2,2])
    for (int64_t t = 0; t < N; ++t) {
      double s = 0;
      for (int64_t k = 0; k < kRank; ++k) s += a[t * kRank + k] * b[k * C + j];
      c.X[t * C + j] = scale * (s / 4.0 + 0.5 * noise[t * C + j]);
    }
  }
  c.H.assign(static_cast<size_t>(C * C), 0.0f);
  for (int64_t i = 0; i < C; ++i)
    for (int64_t j = 0; j < C; ++j) {
      double s = 0;
      for (int64_t t = 0; t < N; ++t) s += c.X[t * C + i] * c.X[t * C + j];
      c.H[i * C + j] = static_cast<float>(2.0 * s / static_cast<double>(N));
    }
  return c;
}

std::vector<float> make_weights(int64_t rows, int64_t cols, uint64_t seed) {
  const auto v = randn(static_cast<size_t>(rows * cols), seed);
  return std::vector<float>(v.begin(), v.end());
}

// ||X W^T - X Wp^T||_F^2 over the calibration rows.
double recon_error(const Calib& c, const std::vector<float>& W, const std::vector<float>& Wp,
                   int64_t rows) {
  double total = 0;
  for (int64_t t = 0; t < c.N; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t j = 0; j < c.C; ++j)
        s += c.X[t * c.C + j] * (static_cast<double>(W[r * c.C + j]) - Wp[r * c.C + j]);
      total += s * s;
    }
  return total;
}

int64_t count_zeros(const float* w, int64_t n) {
  int64_t z = 0;
  for (int64_t i = 0; i < n; ++i) z += w[i] == 0.0f;
  return z;
}

PruneOptions opts(PruneMethod m, double sparsity, int n = 0, int mm = 0) {
  PruneOptions o;
  o.method = m;
  o.sparsity = sparsity;
  o.n = n;
  o.m = mm;
  return o;
}

class PruneTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { calib_ = new Calib(make_calib(512, 256, 7)); }
  static void TearDownTestSuite() {
    delete calib_;
    calib_ = nullptr;
  }
  static Calib* calib_;
};
Calib* PruneTest::calib_ = nullptr;

TEST_F(PruneTest, ExactZerosPerRow) {
  const int64_t rows = 24, cols = 256;
  for (PruneMethod m : kMethods)
    for (double s : {0.5, 0.3}) {
      for (int64_t block : {128, 96}) {  // 96: batches not dividing the row
        if (block != 128 && m != PruneMethod::SparseGPT) continue;
        auto W = make_weights(rows, cols, 11);
        PruneOptions o = opts(m, s);
        o.block = block;
        const int64_t want = static_cast<int64_t>(std::floor(cols * s));
        const int64_t z = prune_matrix(W.data(), rows, cols, calib_->H.data(), o, nullptr);
        EXPECT_EQ(z, want * rows) << prune_method_name(m) << " s=" << s << " block=" << block;
        for (int64_t r = 0; r < rows; ++r)
          ASSERT_EQ(count_zeros(&W[r * cols], cols), want)
              << prune_method_name(m) << " s=" << s << " block=" << block << " row " << r;
      }
    }
}

TEST_F(PruneTest, ExactNMPattern) {
  const int64_t rows = 16, cols = 256;
  const NMPattern patterns[] = {{2, 4}, {1, 4}, {4, 8}};
  for (PruneMethod m : kMethods)
    for (const NMPattern& p : patterns) {
      auto W = make_weights(rows, cols, 12);
      PruneOptions o = opts(m, 0.0, p.n, p.m);
      o.block = 100;  // rounded down to a multiple of m inside
      const int64_t z = prune_matrix(W.data(), rows, cols, calib_->H.data(), o, nullptr);
      EXPECT_EQ(z, rows * cols / p.m * p.n) << prune_method_name(m);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols; g += p.m)
          ASSERT_EQ(count_zeros(&W[r * cols + g], p.m), p.n)
              << prune_method_name(m) << " " << p.n << ":" << p.m << " row " << r << " col " << g;
    }
}

// The point of the calibration-aware methods: a smaller layer output error.
TEST_F(PruneTest, ReconstructionErrorOrdering) {
  const int64_t rows = 64, cols = 256;
  const auto W = make_weights(rows, cols, 13);
  struct Setting {
    const char* name;
    PruneOptions o;
  };
  const Setting settings[] = {{"50%", opts(PruneMethod::Magnitude, 0.5)},
                              {"2:4", opts(PruneMethod::Magnitude, 0.0, 2, 4)}};
  for (const Setting& st : settings) {
    double err[3];
    for (int i = 0; i < 3; ++i) {
      PruneOptions o = st.o;
      o.method = kMethods[i];
      auto Wp = W;
      prune_matrix(Wp.data(), rows, cols, calib_->H.data(), o, nullptr);
      err[i] = recon_error(*calib_, W, Wp, rows);
    }
    std::printf(
        "[ prune %s ] recon error: magnitude %.4g, wanda %.4g (%.3f x magnitude), "
        "sparsegpt %.4g (%.3f x wanda)\n",
        st.name, err[0], err[1], err[1] / err[0], err[2], err[2] / err[1]);
    EXPECT_LT(err[1], err[0]) << st.name;
    EXPECT_LT(err[2], err[1]) << st.name;
  }
}

TEST_F(PruneTest, ZeroSparsityChangesNothing) {
  const int64_t rows = 8, cols = 256;
  const auto W = make_weights(rows, cols, 14);
  for (PruneMethod m : kMethods) {
    auto Wp = W;
    EXPECT_EQ(prune_matrix(Wp.data(), rows, cols, calib_->H.data(), opts(m, 0.0), nullptr), 0);
    EXPECT_EQ(std::memcmp(Wp.data(), W.data(), W.size() * sizeof(float)), 0)
        << prune_method_name(m);
  }
}

TEST_F(PruneTest, SameResultsForAnyThreadCount) {
  const int64_t rows = 40, cols = 256;
  const auto W = make_weights(rows, cols, 15);
  ThreadPool one(1), three(3);
  for (PruneMethod m : kMethods)
    for (const PruneOptions& base : {opts(m, 0.5), opts(m, 0.0, 2, 4)}) {
      auto a = W, b = W, c = W;
      prune_matrix(a.data(), rows, cols, calib_->H.data(), base, &one);
      prune_matrix(b.data(), rows, cols, calib_->H.data(), base, &three);
      prune_matrix(c.data(), rows, cols, calib_->H.data(), base, nullptr);
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << prune_method_name(m);
      EXPECT_EQ(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)), 0)
          << prune_method_name(m);
    }
}

// The lazy batches are only a reordering of SparseGPT's column-by-column updates: with N:M (the
// mask chosen per group, whatever the batch) every batch width gives the same weights up to
// rounding. Checks the batch-to-the-right product against the in-batch updates.
TEST_F(PruneTest, SparseGPTBatchWidthDoesNotMatterForNM) {
  const int64_t rows = 16, cols = 256;
  const auto W = make_weights(rows, cols, 17);
  std::vector<float> ref;
  for (int64_t block : {256, 128, 36, 4}) {
    auto Wp = W;
    PruneOptions o = opts(PruneMethod::SparseGPT, 0.0, 2, 4);
    o.block = block;
    prune_matrix(Wp.data(), rows, cols, calib_->H.data(), o, nullptr);
    if (ref.empty()) {
      ref = Wp;
      continue;
    }
    for (size_t i = 0; i < Wp.size(); ++i) {
      ASSERT_EQ(Wp[i] == 0.0f, ref[i] == 0.0f) << "block " << block << " at " << i;
      ASSERT_NEAR(Wp[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << "block " << block;
    }
  }
}

// A column whose input is always zero: H's row and column are 0. SparseGPT must still factor H,
// and the dead column's weights (no effect on the output) are the first ones pruned.
TEST_F(PruneTest, DeadColumns) {
  const int64_t rows = 8, cols = 64;
  Calib c = make_calib(128, cols, 21);
  for (int64_t t = 0; t < c.N; ++t) c.X[t * cols + 5] = 0.0;
  for (int64_t j = 0; j < cols; ++j) c.H[5 * cols + j] = c.H[j * cols + 5] = 0.0f;
  for (PruneMethod m : {PruneMethod::Wanda, PruneMethod::SparseGPT}) {
    auto W = make_weights(rows, cols, 22);
    for (int64_t r = 0; r < rows; ++r) W[r * cols + 5] = 100.0f;  // large, yet useless
    prune_matrix(W.data(), rows, cols, c.H.data(), opts(m, 0.25), nullptr);
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(W[r * cols + 5], 0.0f) << prune_method_name(m) << " row " << r;
      EXPECT_EQ(count_zeros(&W[r * cols], cols), 16) << prune_method_name(m);
      for (int64_t j = 0; j < cols; ++j) ASSERT_TRUE(std::isfinite(W[r * cols + j]));
    }
  }
}

TEST_F(PruneTest, BadArgumentsThrow) {
  const int64_t rows = 4, cols = 256;
  auto W = make_weights(rows, cols, 16);
  const float* H = calib_->H.data();
  for (PruneMethod m : kMethods) {
    for (double s : {1.0, 1.5, -0.1, std::nan("")})
      EXPECT_THROW(prune_matrix(W.data(), rows, cols, H, opts(m, s), nullptr), Error) << s;
    EXPECT_THROW(prune_matrix(W.data(), rows, cols, H, opts(m, 0.0, 4, 4), nullptr), Error);
    EXPECT_THROW(prune_matrix(W.data(), rows, cols, H, opts(m, 0.0, 5, 4), nullptr), Error);
    EXPECT_THROW(prune_matrix(W.data(), rows, cols, H, opts(m, 0.0, -1, 4), nullptr), Error);
    // 252 = 256 - 4 is a multiple of 4 but not of 8; 250 of neither.
    EXPECT_THROW(prune_matrix(W.data(), rows, 250, H, opts(m, 0.0, 2, 4), nullptr), Error);
    EXPECT_THROW(prune_matrix(W.data(), rows, 252, H, opts(m, 0.0, 4, 8), nullptr), Error);
  }
  EXPECT_THROW(prune_matrix(W.data(), rows, cols, nullptr, opts(PruneMethod::Wanda, 0.5), nullptr),
               Error);
  EXPECT_THROW(
      prune_matrix(W.data(), rows, cols, nullptr, opts(PruneMethod::SparseGPT, 0.5), nullptr),
      Error);
  PruneOptions o = opts(PruneMethod::SparseGPT, 0.5);
  o.block = 0;
  EXPECT_THROW(prune_matrix(W.data(), rows, cols, H, o, nullptr), Error);
  o = opts(PruneMethod::SparseGPT, 0.5);
  o.damp = -1;
  EXPECT_THROW(prune_matrix(W.data(), rows, cols, H, o, nullptr), Error);
  // Not positive definite even after damping: a negative-definite H.
  std::vector<float> neg(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t j = 0; j < cols; ++j) neg[j * cols + j] = -1.0f;
  EXPECT_THROW(
      prune_matrix(W.data(), rows, cols, neg.data(), opts(PruneMethod::SparseGPT, 0.5), nullptr),
      Error);
  // Magnitude needs no H.
  EXPECT_EQ(prune_matrix(W.data(), rows, cols, nullptr, opts(PruneMethod::Magnitude, 0.5), nullptr),
            rows * cols / 2);
}

TEST(PruneParse, MethodsAndPatterns) {
  EXPECT_EQ(parse_prune_method("magnitude"), PruneMethod::Magnitude);
  EXPECT_EQ(parse_prune_method("wanda"), PruneMethod::Wanda);
  EXPECT_EQ(parse_prune_method("sparsegpt"), PruneMethod::SparseGPT);
  EXPECT_FALSE(parse_prune_method("SparseGPT"));
  EXPECT_FALSE(parse_prune_method(""));
  const auto p = parse_nm_pattern("2:4");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->n, 2);
  EXPECT_EQ(p->m, 4);
  const auto q = parse_nm_pattern("4:8");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->n, 4);
  EXPECT_EQ(q->m, 8);
  for (const char* bad : {"4:4", "5:4", "0:4", "2:", ":4", "a:b", "2:4x", "-1:4", " 2:4", "2;4", "",
                          "24", "2:4:8", "+2:4"})
    EXPECT_FALSE(parse_nm_pattern(bad)) << bad;
}

}  // namespace
}  // namespace brisk::quant
