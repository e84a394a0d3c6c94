// Quant-type kernels: round-trip error per bit width, dots against dequantised dots, hand-built
// blocks that pin the ggml bit layouts, f16/bf16 rounding, bad lengths, and real GGUF tensors
// written by llama.cpp's tools (the strongest evidence the layouts are right).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "common/random_data.h"
#include "common/testdata.h"
#include "core/error.h"
#include "core/half.h"
#include "io/gguf/gguf.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_blocks.h"

using namespace brisk;
using test::gaussian;
using namespace brisk::kernels;

namespace {

constexpr uint16_t kF16One = 0x3C00, kF16Half = 0x3800, kF16Two = 0x4000, kF16MinusOne = 0xBC00;

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                           DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_bytes(t, static_cast<int64_t>(x.size())));
  quant_kernels(t).from_float(x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> dequantize(DType t, const void* q, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  quant_kernels(t).to_float(q, y.data(), n);
  return y;
}

// sqrt(mean((a - b)^2)) / sqrt(mean(b^2)).
double rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

template <class B>
B zeroed() {
  B b;
  std::memset(&b, 0, sizeof(B));
  return b;
}

}  // namespace

// ---- the table ----------------------------------------------------------------------------------

TEST(QuantTable, RowsAndActivationTypesMirrorGgml) {
  for (DType t : kAllTypes) {
    ASSERT_TRUE(has_quant_kernels(t)) << dtype_name(t);
    const QuantKernels& k = quant_kernels(t);
    EXPECT_EQ(k.type, t);
    EXPECT_NE(k.to_float, nullptr);
    EXPECT_NE(k.from_float, nullptr);
    EXPECT_NE(k.vec_dot, nullptr);
  }
  EXPECT_EQ(quant_kernels(DType::F32).vec_dot_type, DType::F32);
  EXPECT_EQ(quant_kernels(DType::F16).vec_dot_type, DType::F16);
  EXPECT_EQ(quant_kernels(DType::BF16).vec_dot_type,
            DType::F32);  // bf16 weights dot f32 activations (quant_float.cpp)
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0})
    EXPECT_EQ(quant_kernels(t).vec_dot_type, DType::Q8_0);
  for (DType t : {DType::Q4_1, DType::Q5_1}) EXPECT_EQ(quant_kernels(t).vec_dot_type, DType::Q8_1);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    EXPECT_EQ(quant_kernels(t).vec_dot_type, DType::Q8_K);
  for (DType t : kAllTypes)
    EXPECT_EQ(kernel_block_size(t), dtype_layout(t).block_size) << dtype_name(t);
  EXPECT_FALSE(has_quant_kernels(DType::I32));
  EXPECT_THROW(quant_kernels(DType::I32), Error);
}

TEST(QuantTable, BlockStructsMatchLayoutTable) {
  EXPECT_EQ(sizeof(BlockQ4_0), dtype_layout(DType::Q4_0).type_size);
  EXPECT_EQ(sizeof(BlockQ4_1), dtype_layout(DType::Q4_1).type_size);
  EXPECT_EQ(sizeof(BlockQ5_0), dtype_layout(DType::Q5_0).type_size);
  EXPECT_EQ(sizeof(BlockQ5_1), dtype_layout(DType::Q5_1).type_size);
  EXPECT_EQ(sizeof(BlockQ8_0), dtype_layout(DType::Q8_0).type_size);
  EXPECT_EQ(sizeof(BlockQ8_1), dtype_layout(DType::Q8_1).type_size);
  EXPECT_EQ(sizeof(BlockQ2_K), dtype_layout(DType::Q2_K).type_size);
  EXPECT_EQ(sizeof(BlockQ3_K), dtype_layout(DType::Q3_K).type_size);
  EXPECT_EQ(sizeof(BlockQ4_K), dtype_layout(DType::Q4_K).type_size);
  EXPECT_EQ(sizeof(BlockQ5_K), dtype_layout(DType::Q5_K).type_size);
  EXPECT_EQ(sizeof(BlockQ6_K), dtype_layout(DType::Q6_K).type_size);
  EXPECT_EQ(sizeof(BlockQ8_K), dtype_layout(DType::Q8_K).type_size);
  EXPECT_EQ(offsetof(BlockQ2_K, d), 80u);
  EXPECT_EQ(offsetof(BlockQ3_K, d), 108u);
  EXPECT_EQ(offsetof(BlockQ5_K, qs), 48u);
  EXPECT_EQ(offsetof(BlockQ6_K, d), 208u);
  EXPECT_EQ(offsetof(BlockQ8_K, bsums), 260u);
}

// ---- round trips and dots ----------------------------------------------------------------------

