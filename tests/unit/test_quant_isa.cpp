// ISA variants of the quant kernels against the scalar reference: every compiled variant this CPU
// supports must give the scalar dot up to float summation order, and the activation quantisers
// must write byte-identical blocks. Variants the CPU lacks are skipped. Also checks the dispatch
// itself (BRISK_ISA, quant_kernels == quant_kernels_for(active)).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_blocks.h"

using namespace brisk;
using test::gaussian;
using namespace brisk::kernels;

namespace {

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                           DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};

const Isa kVectorIsas[] = {Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Avx512Vnni};

const QuantKernels& scalar(DType t) {
  return *quant_kernels_for(t, Isa::Scalar);
}

std::vector<uint8_t> quantize_scalar(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_bytes(t, static_cast<int64_t>(x.size())));
  scalar(t).from_float(x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

// Row lengths: single blocks, odd and even block counts, and model-sized rows.
std::vector<int64_t> lengths_for(DType t) {
  const int64_t bs = dtype_layout(t).block_size;
  if (bs == 1) return {1, 7, 16, 31, 32, 33, 100, 4096, 4099};
  return {bs, 2 * bs, 3 * bs, 5 * bs, 4096 / bs * bs, 11008 / bs * bs, 4096 + bs};
}

class QuantIsaVariant : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!cpu_supports(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported here";
  }
};

// Sum of |w_i a_i| over the dequantised operands: the scale of the rounding differences that
// reordering the float additions can make.
double abs_dot(DType t, const QuantKernels& k, const void* w, const void* a, int64_t n) {
  std::vector<float> wf(static_cast<size_t>(n)), af(static_cast<size_t>(n));
  k.to_float(w, wf.data(), n);
  scalar(k.vec_dot_type).to_float(a, af.data(), n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(wf[i]) * af[i]);
  return s;
}

