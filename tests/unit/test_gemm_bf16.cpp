// The bf16 training GEMM (kernels/cpu/gemm_bf16.h): the scalar reference against an f64 product of
// the bf16-rounded operands, and the AVX512-BF16 kernel against the reference (exactly on
// integer data, whose sums are exact in any order; within the f32 summation-order bound on
// gaussian data) over edge shapes, all four transpositions, padded strides and beta 0 / 1 / 0.5.
// The fast-kernel checks are skipped on CPUs without AVX512_BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/isa.h"

using namespace brisk;
using namespace brisk::kernels;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kSentinel = -12345.0f;  // C padding: must stay untouched

float rounded(float x) {
  return bf16_to_f32(f32_to_bf16(x));
}

// One product's operands, stored with optional padding (filled with NaN: a kernel reading past
// the logical columns would poison its results) and a C with sentinel padding.
struct Problem {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  float beta;
  std::vector<float> a, b, c;

  Problem(bool ta_, bool tb_, int64_t M_, int64_t N_, int64_t K_, int64_t pad, float beta_,
          bool integers, uint32_t seed)
      : ta(ta_), tb(tb_), M(M_), N(N_), K(K_), beta(beta_) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    std::uniform_int_distribution<int> ints(-8, 8);
    auto value = [&] { return integers ? static_cast<float>(ints(rng)) : gauss(rng); };
    // Storage: A is (M, K) or (K, M), B is (K, N) or (N, K), row-major with the given strides.
    const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
    const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
    lda = a_cols + pad;
    ldb = b_cols + 2 * pad;
    ldc = N + pad;
    a.assign(static_cast<size_t>(std::max<int64_t>(1, a_rows * lda)), kNaN);
    b.assign(static_cast<size_t>(std::max<int64_t>(1, b_rows * ldb)), kNaN);
    c.assign(static_cast<size_t>(M * ldc), kSentinel);
    for (int64_t r = 0; r < a_rows; ++r)
      for (int64_t j = 0; j < a_cols; ++j) a[static_cast<size_t>(r * lda + j)] = value();
    for (int64_t r = 0; r < b_rows; ++r)
      for (int64_t j = 0; j < b_cols; ++j) b[static_cast<size_t>(r * ldb + j)] = value();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n)
        c[static_cast<size_t>(m * ldc + n)] = beta == 0.0f ? kNaN : value();
  }
  float op_a(int64_t m, int64_t k) const {
    return a[static_cast<size_t>(ta ? k * lda + m : m * lda + k)];
  }
  float op_b(int64_t k, int64_t n) const {
    return b[static_cast<size_t>(tb ? n * ldb + k : k * ldb + n)];
  }
  float c0(int64_t m, int64_t n) const { return c[static_cast<size_t>(m * ldc + n)]; }

  using Fn = void (*)(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*,
                      int64_t, float, float*, int64_t);
  std::vector<float> run(Fn fn) const {
    std::vector<float> out = c;
    fn(ta, tb, M, N, K, a.data(), lda, b.data(), ldb, beta, out.data(), ldc);
    return out;
  }
  // Sum of |a b| over k plus |beta c|: the scale of the summation-order error of element (m, n).
  double magnitude(int64_t m, int64_t n) const {
    double s = beta == 0.0f ? 0.0 : std::fabs(static_cast<double>(beta) * c0(m, n));
    for (int64_t k = 0; k < K; ++k)
      s += std::fabs(static_cast<double>(rounded(op_a(m, k))) * rounded(op_b(k, n)));
    return s;
  }
  std::string name() const {
    return "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " M=" + std::to_string(M) +
           " N=" + std::to_string(N) + " K=" + std::to_string(K) + " lda=" + std::to_string(lda) +
           " ldb=" + std::to_string(ldb) + " ldc=" + std::to_string(ldc) +
           " beta=" + std::to_string(beta);
  }
};

// The padding columns of C keep their sentinel.
void expect_padding_kept(const Problem& p, const std::vector<float>& out) {
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = p.N; n < p.ldc; ++n)
      ASSERT_EQ(out[static_cast<size_t>(m * p.ldc + n)], kSentinel) << p.name();
}