// Relative RMS error of a Gaussian row through from_float -> to_float. Bounds sit ~20% above
// what the kernels achieve (printed), and well inside what each bit width permits.
TEST(QuantRoundTrip, ErrorWithinBoundForBitWidth) {
  struct Bound {
    DType t;
    double max_rel;
  };
  const Bound bounds[] = {{DType::F32, 0.0},     {DType::F16, 4e-4},    {DType::BF16, 3e-3},
                          {DType::Q8_0, 6e-3},   {DType::Q8_1, 6e-3},   {DType::Q8_K, 8e-3},
                          {DType::Q6_K, 2.0e-2}, {DType::Q5_0, 5e-2},   {DType::Q5_1, 5e-2},
                          {DType::Q5_K, 4.0e-2}, {DType::Q4_0, 1.1e-1}, {DType::Q4_1, 1.0e-1},
                          {DType::Q4_K, 8.5e-2}, {DType::Q3_K, 1.9e-1}, {DType::Q2_K, 3.6e-1}};
  const int64_t n = 16 * 256;
  const std::vector<float> x = gaussian(n, 7);
  for (const Bound& b : bounds) {
    const std::vector<uint8_t> q = quantize(b.t, x);
    const double e = rel_rms(dequantize(b.t, q.data(), n), x);
    std::printf("[quant] %-5s rel rms %.4f\n", dtype_name(b.t), e);
    EXPECT_LE(e, b.max_rel) << dtype_name(b.t);
  }
}

// Rows with an offset and outliers exercise the mins and the scale search on skewed groups.
TEST(QuantRoundTrip, SkewedRowsWithOutliers) {
  const int64_t n = 8 * 256;
  std::vector<float> x = gaussian(n, 11, 0.02f);
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] += (i / 256 % 2) ? 0.05f : -0.01f;
  for (int64_t i = 0; i < n; i += 97) x[static_cast<size_t>(i)] *= 25.0f;
  const double worst[] = {0,    4e-4,   3e-3, 1.5e-2, 1.5e-2, 3e-2,   4.5e-2, 1.3e-1,
                          6e-2, 5.5e-2, 2e-1, 1.4e-1, 1.3e-1, 1.6e-1, 2.2e-1};
  const DType order[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q8_1,
                         DType::Q8_K, DType::Q6_K, DType::Q5_0, DType::Q5_1, DType::Q5_K,
                         DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q3_K, DType::Q2_K};
  for (size_t k = 0; k < std::size(order); ++k) {
    const std::vector<uint8_t> q = quantize(order[k], x);
    const double e = rel_rms(dequantize(order[k], q.data(), n), x);
    std::printf("[quant] skewed %-5s rel rms %.4f\n", dtype_name(order[k]), e);
    EXPECT_LE(e, worst[k]) << dtype_name(order[k]);
  }
}

// ggml's own test-quantize-fns check, with its data (0.1 + 2 cos(i + offset)), its metric
// (sqrt(sum of squared errors) / n) and its thresholds: 0.002 in general, 0.0075 for 2-bit and
// 0.004 for 3-bit types; dots against the second row within 0.02 (0.04 for 2/3-bit) per element.
TEST(QuantRoundTrip, PassesGgmlTestQuantizeFnsThresholds) {
  const int64_t n = 32 * 128;
  std::vector<float> x(static_cast<size_t>(n)), x2(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    x[static_cast<size_t>(i)] = 0.1f + 2.0f * std::cos(static_cast<float>(i));
    x2[static_cast<size_t>(i)] = 0.1f + 2.0f * std::cos(static_cast<float>(i) + 1.0f);
  }
  double exact_dot = 0;
  for (int64_t i = 0; i < n; ++i)
    exact_dot += static_cast<double>(x[static_cast<size_t>(i)]) * x2[static_cast<size_t>(i)];
  for (DType t : kAllTypes) {
    if (!dtype_layout(t).quantized || !dtype_layout(t).storage) continue;
    const bool low_bit = t == DType::Q2_K || t == DType::Q3_K;
    const double max_err = t == DType::Q2_K ? 0.0075 : t == DType::Q3_K ? 0.004 : 0.002;
    const std::vector<uint8_t> q = quantize(t, x);
    const std::vector<float> y = dequantize(t, q.data(), n);
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = static_cast<double>(y[static_cast<size_t>(i)]) - x[static_cast<size_t>(i)];
      ss += e * e;
    }
    EXPECT_LT(std::sqrt(ss) / static_cast<double>(n), max_err) << dtype_name(t);
    const QuantKernels& k = quant_kernels(t);
    const std::vector<uint8_t> a = quantize(k.vec_dot_type, x2);
    const double dot = k.vec_dot(n, q.data(), a.data());
    EXPECT_LT(std::fabs(dot - exact_dot) / static_cast<double>(n), low_bit ? 0.04 : 0.02)
        << dtype_name(t);
  }
}

// vec_dot(w, quantize(a)) equals the f64 dot of the dequantised operands to float rounding (the
// integer sums are exact). Q4_1/Q5_1 use the f16-rounded block sum s of Q8_1, which differs from
// d16 * sum(q) by up to ~2^-11 relative, hence their looser bound.
TEST(QuantVecDot, MatchesDotOfDequantisedOperands) {
  const int64_t n = 8 * 256;
  for (DType t : kAllTypes) {
    const QuantKernels& k = quant_kernels(t);
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      std::vector<float> wv = gaussian(n, 100 + seed), av = gaussian(n, 200 + seed, 3.0f);
      for (float& v : wv) v += 0.3f;  // a non-zero mean exercises mins and Q8_1's s
      const std::vector<uint8_t> wq = quantize(t, wv), aq = quantize(k.vec_dot_type, av);
      const std::vector<float> wd = dequantize(t, wq.data(), n),
                               ad = dequantize(k.vec_dot_type, aq.data(), n);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += static_cast<double>(wd[static_cast<size_t>(i)]) * ad[static_cast<size_t>(i)];
        mag +=
            std::fabs(static_cast<double>(wd[static_cast<size_t>(i)]) * ad[static_cast<size_t>(i)]);
      }
      const double got = k.vec_dot(n, wq.data(), aq.data());
      const bool uses_s = t == DType::Q4_1 || t == DType::Q5_1;
      EXPECT_NEAR(got, ref, (uses_s ? 2e-3 : 1e-5) * mag) << dtype_name(t) << " seed " << seed;
    }
  }
}