TEST_P(QuantIsaVariant, VecDotMatchesScalarUpToSummationOrder) {
  const Isa isa = GetParam();
  std::mt19937 rng(1234);
  double worst = 0;
  for (DType t : kAllTypes) {
    const QuantKernels* k = quant_kernels_for(t, isa);
    ASSERT_NE(k, nullptr) << dtype_layout(t).name;
    const QuantKernels& ref = scalar(t);
    ASSERT_EQ(k->vec_dot_type, ref.vec_dot_type);
    for (int64_t n : lengths_for(t)) {
      for (float scale : {1.0f, 1e-3f, 30.0f}) {
        std::vector<float> wf = gaussian(n, rng, scale), af = gaussian(n, rng, 1.0f);
        wf[static_cast<size_t>(n) / 3] *= 8;  // an outlier, so scales vary between blocks
        const std::vector<uint8_t> w = quantize_scalar(t, wf);
        const std::vector<uint8_t> a = quantize_scalar(ref.vec_dot_type, af);
        const float want = ref.vec_dot(n, w.data(), a.data());
        const float got = k->vec_dot(n, w.data(), a.data());
        const double bound = abs_dot(t, ref, w.data(), a.data(), n);
        const double err = std::fabs(static_cast<double>(got) - want);
        ASSERT_LE(err, 1e-5 * bound + 1e-30)
            << isa_name(isa) << " " << dtype_layout(t).name << " n=" << n << " scale=" << scale
            << " want " << want << " got " << got;
        if (bound > 0) worst = std::max(worst, err / bound);
      }
    }
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", worst);
  RecordProperty("worst_rel_err", buf);
}

// Block i of a row of B, read and written through a copy (the row is a byte vector).
template <class B, class F>
void edit_blocks(std::vector<uint8_t>& row, F f) {
  for (size_t off = 0; off + sizeof(B) <= row.size(); off += sizeof(B)) {
    B b;
    std::memcpy(&b, row.data() + off, sizeof(B));
    f(b);
    std::memcpy(row.data() + off, &b, sizeof(B));
  }
}

// A weight row of block type t with random bytes in every field: all codes, sub-block scales and
// mins the format can hold, not only those the quantisers produce (e.g. Q3_K scale -32, Q6_K
// scale -128, Q2_K scale and min 15 next to 0). The f16/f32 block scales are set to finite random
// values of either sign, and int8 codes of -128 to -127 (the kernels rely on no quantiser
// producing -128; see quant_avx2.cpp).
std::vector<uint8_t> random_weight_blocks(DType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> row(row_bytes(t, n));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& v : row) v = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto h = [&] { return f32_to_f16(u(rng)); };
  auto no_min_code = [](int8_t* q, int k) {
    for (int j = 0; j < k; ++j) q[j] = std::max<int8_t>(q[j], -127);
  };
  switch (t) {
    case DType::Q4_0:
      edit_blocks<BlockQ4_0>(row, [&](BlockQ4_0& b) { b.d = h(); });
      break;
    case DType::Q4_1:
      edit_blocks<BlockQ4_1>(row, [&](BlockQ4_1& b) { b.d = h(), b.m = h(); });
      break;
    case DType::Q5_0:
      edit_blocks<BlockQ5_0>(row, [&](BlockQ5_0& b) { b.d = h(); });
      break;
    case DType::Q5_1:
      edit_blocks<BlockQ5_1>(row, [&](BlockQ5_1& b) { b.d = h(), b.m = h(); });
      break;
    case DType::Q8_0:
      edit_blocks<BlockQ8_0>(row, [&](BlockQ8_0& b) { b.d = h(), no_min_code(b.qs, kQK); });
      break;
    case DType::Q8_1:
      edit_blocks<BlockQ8_1>(row,
                             [&](BlockQ8_1& b) { b.d = h(), b.s = h(), no_min_code(b.qs, kQK); });
      break;
    case DType::Q2_K:
      edit_blocks<BlockQ2_K>(row, [&](BlockQ2_K& b) { b.d = h(), b.dmin = h(); });
      break;
    case DType::Q3_K:
      edit_blocks<BlockQ3_K>(row, [&](BlockQ3_K& b) { b.d = h(); });
      break;
    case DType::Q4_K:
      edit_blocks<BlockQ4_K>(row, [&](BlockQ4_K& b) { b.d = h(), b.dmin = h(); });
      break;
    case DType::Q5_K:
      edit_blocks<BlockQ5_K>(row, [&](BlockQ5_K& b) { b.d = h(), b.dmin = h(); });
      break;
    case DType::Q6_K:
      edit_blocks<BlockQ6_K>(row, [&](BlockQ6_K& b) { b.d = h(); });
      break;
    case DType::Q8_K:
      edit_blocks<BlockQ8_K>(row, [&](BlockQ8_K& b) { b.d = u(rng), no_min_code(b.qs, kQK_K); });
      break;
    default:
      ADD_FAILURE() << "no random blocks for " << dtype_layout(t).name;
  }
  return row;
}

// An activation row of type t (Q8_0, Q8_1 or Q8_K) with random codes in [-127, 127], random
// scales, and the sums (Q8_1's s, Q8_K's bsums) consistent with the codes, as the kernels assume.
std::vector<uint8_t> random_activation_blocks(DType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> row(row_bytes(t, n));
  std::uniform_int_distribution<int> code(-127, 127);
  std::uniform_real_distribution<float> u(1e-3f, 1.0f);
  switch (t) {
    case DType::Q8_0:
      edit_blocks<BlockQ8_0>(row, [&](BlockQ8_0& b) {
        b.d = f32_to_f16(u(rng));
        for (int8_t& q : b.qs) q = static_cast<int8_t>(code(rng));
      });
      break;
    case DType::Q8_1:
      edit_blocks<BlockQ8_1>(row, [&](BlockQ8_1& b) {
        b.d = f32_to_f16(u(rng));
        int sum = 0;
        for (int8_t& q : b.qs) sum += q = static_cast<int8_t>(code(rng));
        b.s = f32_to_f16(f16_to_f32(b.d) * static_cast<float>(sum));
      });
      break;
    case DType::Q8_K:
      edit_blocks<BlockQ8_K>(row, [&](BlockQ8_K& b) {
        b.d = u(rng) * (code(rng) < 0 ? -1.0f : 1.0f);
        for (int j = 0; j < 16; ++j) {
          int sum = 0;
          for (int l = 0; l < 16; ++l) sum += b.qs[16 * j + l] = static_cast<int8_t>(code(rng));
          b.bsums[j] = static_cast<int16_t>(sum);
        }
      });
      break;
    default:
      ADD_FAILURE() << "no random activations for " << dtype_layout(t).name;
  }
  return row;
}