struct Shape {
  int64_t M, N, K;
};
// Edge shapes around the fast kernel's tiles (12 x 32), K block (256), row block (144) and
// column block (1024): tiny, odd K, one row or column, partial tiles, several blocks.
const Shape kShapes[] = {{1, 1, 1},     {1, 1, 2},     {2, 3, 1},     {1, 37, 5},   {13, 1, 64},
                         {12, 32, 256}, {13, 33, 257}, {25, 65, 511}, {7, 100, 3},  {11, 17, 31},
                         {24, 64, 33},  {150, 70, 90}, {20, 1030, 9}, {3, 40, 600}, {37, 48, 513},
                         {16, 16, 16},  {5, 96, 1},    {289, 5, 40}};

// Runs `check` for every shape, transposition, padding and beta.
template <class F>
void for_all_cases(bool integers, F&& check) {
  const float betas[] = {0.0f, 1.0f, 0.5f};
  uint32_t seed = 1;
  int i = 0;
  for (const Shape& s : kShapes)
    for (int t = 0; t < 4; ++t)
      for (int64_t pad : {0, 3}) {
        const Problem p(t & 1, t & 2, s.M, s.N, s.K, pad, betas[i++ % 3], integers, seed++);
        check(p);
        if (::testing::Test::HasFatalFailure()) return;
      }
}

TEST(GemmBf16, ReferenceMatchesF64ProductOfRoundedOperands) {
  for_all_cases(false, [](const Problem& p) {
    const std::vector<float> out = p.run(gemm_bf16_ref);
    expect_padding_kept(p, out);
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t n = 0; n < p.N; ++n) {
        double want = 0;
        for (int64_t k = 0; k < p.K; ++k)
          want += static_cast<double>(rounded(p.op_a(m, k))) * rounded(p.op_b(k, n));
        if (p.beta != 0.0f) want += static_cast<double>(p.beta) * p.c0(m, n);
        // Sequential f32 sum of K exact products, plus the beta term: (K + 2) roundings.
        const double tol = static_cast<double>(p.K + 2) * std::ldexp(1.0, -24) * p.magnitude(m, n);
        const float got = out[static_cast<size_t>(m * p.ldc + n)];
        ASSERT_NEAR(got, want, tol + 1e-30) << p.name() << " at " << m << "," << n;
      }
  });
}

TEST(GemmBf16, FastKernelEqualsReferenceOnIntegers) {
  if (!gemm_bf16_fast()) GTEST_SKIP() << "no AVX512_BF16 kernel on this CPU / ISA";
  // Integers in [-8, 8] are exact in bf16 and every partial sum is an exact f32 integer, so the
  // summation order cannot matter: any difference is a packing or indexing error.
  for_all_cases(true, [](const Problem& p) {
    const std::vector<float> want = p.run(gemm_bf16_ref), got = p.run(gemm_bf16);
    expect_padding_kept(p, got);
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t n = 0; n < p.N; ++n) {
        const size_t i = static_cast<size_t>(m * p.ldc + n);
        ASSERT_EQ(got[i], want[i]) << p.name() << " at " << m << "," << n;
      }
  });
}

TEST(GemmBf16, FastKernelMatchesReferenceOnGaussians) {
  if (!gemm_bf16_fast()) GTEST_SKIP() << "no AVX512_BF16 kernel on this CPU / ISA";
  for_all_cases(false, [](const Problem& p) {
    const std::vector<float> want = p.run(gemm_bf16_ref), got = p.run(gemm_bf16);
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t n = 0; n < p.N; ++n) {
        const size_t i = static_cast<size_t>(m * p.ldc + n);
        // Both are f32 sums of the same exact products in different orders: each is within
        // (K + 2) u * magnitude of the exact value.
        const double tol = 2.0 * (p.K + 2) * std::ldexp(1.0, -24) * p.magnitude(m, n);
        ASSERT_TRUE(std::isfinite(got[i])) << p.name() << " at " << m << "," << n;
        ASSERT_NEAR(got[i], want[i], tol + 1e-30) << p.name() << " at " << m << "," << n;
      }
  });
}