// With integer activations in [-127, 127] and 127 in every block, Q8_1 has d = 1 and s = sum(q)
// exactly, so the offset term m * s of Q4_1/Q5_1 dots is exact too and the bound can be tight.
TEST(QuantVecDot, Q4_1AndQ5_1OffsetTermIsExactForIntegerActivations) {
  const int64_t n = 512;
  std::mt19937 rng(77);
  std::uniform_int_distribution<int> q(-20, 20);
  std::vector<float> av(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    av[static_cast<size_t>(i)] = i % 32 == 5 ? 127.0f : static_cast<float>(q(rng));
  std::vector<float> wv = gaussian(n, 78);
  for (float& v : wv) v += 1.5f;
  for (DType t : {DType::Q4_1, DType::Q5_1}) {
    const std::vector<uint8_t> wq = quantize(t, wv), aq = quantize(DType::Q8_1, av);
    const std::vector<float> wd = dequantize(t, wq.data(), n);
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      ref += static_cast<double>(wd[static_cast<size_t>(i)]) * av[static_cast<size_t>(i)];
      mag +=
          std::fabs(static_cast<double>(wd[static_cast<size_t>(i)]) * av[static_cast<size_t>(i)]);
    }
    EXPECT_NEAR(quant_kernels(t).vec_dot(n, wq.data(), aq.data()), ref, 1e-5 * mag)
        << dtype_name(t);
  }
}

// The dot through quantised activations stays close to the exact f32 dot (activation rounding
// is the only extra error beyond the weight's own quantisation).
TEST(QuantVecDot, ActivationQuantisationErrorIsSmall) {
  const int64_t n = 4 * 256;
  const std::vector<float> wv = gaussian(n, 5), av = gaussian(n, 6);
  for (DType t : kAllTypes) {
    const QuantKernels& k = quant_kernels(t);
    const std::vector<uint8_t> wq = quantize(t, wv), aq = quantize(k.vec_dot_type, av);
    const std::vector<float> wd = dequantize(t, wq.data(), n);
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      exact += static_cast<double>(wd[static_cast<size_t>(i)]) * av[static_cast<size_t>(i)];
      mag +=
          std::fabs(static_cast<double>(wd[static_cast<size_t>(i)]) * av[static_cast<size_t>(i)]);
    }
    EXPECT_NEAR(k.vec_dot(n, wq.data(), aq.data()), exact, 5e-3 * mag) << dtype_name(t);
  }
}

TEST(QuantZero, ZeroRowsQuantiseToZeroAndDotToZero) {
  const int64_t n = 2 * 256;
  const std::vector<float> z(static_cast<size_t>(n), 0.0f), a = gaussian(n, 3);
  for (DType t : kAllTypes) {
    const QuantKernels& k = quant_kernels(t);
    const std::vector<uint8_t> q = quantize(t, z);
    for (float v : dequantize(t, q.data(), n)) ASSERT_EQ(v, 0.0f) << dtype_name(t);
    const std::vector<uint8_t> aq = quantize(k.vec_dot_type, a);
    EXPECT_EQ(k.vec_dot(n, q.data(), aq.data()), 0.0f) << dtype_name(t);
    // and zero activations against a non-zero weight
    const std::vector<uint8_t> wq = quantize(t, a), zq = quantize(k.vec_dot_type, z);
    EXPECT_EQ(k.vec_dot(n, wq.data(), zq.data()), 0.0f) << dtype_name(t);
  }
}

TEST(QuantErrors, RowLengthNotAMultipleOfTheBlockSizeIsAnError) {
  std::vector<float> x(300, 1.0f);
  std::vector<uint8_t> buf(4096);
  EXPECT_THROW(quant_kernels(DType::Q4_0).from_float(x.data(), buf.data(), 33), Error);
  EXPECT_THROW(quant_kernels(DType::Q8_0).to_float(buf.data(), x.data(), 48), Error);
  EXPECT_THROW(quant_kernels(DType::Q4_K).vec_dot(100, buf.data(), buf.data()), Error);
  EXPECT_THROW(quant_kernels(DType::Q8_K).from_float(x.data(), buf.data(), 288), Error);
  EXPECT_THROW(quantize_row_weighted(DType::Q6_K, x.data(), buf.data(), 128, nullptr), Error);
  try {
    quant_kernels(DType::Q5_K).to_float(buf.data(), x.data(), 257);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q5_K"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("257"), std::string::npos) << e.what();
  }
  // Plain types take any length, including 0.
  EXPECT_NO_THROW(quant_kernels(DType::F16).from_float(x.data(), buf.data(), 7));
  EXPECT_NO_THROW(quant_kernels(DType::Q4_0).from_float(x.data(), buf.data(), 0));
}