// Every bit pattern of the block formats, not only quantiser output: a wrong bit position, a
// sub-block scale applied to the wrong lane or an overflowing intermediate shows up here even
// where the quantisers' typical codes would hide it.
TEST_P(QuantIsaVariant, VecDotMatchesScalarOnRandomBlocks) {
  const Isa isa = GetParam();
  std::mt19937 rng(4321);
  for (DType t : kAllTypes) {
    const int64_t bs = dtype_layout(t).block_size;
    if (bs == 1) continue;  // plain floats: covered above
    const QuantKernels& k = *quant_kernels_for(t, isa);
    const QuantKernels& ref = scalar(t);
    for (int64_t n : {bs, 3 * bs, 4096 / bs * bs}) {
      for (int rep = 0; rep < 20; ++rep) {
        const std::vector<uint8_t> w = random_weight_blocks(t, n, rng);
        const std::vector<uint8_t> a = random_activation_blocks(ref.vec_dot_type, n, rng);
        const float want = ref.vec_dot(n, w.data(), a.data());
        const float got = k.vec_dot(n, w.data(), a.data());
        const double bound = abs_dot(t, ref, w.data(), a.data(), n);
        ASSERT_LE(std::fabs(static_cast<double>(got) - want), 1e-5 * bound + 1e-30)
            << isa_name(isa) << " " << dtype_layout(t).name << " n=" << n << " rep=" << rep
            << " want " << want << " got " << got;
      }
    }
  }
}

// Zero weights or zero activations dot to exactly zero in every variant.
TEST_P(QuantIsaVariant, ZeroRowsDotToZero) {
  for (DType t : kAllTypes) {
    const QuantKernels& k = *quant_kernels_for(t, GetParam());
    const int64_t n = 4 * dtype_layout(t).block_size * (dtype_layout(t).block_size == 1 ? 64 : 1);
    std::mt19937 rng(7);
    const std::vector<uint8_t> z = quantize_scalar(t, std::vector<float>(static_cast<size_t>(n)));
    const std::vector<uint8_t> a = quantize_scalar(k.vec_dot_type, gaussian(n, rng, 1.0f));
    EXPECT_EQ(k.vec_dot(n, z.data(), a.data()), 0.0f) << dtype_layout(t).name;
  }
}

