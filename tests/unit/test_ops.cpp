#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>

#include "core/half.h"
#include "core/thread_pool.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "ops/rope.h"

using namespace brisk;

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 7}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 100, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (int rep = 0; rep < 3; ++rep)
        pool.parallel_for(n, [&](int64_t b, int64_t e, int tid) {
          EXPECT_LT(tid, threads);
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        });
      for (auto& h : hits) EXPECT_EQ(h.load(), 3);
    }
  }
}

// Chunks are whole multiples of the grain but for the one that ends at n, and cover [0, n) once.
TEST(ThreadPool, ChunksAreMultiplesOfTheGrain) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t grain : {1, 2, 4, 7})
      for (int64_t n : {1, 5, 64, 1000, 1003}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> bad{0};
        pool.parallel_for(
            n,
            [&](int64_t b, int64_t e, int) {
              if (e != n && (e - b) % grain != 0) bad++;
              for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
            },
            grain);
        EXPECT_EQ(bad.load(), 0) << "grain " << grain << " n " << n;
        for (auto& h : hits) ASSERT_EQ(h.load(), 1);
      }
  }
}

TEST(Half, RoundTripsAndRounds) {
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f)), 1.0f);
  EXPECT_EQ(f16_to_f32(f32_to_f16(-2.5f)), -2.5f);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);           // overflow -> inf
  EXPECT_EQ(f32_to_f16(5.9604645e-8f), 0x0001);  // smallest subnormal
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  // tie -> even
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
  // Every half value survives half -> float -> half.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN payloads
    ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h);
  }
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(3.0f)), 3.0f);
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  // tie -> even
}

TEST(Rope, PositionZeroIsIdentityAndNormIsKept) {
  ops::RopeConfig c;
  c.n_dims = 8;
  c.head_dim = 8;
  std::vector<float> cs(4), sn(4), x = {1, 2, 3, 4, 5, 6, 7, 8}, y = x;
  ops::rope_angles(c, 0, cs.data(), sn.data());
  ops::rope_apply(c, cs.data(), sn.data(), y.data(), 1);
  EXPECT_EQ(x, y);
  ops::rope_angles(c, 17, cs.data(), sn.data());
  ops::rope_apply(c, cs.data(), sn.data(), y.data(), 1);
  double n0 = 0, n1 = 0;
  for (int i = 0; i < 8; ++i) n0 += x[i] * x[i], n1 += y[i] * y[i];
  EXPECT_NEAR(n0, n1, 1e-4);
}

// Adjacent and NeoX layouts are the same rotation up to a permutation of the head's dimensions:
// the permutation GGUF converters apply to llama Q/K rows.
TEST(Rope, NeoxEqualsAdjacentUnderPermutation) {
  const int d = 16;
  ops::RopeConfig a, n;
  a.n_dims = n.n_dims = d;
  a.head_dim = n.head_dim = d;
  n.layout = ops::RopeLayout::NeoX;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(d), xa(d), cs(d / 2), sn(d / 2);
  for (auto& v : x) v = nd(rng);
  for (int i = 0; i < d / 2; ++i) xa[2 * i] = x[i], xa[2 * i + 1] = x[i + d / 2];
  ops::rope_angles(a, 5, cs.data(), sn.data());
  ops::rope_apply(n, cs.data(), sn.data(), x.data(), 1);
  ops::rope_apply(a, cs.data(), sn.data(), xa.data(), 1);
  for (int i = 0; i < d / 2; ++i) {
    EXPECT_FLOAT_EQ(xa[2 * i], x[i]);
    EXPECT_FLOAT_EQ(xa[2 * i + 1], x[i + d / 2]);
  }
}

TEST(Rope, LinearScalingDividesPositions) {
  ops::RopeConfig a, b;
  a.n_dims = b.n_dims = a.head_dim = b.head_dim = 8;
  b.freq_scale = 0.25f;
  std::vector<float> ca(4), sa(4), cb(4), sb(4);
  ops::rope_angles(a, 3, ca.data(), sa.data());
  ops::rope_angles(b, 12, cb.data(), sb.data());
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(ca[i], cb[i], 1e-5);
    EXPECT_NEAR(sa[i], sb[i], 1e-5);
  }
}