TEST(QuantWeighted, ImportanceShiftsErrorTowardsImportantElements) {
  const int64_t n = 8 * 256;
  const std::vector<float> x = gaussian(n, 21);
  std::vector<float> imp(static_cast<size_t>(n), 1.0f);
  for (int64_t i = 0; i < n; i += 4) imp[static_cast<size_t>(i)] = 100.0f;
  for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                  DType::Q6_K}) {
    std::vector<uint8_t> plain = quantize(t, x), weighted(plain.size());
    quantize_row_weighted(t, x.data(), weighted.data(), n, imp.data());
    auto weighted_err = [&](const std::vector<uint8_t>& q) {
      const std::vector<float> y = dequantize(t, q.data(), n);
      double s = 0;
      for (size_t i = 0; i < y.size(); ++i) s += imp[i] * (y[i] - x[i]) * (y[i] - x[i]);
      return s;
    };
    EXPECT_LT(weighted_err(weighted), weighted_err(plain)) << dtype_name(t);
    std::vector<uint8_t> same(plain.size());
    quantize_row_weighted(t, x.data(), same.data(), n, nullptr);
    EXPECT_EQ(same, plain) << dtype_name(t);
  }
}

// ---- activation quantisers: exactly ggml's reference
// ---------------------------------------------

TEST(QuantActivations, Q8_0AndQ8_1FollowTheReferenceRounding) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(j)] = 0.1f * static_cast<float>(j - 10);
  x[5] = -2.54f;  // amax: d = 0.02 exactly representable? no: d = fp16(2.54 / 127)
  const std::vector<uint8_t> q0 = quantize(DType::Q8_0, x);
  const std::vector<uint8_t> q1 = quantize(DType::Q8_1, x);
  BlockQ8_0 b0;
  BlockQ8_1 b1;
  std::memcpy(&b0, q0.data(), sizeof b0);
  std::memcpy(&b1, q1.data(), sizeof b1);
  const float d = 2.54f / 127.0f, id = 1.0f / d;
  EXPECT_EQ(b0.d, f32_to_f16(d));
  EXPECT_EQ(b1.d, f32_to_f16(d));
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    const int8_t want = static_cast<int8_t>(std::round(x[static_cast<size_t>(j)] * id));
    EXPECT_EQ(b0.qs[j], want) << j;
    EXPECT_EQ(b1.qs[j], want) << j;
    sum += want;
  }
  EXPECT_EQ(b0.qs[5], -127);
  EXPECT_EQ(b1.s, f32_to_f16(static_cast<float>(sum) * d));  // f32 d, not the f16 one
  // amax = 127 makes d = id = 1, so these are exact ties: roundf goes half away from zero
  // (ggml's reference), unlike Q8_K's nearest_int (ties to even).
  std::vector<float> t(32, 0.0f);
  const float ties[] = {127.0f, 0.5f, -0.5f, 2.5f, -2.5f, 126.5f, -126.5f, 1.5f, 0.49999997f};
  const int want_ties[] = {127, 1, -1, 3, -3, 127, -127, 2, 0};
  for (size_t j = 0; j < std::size(ties); ++j) t[j] = ties[j];
  const std::vector<uint8_t> qt = quantize(DType::Q8_0, t);
  BlockQ8_0 bt;
  std::memcpy(&bt, qt.data(), sizeof bt);
  EXPECT_EQ(bt.d, kF16One);
  for (size_t j = 0; j < std::size(ties); ++j) EXPECT_EQ(bt.qs[j], want_ties[j]) << ties[j];
}

TEST(QuantActivations, Q8_KMapsTheSignedMaximumToMinus127) {
  std::vector<float> x = gaussian(256, 9);
  x[37] = 6.0f;  // the largest magnitude, positive: maps to -127, so d < 0
  const std::vector<uint8_t> q = quantize(DType::Q8_K, x);
  BlockQ8_K b;
  std::memcpy(&b, q.data(), sizeof b);
  const float iscale = -127.0f / 6.0f;
  EXPECT_EQ(b.d, 1.0f / iscale);
  EXPECT_EQ(b.qs[37], -127);
  for (int j = 0; j < 256; ++j) {
    const float v = iscale * x[static_cast<size_t>(j)];
    EXPECT_EQ(b.qs[j], std::min(127, static_cast<int>(std::nearbyint(v)))) << j;  // ties to even
  }
  for (int g = 0; g < 16; ++g) {
    int s = 0;
    for (int l = 0; l < 16; ++l) s += b.qs[16 * g + l];
    EXPECT_EQ(b.bsums[g], s) << g;
  }
  EXPECT_EQ(nearest_int(2.5f), 2);
  EXPECT_EQ(nearest_int(3.5f), 4);
  EXPECT_EQ(nearest_int(-2.5f), -2);
  EXPECT_EQ(nearest_int(-126.6f), -127);
}

// ---- hand-built blocks pin the bit layouts
// -------------------------------------------------------