// Operands are rounded to nearest even, not truncated: C = bf16(a) * 1 for values at and around
// the halfway points between bf16 neighbours, through both packing paths of A (trans_a) and B.
TEST(GemmBf16, RoundsOperandsToNearestEven) {
  const float values[] = {1.0f + 0x1p-8f,             // tie -> 1 (even)
                          1.0f + 3 * 0x1p-8f,         // tie -> 1 + 2^-6 (even)
                          1.0f + 0x1p-8f + 0x1p-20f,  // above the tie -> 1 + 2^-7
                          -(1.0f + 3 * 0x1p-8f),      // negative tie
                          1.0f + 0x1p-8f - 0x1p-20f,  // below the tie -> 1
                          3.0e38f,                    // large finite
                          0.1f,
                          -7.77f};
  const int64_t n = sizeof(values) / sizeof(values[0]);
  const float one = 1.0f;
  using Fn = void (*)(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*,
                      int64_t, float, float*, int64_t);
  std::vector<Fn> fns = {gemm_bf16_ref};
  if (gemm_bf16_fast()) fns.push_back(gemm_bf16);
  for (Fn fn : fns)
    for (bool t : {false, true}) {
      // As A: (n, 1) . (1, 1); stored (n, 1) or (1, n), both contiguous.
      std::vector<float> c(static_cast<size_t>(n), kNaN);
      fn(t, t, n, 1, 1, values, t ? n : 1, &one, 1, 0.0f, c.data(), 1);
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(c[static_cast<size_t>(i)], rounded(values[i]));
      // As B: (1, 1) . (1, n).
      std::vector<float> r(static_cast<size_t>(n), kNaN);
      fn(t, t, 1, n, 1, &one, 1, values, t ? 1 : n, 0.0f, r.data(), n);
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(r[static_cast<size_t>(i)], rounded(values[i]));
    }
  EXPECT_EQ(rounded(1.0f + 0x1p-8f), 1.0f);
  EXPECT_EQ(rounded(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);
}

// K == 0: C = beta * C; beta == 0 overwrites NaN with zeros.
TEST(GemmBf16, EmptyReduction) {
  const float a = 1.0f, b = 1.0f;
  for (auto fn : {gemm_bf16, gemm_bf16_ref}) {
    float c[4] = {kNaN, kNaN, 2.0f, 4.0f};
    fn(false, false, 1, 2, 0, &a, 1, &b, 2, 0.0f, c, 2);
    EXPECT_EQ(c[0], 0.0f);
    EXPECT_EQ(c[1], 0.0f);
    fn(false, false, 1, 2, 0, &a, 1, &b, 2, 0.5f, c + 2, 2);
    EXPECT_EQ(c[2], 1.0f);
    EXPECT_EQ(c[3], 2.0f);
  }
}

// The trainer's use: threads computing disjoint column blocks of one product at once. Each block
// must equal the same columns of a single whole call bit for bit (a column's sum does not depend
// on how the columns are split) and the threads must not disturb each other's packing buffers.
TEST(GemmBf16, ConcurrentColumnBlocksEqualOneCall) {
  const int64_t M = 70, N = 4 * 96, K = 300;
  for (int t = 0; t < 4; ++t) {
    const Problem p(t & 1, t & 2, M, N, K, 0, 1.0f, false, 100 + t);
    const std::vector<float> whole = p.run(gemm_bf16);
    std::vector<float> split = p.c;
    std::vector<std::thread> threads;
    for (int64_t blk = 0; blk < 4; ++blk)
      threads.emplace_back([&, blk] {
        const int64_t n0 = blk * 96;
        const float* b = p.tb ? p.b.data() + n0 * p.ldb : p.b.data() + n0;
        for (int rep = 0; rep < 3; ++rep) {  // repeated: later calls reuse the thread's buffer
          std::vector<float> c(p.c.begin() + 0, p.c.end());
          gemm_bf16(p.ta, p.tb, M, 96, K, p.a.data(), p.lda, b, p.ldb, p.beta, c.data() + n0,
                    p.ldc);
          if (rep == 2)
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = n0; n < n0 + 96; ++n)
                split[static_cast<size_t>(m * p.ldc + n)] = c[static_cast<size_t>(m * p.ldc + n)];
        }
      });
    for (std::thread& th : threads) th.join();
    ASSERT_EQ(split, whole) << p.name();
  }
}

// The CPUID check agrees with the kernel's own report of the CPU (Linux), and the fast kernel is
// used exactly when the CPU has the instruction and the active ISA is an AVX-512 one.
TEST(GemmBf16, DetectsAvx512Bf16) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  bool found = false, listed = false;
  while (!found && std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    found = true;
    std::istringstream words(line);
    for (std::string w; words >> w;) listed = listed || w == "avx512_bf16";
  }
  if (!found) GTEST_SKIP() << "no /proc/cpuinfo flags line";
  EXPECT_EQ(cpu_has_avx512_bf16(), listed && cpu_supports(Isa::Avx512));
  EXPECT_EQ(gemm_bf16_fast(), cpu_has_avx512_bf16() && active_isa_kind() >= Isa::Avx512);
}

}  // namespace