// Inputs that stress the activation quantisers' rounding: exact ties after scaling, duplicate
// +-maxima (the first one sets the sign), all-zero blocks, tiny and huge magnitudes.
std::vector<std::vector<float>> quantiser_inputs(int64_t n) {
  std::mt19937 rng(99);
  std::vector<std::vector<float>> rows;
  rows.push_back(gaussian(n, rng, 1.0f));
  rows.push_back(gaussian(n, rng, 1e-6f));
  rows.push_back(gaussian(n, rng, 1e4f));
  std::vector<float> ties(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)  // amax 127 in every 32: x * (127 / 127) lands on k + 0.5
    ties[static_cast<size_t>(i)] = i % 32 == 0 ? 127.0f : static_cast<float>(i % 64) - 31.5f;
  rows.push_back(ties);
  std::vector<float> ties_neg = ties;
  for (float& x : ties_neg) x = -x;
  rows.push_back(ties_neg);
  std::vector<float> dup(static_cast<size_t>(n), 0.25f);
  for (int64_t i = 0; i < n; i += 8) dup[static_cast<size_t>(i)] = (i / 8) % 2 ? 3.0f : -3.0f;
  rows.push_back(dup);
  std::vector<float> mixed = gaussian(n, rng, 1.0f);
  for (int64_t i = 0; i < std::min<int64_t>(n, 256); ++i) mixed[static_cast<size_t>(i)] = 0;
  rows.push_back(mixed);
  std::vector<float> grid(static_cast<size_t>(n));  // many values exactly on a half step
  for (int64_t i = 0; i < n; ++i)
    grid[static_cast<size_t>(i)] = static_cast<float>((i * 37) % 255 - 127) * 0.5f;
  rows.push_back(grid);
  // Q8_1's s = f16(d * sum of codes): overflowing to inf (huge blocks), exactly 0 (codes that
  // cancel), and f16 subnormals (tiny blocks).
  std::vector<float> huge = gaussian(n, rng, 1e5f);
  for (int64_t i = 0; i < n; i += 32) huge[static_cast<size_t>(i)] = 6e5f;
  rows.push_back(huge);
  std::vector<float> cancel(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    cancel[static_cast<size_t>(i)] = (i % 2 ? -1.0f : 1.0f) * static_cast<float>(i % 32 / 2 + 1);
  rows.push_back(cancel);
  rows.push_back(gaussian(n, rng, 3e-5f));
  return rows;
}

TEST_P(QuantIsaVariant, FromFloatIsByteIdenticalToScalar) {
  for (DType t : kAllTypes) {
    const QuantKernels& k = *quant_kernels_for(t, GetParam());
    const int64_t n = 4096;
    for (const std::vector<float>& x : quantiser_inputs(n)) {
      const std::vector<uint8_t> want = quantize_scalar(t, x);
      std::vector<uint8_t> got(want.size(), 0xAB);
      k.from_float(x.data(), got.data(), n);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0)
          << isa_name(GetParam()) << " " << dtype_layout(t).name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(QuantIsa, QuantIsaVariant, ::testing::ValuesIn(kVectorIsas),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(isa_name(info.param));
                         });

TEST(QuantIsaDispatch, ActiveVariantIsForcedOrBest) {
  const char* env = std::getenv("BRISK_ISA");
  const std::string want = env && *env ? env : isa_name(best_isa());
  EXPECT_EQ(std::string(active_isa()), want);
  for (DType t : kAllTypes)
    EXPECT_EQ(&quant_kernels(t), quant_kernels_for(t, active_isa_kind())) << dtype_layout(t).name;
}

TEST(QuantIsaDispatch, ScalarIsAlwaysAvailableAndVariantsAreOrdered) {
  EXPECT_TRUE(cpu_supports(Isa::Scalar));
  // Every vector variant includes AVX2; AVX-512 VNNI includes AVX-512.
  if (cpu_supports(Isa::Avx512Vnni)) {
    EXPECT_TRUE(cpu_supports(Isa::Avx512));
  }
  for (int i = 1; i < kIsaCount; ++i)
    if (cpu_supports(static_cast<Isa>(i))) {
      EXPECT_TRUE(cpu_supports(Isa::Avx2));
      EXPECT_LE(i, static_cast<int>(best_isa()));
    } else {
      EXPECT_EQ(quant_kernels_for(DType::Q4_0, static_cast<Isa>(i)), nullptr);
    }
  EXPECT_EQ(quant_kernels_for(DType::I32, Isa::Scalar), nullptr);
  EXPECT_THROW(quant_kernels(DType::I32), Error);
}

}  // namespace