TEST(QuantLayout, Q4_0LowNibblesAreElements0To15) {
  BlockQ4_0 b = zeroed<BlockQ4_0>();
  b.d = kF16Two;
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = dequantize(DType::Q4_0, &b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[static_cast<size_t>(j)], 2.0f * static_cast<float>(j - 8)) << j;
    EXPECT_EQ(y[static_cast<size_t>(j + 16)], 2.0f * static_cast<float>(7 - j)) << j;
  }
  // and the quantiser writes that order back: the max magnitude (-16) becomes code 0 with d = 2
  std::vector<uint8_t> q = quantize(DType::Q4_0, y);
  EXPECT_EQ(std::memcmp(q.data(), &b, sizeof b), 0);
}

TEST(QuantLayout, Q4_1ScaleAndMin) {
  BlockQ4_1 b = zeroed<BlockQ4_1>();
  b.d = kF16Half;
  b.m = kF16MinusOne;
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = dequantize(DType::Q4_1, &b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[static_cast<size_t>(j)], 0.5f * static_cast<float>(j) - 1.0f);
    EXPECT_EQ(y[static_cast<size_t>(j + 16)], 0.5f * static_cast<float>(15 - j) - 1.0f);
  }
  std::vector<uint8_t> q = quantize(DType::Q4_1, y);
  EXPECT_EQ(std::memcmp(q.data(), &b, sizeof b), 0);
}

TEST(QuantLayout, Q5_0AndQ5_1FifthBitsAreLittleEndianQh) {
  BlockQ5_0 b = zeroed<BlockQ5_0>();
  b.d = kF16One;
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const uint32_t qh = 0x80010003u;  // elements 0, 1, 16 and 31 have the fifth bit
  std::memcpy(b.qh, &qh, 4);        // little-endian host, as the file format
  const uint8_t want_bytes[4] = {0x03, 0x00, 0x01, 0x80};
  EXPECT_EQ(std::memcmp(b.qh, want_bytes, 4), 0);
  const std::vector<float> y = dequantize(DType::Q5_0, &b, 32);
  for (int j = 0; j < 32; ++j) {
    const int nib = j < 16 ? j : 15 - (j - 16);
    const int code = nib | (((qh >> j) & 1) << 4);
    EXPECT_EQ(y[static_cast<size_t>(j)], static_cast<float>(code - 16)) << j;
  }
  BlockQ5_1 c = zeroed<BlockQ5_1>();
  c.d = kF16Two;
  c.m = kF16MinusOne;
  std::memcpy(c.qs, b.qs, 16);
  std::memcpy(c.qh, b.qh, 4);
  const std::vector<float> z = dequantize(DType::Q5_1, &c, 32);
  for (int j = 0; j < 32; ++j)
    EXPECT_EQ(z[static_cast<size_t>(j)], 2.0f * (y[static_cast<size_t>(j)] + 16.0f) - 1.0f) << j;
}

TEST(QuantLayout, Q8_0IsScaleThenSignedBytes) {
  uint8_t raw[34];
  raw[0] = 0x00;
  raw[1] = 0x38;  // d = 0.5, little-endian f16
  for (int j = 0; j < 32; ++j) raw[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j * 8 - 128));
  const std::vector<float> y = dequantize(DType::Q8_0, raw, 32);
  for (int j = 0; j < 32; ++j)
    EXPECT_EQ(y[static_cast<size_t>(j)], 0.5f * static_cast<float>(j * 8 - 128));
}

TEST(QuantLayout, Q2_KScaleNibblesAndCrumbOrder) {
  BlockQ2_K b = zeroed<BlockQ2_K>();
  b.d = kF16One;
  b.dmin = kF16Half;
  auto lo = [](int g) { return (g * 7 + 1) % 16; };
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(lo(j) | ((15 - j) << 4));
  // element e: code (e * 7 + e / 64) % 4, stored in qs[32 * (e / 128) + e % 32] at bits 2 * ((e /
  // 32) % 4)
  auto code = [](int e) { return (e * 7 + e / 64) % 4; };
  for (int e = 0; e < 256; ++e)
    b.qs[32 * (e / 128) + e % 32] =
        static_cast<uint8_t>(b.qs[32 * (e / 128) + e % 32] | (code(e) << (2 * ((e / 32) % 4))));
  const std::vector<float> y = dequantize(DType::Q2_K, &b, 256);
  for (int e = 0; e < 256; ++e) {
    const int g = e / 16;
    EXPECT_EQ(y[static_cast<size_t>(e)],
              static_cast<float>(lo(g) * code(e)) - 0.5f * static_cast<float>(15 - g))
        << e;
  }
}