TEST(Rope, Llama3FactorsKeepHighFrequencies) {
  auto f = ops::llama3_freq_factors(64, 500000.0f, 32.0f, 1.0f, 4.0f, 8192);
  ASSERT_EQ(f.size(), 32u);
  EXPECT_FLOAT_EQ(f.front(), 1.0f);  // shortest wavelength untouched
  EXPECT_FLOAT_EQ(f.back(), 32.0f);  // longest slowed by the factor
  for (size_t i = 1; i < f.size(); ++i) EXPECT_GE(f[i], f[i - 1]);
}

TEST(Attention, MatchesNaiveSoftmaxWithGqaAndWindow) {
  const int T = 5, H = 4, HKV = 2, D = 8;
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<float> q(T * H * D), k(T * HKV * D), v(T * HKV * D), out(T * H * D), scratch;
  for (auto* vec : {&q, &k, &v})
    for (auto& x : *vec) x = nd(rng);
  for (int window : {0, 2}) {
    ops::AttentionShape s{H, HKV, D, window, 1.0f / std::sqrt(float(D))};
    ThreadPool pool(2);
    ops::attention(q.data(), T, 0, ops::contiguous_kv(k.data(), T, HKV * D),
                   ops::contiguous_kv(v.data(), T, HKV * D), s, out.data(), scratch, pool);
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        const int hk = h / (H / HKV);
        std::vector<double> w;
        double mx = -1e30;
        const int j0 = window ? std::max(0, t - window + 1) : 0;
        for (int j = j0; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < D; ++i) d += q[(t * H + h) * D + i] * k[(j * HKV + hk) * D + i];
          w.push_back(d * s.scale);
          mx = std::max(mx, w.back());
        }
        double sum = 0;
        for (auto& x : w) sum += (x = std::exp(x - mx));
        for (int i = 0; i < D; ++i) {
          double o = 0;
          for (int j = j0; j <= t; ++j) o += w[j - j0] / sum * v[(j * HKV + hk) * D + i];
          EXPECT_NEAR(out[(t * H + h) * D + i], o, 1e-5);
        }
      }
  }
}

TEST(RmsNorm, MatchesDefinition) {
  std::vector<float> x = {1, -2, 3, -4}, w = {1, 2, 0.5f, 1}, o(4);
  ops::rms_norm(x.data(), w.data(), 1, 4, 1e-5f, o.data());
  const float r = 1.0f / std::sqrt((1 + 4 + 9 + 16) / 4.0f + 1e-5f);
  EXPECT_NEAR(o[1], -2 * r * 2, 1e-6);
  EXPECT_NEAR(o[2], 3 * r * 0.5f, 1e-6);
}

// YaRN: pairs that rotate many times within the original context (high frequency, below the
// correction range) keep their unscaled angle; pairs that rotate less than once (low frequency,
// above it) are interpolated by freq_scale; every cos/sin is scaled by 1 + 0.1 ln(factor).
TEST(Rope, YarnExtrapolatesHighAndInterpolatesLowFrequencies) {
  ops::RopeConfig plain, yarn;
  plain.n_dims = yarn.n_dims = plain.head_dim = yarn.head_dim = 64;
  yarn.freq_scale = 0.25f;
  yarn.ext_factor = 1.0f;
  yarn.n_ctx_orig = 4096;
  const float mscale = 1.0f + 0.1f * std::log(4.0f);
  const int64_t pos = 1000;
  std::vector<float> cp(32), sp(32), cy(32), sy(32), ci(32), si(32);
  ops::rope_angles(plain, pos, cp.data(), sp.data());
  ops::rope_angles(yarn, pos, cy.data(), sy.data());
  ops::RopeConfig interp = plain;
  interp.freq_scale = 0.25f;
  ops::rope_angles(interp, pos, ci.data(), si.data());
  // pair 0: highest frequency -> extrapolated (plain angle), magnitude-scaled
  EXPECT_NEAR(cy[0], cp[0] * mscale, 1e-4);
  EXPECT_NEAR(sy[0], sp[0] * mscale, 1e-4);
  // last pair: lowest frequency -> interpolated (position / factor), magnitude-scaled
  EXPECT_NEAR(cy[31], ci[31] * mscale, 1e-4);
  EXPECT_NEAR(sy[31], si[31] * mscale, 1e-4);
}