TEST(QuantLayout, Q3_KHmaskAndSignedScales) {
  BlockQ3_K b = zeroed<BlockQ3_K>();
  b.d = kF16Half;
  int8_t sc[16];
  for (int i = 0; i < 16; ++i) sc[i] = static_cast<int8_t>(4 * i - 32);  // -32 .. 28
  // scale i (biased v = sc + 32): low 4 bits in byte i (i < 8) or the high nibble of byte i - 8,
  // top 2 bits in byte 8 + i % 4 at bit 2 * (i / 4)
  for (int i = 0; i < 16; ++i) {
    const int v = sc[i] + 32;
    if (i < 8)
      b.scales[i] = static_cast<uint8_t>(b.scales[i] | (v & 15));
    else
      b.scales[i - 8] = static_cast<uint8_t>(b.scales[i - 8] | ((v & 15) << 4));
    b.scales[8 + i % 4] = static_cast<uint8_t>(b.scales[8 + i % 4] | ((v >> 4) << (2 * (i / 4))));
  }
  auto low2 = [](int e) { return (e * 5 + 1) % 4; };
  auto high = [](int e) { return (e % 3) == 0; };
  for (int e = 0; e < 256; ++e) {
    b.qs[32 * (e / 128) + e % 32] =
        static_cast<uint8_t>(b.qs[32 * (e / 128) + e % 32] | (low2(e) << (2 * ((e / 32) % 4))));
    if (high(e)) b.hmask[e % 32] = static_cast<uint8_t>(b.hmask[e % 32] | (1 << (e / 32)));
  }
  const std::vector<float> y = dequantize(DType::Q3_K, &b, 256);
  for (int e = 0; e < 256; ++e) {
    const int q = low2(e) - (high(e) ? 0 : 4);  // a clear high bit subtracts 4
    EXPECT_EQ(y[static_cast<size_t>(e)], 0.5f * static_cast<float>(sc[e / 16] * q)) << e;
  }
  int8_t back[16];
  unpack_scales_q3_k(b.scales, back);
  uint8_t repacked[12];
  pack_scales_q3_k(back, repacked);
  EXPECT_EQ(std::memcmp(repacked, b.scales, 12), 0);
}

namespace {
// The 12-byte Q4_K/Q5_K scale packing, written out from the format description.
void pack_k4_by_hand(const int sc[8], const int mn[8], uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}
}  // namespace

TEST(QuantLayout, Q4_KSixBitScalesAndNibbleOrder) {
  const int sc[8] = {1, 2, 3, 63, 40, 50, 17, 63};
  const int mn[8] = {5, 0, 62, 8, 33, 17, 63, 1};
  BlockQ4_K b = zeroed<BlockQ4_K>();
  b.d = kF16One;
  b.dmin = kF16Half;
  pack_k4_by_hand(sc, mn, b.scales);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    get_scale_min_k4(j, b.scales, s, m);
    EXPECT_EQ(s, sc[j]) << j;
    EXPECT_EQ(m, mn[j]) << j;
  }
  auto code = [](int e) { return (e * 3 + e / 32) % 16; };
  for (int e = 0; e < 256; ++e) {
    const int p = e / 64, l = e % 32, hi = (e % 64) >= 32;
    b.qs[32 * p + l] = static_cast<uint8_t>(b.qs[32 * p + l] | (code(e) << (hi ? 4 : 0)));
  }
  const std::vector<float> y = dequantize(DType::Q4_K, &b, 256);
  for (int e = 0; e < 256; ++e)
    EXPECT_EQ(y[static_cast<size_t>(e)],
              static_cast<float>(sc[e / 32] * code(e)) - 0.5f * static_cast<float>(mn[e / 32]))
        << e;
  uint8_t sc8[8], mn8[8], repacked[12];
  for (int j = 0; j < 8; ++j) {
    sc8[j] = static_cast<uint8_t>(sc[j]);
    mn8[j] = static_cast<uint8_t>(mn[j]);
  }
  pack_scale_min_k4(sc8, mn8, repacked);
  EXPECT_EQ(std::memcmp(repacked, b.scales, 12), 0);
}

TEST(QuantLayout, Q5_KHighBitsInterleaveByPairs) {
  const int sc[8] = {1, 1, 1, 1, 1, 1, 1, 1}, mn[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  BlockQ5_K b = zeroed<BlockQ5_K>();
  b.d = kF16One;
  pack_k4_by_hand(sc, mn, b.scales);
  auto code = [](int e) { return (e * 11 + 3) % 32; };
  for (int e = 0; e < 256; ++e) {
    const int p = e / 64, l = e % 32, hi = (e % 64) >= 32;
    b.qs[32 * p + l] = static_cast<uint8_t>(b.qs[32 * p + l] | ((code(e) & 15) << (hi ? 4 : 0)));
    b.qh[l] = static_cast<uint8_t>(b.qh[l] | ((code(e) >> 4) << (2 * p + hi)));
  }
  const std::vector<float> y = dequantize(DType::Q5_K, &b, 256);
  for (int e = 0; e < 256; ++e)
    EXPECT_EQ(y[static_cast<size_t>(e)], static_cast<float>(code(e))) << e;
}

TEST(QuantLayout, Q6_KQlQhOrder) {
  BlockQ6_K b = zeroed<BlockQ6_K>();
  b.d = kF16Half;
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(j % 2 ? -(j + 1) : j + 1);
  auto code = [](int e) { return (e * 13 + e / 128) % 64; };
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, r = e % 128, l = r % 32, quarter = r / 32;  // quarter k in 0..3
    uint8_t* ql = b.ql + 64 * h;
    uint8_t* qh = b.qh + 32 * h;
    // quarters 0 and 2 share ql[l] (low / high nibble), quarters 1 and 3 share ql[l + 32]
    const int ql_index = l + (quarter % 2 ? 32 : 0);
    const int nib_shift = quarter >= 2 ? 4 : 0;
    ql[ql_index] = static_cast<uint8_t>(ql[ql_index] | ((code(e) & 15) << nib_shift));
    qh[l] = static_cast<uint8_t>(qh[l] | ((code(e) >> 4) << (2 * quarter)));
  }
  const std::vector<float> y = dequantize(DType::Q6_K, &b, 256);
  for (int e = 0; e < 256; ++e)
    EXPECT_EQ(y[static_cast<size_t>(e)],
              0.5f * static_cast<float>(b.scales[e / 16] * (code(e) - 32)))
        << e;
}

// ---- f16 / bf16
// ----------------------------------------------------------------------------------

TEST(QuantHalf, F16RoundsToNearestEvenWithSpecials) {
  auto h = [](float f) {
    uint16_t o;
    quant_kernels(DType::F16).from_float(&f, &o, 1);
    return o;
  };
  EXPECT_EQ(h(1.0f), 0x3C00);
  EXPECT_EQ(h(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even
  EXPECT_EQ(h(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(h(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
  EXPECT_EQ(h(-0.0f), 0x8000);
  EXPECT_EQ(h(65504.0f), 0x7BFF);
  EXPECT_EQ(h(65519.0f), 0x7BFF);
  EXPECT_EQ(h(65520.0f), 0x7C00);  // rounds past the largest finite value
  EXPECT_EQ(h(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(h(-std::numeric_limits<float>::infinity()), 0xFC00);
  const uint16_t nan = h(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_EQ(h(std::ldexp(1.0f, -14)), 0x0400);      // smallest normal
  EXPECT_EQ(h(std::ldexp(1.0f, -24)), 0x0001);      // smallest subnormal
  EXPECT_EQ(h(std::ldexp(1.0f, -25)), 0x0000);      // tie -> even (zero)
  EXPECT_EQ(h(3 * std::ldexp(1.0f, -25)), 0x0002);  // tie -> even (two)
  EXPECT_EQ(h(std::ldexp(1.0f, -26)), 0x0000);
  uint16_t all[3] = {0x0001, 0x7BFF, 0xFC00};
  float back[3];
  quant_kernels(DType::F16).to_float(all, back, 3);
  EXPECT_EQ(back[0], std::ldexp(1.0f, -24));
  EXPECT_EQ(back[1], 65504.0f);
  EXPECT_EQ(back[2], -std::numeric_limits<float>::infinity());
}

TEST(QuantHalf, BranchFreeF16DecodeMatchesCoreForAllBitPatterns) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> got(65536);
  quant_kernels(DType::F16).to_float(all.data(), got.data(), 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    const float want = f16_to_f32(static_cast<uint16_t>(i));
    if (std::isnan(want))
      ASSERT_TRUE(std::isnan(got[i])) << std::hex << i;
    else
      ASSERT_EQ(f32_to_bits(got[i]), f32_to_bits(want)) << std::hex << i;
  }
}

TEST(QuantHalf, Bf16RoundsToNearestEvenWithSpecials) {
  auto h = [](float f) {
    uint16_t o;
    quant_kernels(DType::BF16).from_float(&f, &o, 1);
    return o;
  };
  EXPECT_EQ(h(1.0f), 0x3F80);
  EXPECT_EQ(h(1.0f + std::ldexp(1.0f, -8)), 0x3F80);      // tie -> even
  EXPECT_EQ(h(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(h(-2.0f), 0xC000);
  EXPECT_EQ(h(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(h(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf, as ggml does
  const uint16_t nan = h(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7F80, 0x7F80);
  EXPECT_NE(nan & 0x007F, 0);
  const uint16_t raw[2] = {0x4049, 0x8001};
  float back[2];
  quant_kernels(DType::BF16).to_float(raw, back, 2);
  EXPECT_EQ(back[0], 3.140625f);
  EXPECT_EQ(back[1], -bits_to_f32(0x00010000u));
}

TEST(QuantHalf, F16DotUsesActivationsRoundedToF16) {
  const int64_t n = 1000;
  const std::vector<float> w = gaussian(n, 31), a = gaussian(n, 32);
  const std::vector<uint8_t> wq = quantize(DType::F16, w), aq = quantize(DType::F16, a);
  const std::vector<float> wd = dequantize(DType::F16, wq.data(), n),
                           ad = dequantize(DType::F16, aq.data(), n);
  double ref = 0;
  for (int64_t i = 0; i < n; ++i)
    ref += static_cast<double>(wd[static_cast<size_t>(i)]) * ad[static_cast<size_t>(i)];
  EXPECT_NEAR(quant_kernels(DType::F16).vec_dot(n, wq.data(), aq.data()), ref, 1e-4);
  double ref32 = 0;
  for (int64_t i = 0; i < n; ++i)
    ref32 += static_cast<double>(w[static_cast<size_t>(i)]) * a[static_cast<size_t>(i)];
  EXPECT_NEAR(quant_kernels(DType::F32).vec_dot(n, w.data(), a.data()), ref32, 1e-4);
}

// ---- real GGUF tensors written by llama.cpp
// ------------------------------------------------------

namespace {
std::vector<float> dequant_tensor(const gguf::TensorInfo& t) {
  std::vector<float> y(static_cast<size_t>(t.n_elements()));
  quant_kernels(t.type).to_float(t.data, y.data(), t.n_elements());
  return y;
}
}  // namespace

// The same weights in f16, Q8_0, Q6_K, Q4_K_M and Q4_0 files must dequantise to the same values
// within each type's quantisation error. A wrong nibble order, scale packing or sign flips the
// error to O(1), so this is the check that our layouts are the files' layouts.
TEST(QuantGguf, SameWeightsAgreeAcrossFileTypes) {
  const std::string dir = test::testdata("models/");
  if (!std::filesystem::exists(dir + "tiny-llama-f16.gguf"))
    GTEST_SKIP() << "no test data at " << dir;
  const gguf::GgufFile f16 = gguf::GgufFile::open(dir + "tiny-llama-f16.gguf");
  struct Other {
    const char* file;
    double max_rel;  // per tensor, against the f16 weights
  };
  const Other others[] = {{"tiny-llama-Q8_0.gguf", 0.01},
                          {"tiny-llama-Q6_K.gguf", 0.03},
                          {"tiny-llama-Q4_K_M.gguf", 0.10},
                          {"tiny-llama-Q4_0.gguf", 0.12}};
  for (const Other& o : others) {
    const gguf::GgufFile g = gguf::GgufFile::open(dir + o.file);
    int compared = 0;
    double worst = 0;
    for (const gguf::TensorInfo& t : g.tensors()) {
      if (t.shape.size() != 2) continue;
      const gguf::TensorInfo* ref = f16.find_tensor(t.name);
      ASSERT_NE(ref, nullptr) << t.name;
      ASSERT_EQ(ref->shape, t.shape) << t.name;
      const double e = rel_rms(dequant_tensor(t), dequant_tensor(*ref));
      EXPECT_LE(e, o.max_rel) << o.file << " " << t.name << " (" << dtype_name(t.type) << ")";
      worst = std::max(worst, e);
      ++compared;
    }
    std::printf("[quant] %s: %d tensors, worst rel rms vs f16 %.4f\n", o.file, compared, worst);
    EXPECT_GT(compared, 20) << o.file;
  }
}

// Q8_0 and Q4_0 have one deterministic reference quantiser; re-quantising the f16 weights must
// reproduce llama.cpp's bytes exactly. For the k-quants the scale search is ours, so we ask for
// quality at least about as good as the one that wrote the file (per type, summed squared error).
TEST(QuantGguf, RequantisingF16WeightsMatchesLlamaCpp) {
  const std::string dir = test::testdata("models/");
  if (!std::filesystem::exists(dir + "tiny-llama-f16.gguf"))
    GTEST_SKIP() << "no test data at " << dir;
  const gguf::GgufFile f16 = gguf::GgufFile::open(dir + "tiny-llama-f16.gguf");
  struct Stats {
    size_t same = 0, total = 0;
    double err_ours = 0, err_theirs = 0;  // sum over elements of squared error
  };
  std::map<DType, Stats> by_type;
  for (const char* file : {"tiny-llama-Q8_0.gguf", "tiny-llama-Q4_0.gguf", "tiny-llama-Q6_K.gguf",
                           "tiny-llama-Q4_K_M.gguf"}) {
    const gguf::GgufFile g = gguf::GgufFile::open(dir + file);
    for (const gguf::TensorInfo& t : g.tensors()) {
      if (t.shape.size() != 2) continue;
      const std::vector<float> x = dequant_tensor(*f16.find_tensor(t.name));
      const std::vector<uint8_t> ours = quantize(t.type, x);
      ASSERT_EQ(ours.size(), t.nbytes) << t.name;
      Stats& s = by_type[t.type];
      for (size_t i = 0; i < ours.size(); ++i) s.same += ours[i] == t.data[i];
      s.total += ours.size();
      const std::vector<float> yt = dequant_tensor(t),
                               yo = dequantize(t.type, ours.data(), t.n_elements());
      for (size_t i = 0; i < x.size(); ++i) {
        s.err_theirs += (static_cast<double>(yt[i]) - x[i]) * (static_cast<double>(yt[i]) - x[i]);
        s.err_ours += (static_cast<double>(yo[i]) - x[i]) * (static_cast<double>(yo[i]) - x[i]);
      }
    }
  }
  for (const auto& [type, s] : by_type) {
    const double frac = static_cast<double>(s.same) / static_cast<double>(s.total);
    std::printf("[quant] %-5s %.4f of bytes identical to llama.cpp's; rms err ours/theirs %.4f\n",
                dtype_name(type), frac, std::sqrt(s.err_ours / s.err_theirs));
    if (type == DType::Q8_0 || type == DType::Q4_0)
      EXPECT_EQ(s.same, s.total) << dtype_name(type);
    else
      EXPECT_LE(s.err_ours, 1.05 * 1.05 * s.err_theirs) << dtype_name(type);
  }
  EXPECT_EQ(by_type.size(), 4u);
}
