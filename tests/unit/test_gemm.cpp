// Packed GEMM kernels (kernels/cpu/gemm.h) against the scalar reference vec_dot, and the linear
// ops built on them (fused norm + quantisation, fused Q/K/V, fused SwiGLU) against their unfused
// scalar composition. Every variant this CPU supports is checked; absent ones are skipped.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"
#include "ops/ops.h"

using namespace brisk;
using test::gaussian;
using namespace brisk::kernels;

namespace {

const DType kPackedTypes[] = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K,
                              DType::Q5_K, DType::F16,  DType::BF16, DType::F32};

std::vector<uint8_t> quantize(DType t, const float* x, int64_t rows, int64_t n) {
  const size_t rb = row_bytes(t, n);
  std::vector<uint8_t> q(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    quant_kernels_for(t, Isa::Scalar)->from_float(x + r * n, q.data() + r * rb, n);
  return q;
}

// Weights with varied per-row and per-block magnitudes and a few outliers, so scales differ.
std::vector<float> weights(int64_t rows, int64_t n, std::mt19937& rng) {
  std::vector<float> w = gaussian(rows * n, rng, 0.05f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) w[static_cast<size_t>(r * n + i)] *= 1.0f + 0.1f * (r % 7);
  for (size_t i = 0; i < w.size(); i += 97) w[i] *= 12;
  return w;
}

struct Case {
  int64_t n_out, n_in, T;
};

class PackedGemmVariant : public ::testing::TestWithParam<Isa> {};

// out[t][r] of the packed kernel equals the scalar vec_dot of row r with token t's activation row
// up to float summation order (bounded by the sum of |w a| products).
TEST_P(PackedGemmVariant, MatchesScalarVecDot) {
  const Isa isa = GetParam();
  int tested = 0;
  for (DType t : kPackedTypes) {
    const PackedGemm* pg = packed_gemm_for(t, isa);
    if (!pg) continue;
    ++tested;
    const QuantKernels& ref = *quant_kernels_for(t, Isa::Scalar);
    ASSERT_EQ(pg->act_type, ref.vec_dot_type);
    std::mt19937 rng(static_cast<uint32_t>(t) * 31 + 5);
    const int64_t bs = dtype_layout(t).block_size;
    for (const Case& c : {Case{1, bs, 1}, Case{16, bs, 1}, Case{37, 2 * bs, 3}, Case{48, 8 * bs, 9},
                          Case{33, 4 * bs, 20}, Case{64, 11008 / bs * bs, 2}}) {
      const std::vector<float> wf = weights(c.n_out, c.n_in, rng);
      const std::vector<uint8_t> w = quantize(t, wf.data(), c.n_out, c.n_in);
      const std::vector<float> xf = gaussian(c.T * c.n_in, rng, 1.0f);
      const std::vector<uint8_t> act = quantize(pg->act_type, xf.data(), c.T, c.n_in);
      const size_t arb = row_bytes(pg->act_type, c.n_in), wrb = row_bytes(t, c.n_in);

      const int64_t groups = (c.n_out + pg->rows - 1) / pg->rows;
      const size_t gb = pg->group_bytes(c.n_in);
      ASSERT_EQ(gb, wrb * static_cast<size_t>(pg->rows)) << "packing must not change the size";
      std::vector<uint8_t> packed(gb * static_cast<size_t>(groups), 0xCD);
      for (int64_t g = 0; g < groups; ++g)
        pg->pack(w.data() + static_cast<size_t>(g * pg->rows) * wrb, c.n_in,
                 std::min<int64_t>(pg->rows, c.n_out - g * pg->rows),
                 packed.data() + static_cast<size_t>(g) * gb);
      const size_t sb = pg->side_bytes(c.n_in);
      std::vector<uint8_t> side(sb * static_cast<size_t>(c.T));
      for (int64_t tok = 0; tok < c.T; ++tok)
        pg->prep(act.data() + tok * arb, c.n_in, side.data() + tok * sb);

      const int64_t ldo = c.n_out + 3;  // a wider output row: untouched columns stay as they were
      std::vector<float> out(static_cast<size_t>(c.T * ldo), -777.0f);
      GemmArgs a;
      a.w = packed.data();
      a.n_groups = groups;
      a.n_in = c.n_in;
      a.act = act.data();
      a.act_stride = arb;
      a.side = side.data();
      a.side_stride = sb;
      a.T = c.T;
      a.out = out.data();
      a.ldo = ldo;
      a.n_rows = c.n_out;
      pg->gemm(a);
      // accumulate adds to what is there: a second pass doubles every written value exactly.
      const std::vector<float> once = out;
      a.accumulate = true;
      pg->gemm(a);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_EQ(out[i], once[i] == -777.0f ? once[i] : 2 * once[i]) << "accumulate, at " << i;
      out = once;

      std::vector<float> wr(static_cast<size_t>(c.n_in)), ar(static_cast<size_t>(c.n_in));
      for (int64_t tok = 0; tok < c.T; ++tok) {
        quant_kernels_for(pg->act_type, Isa::Scalar)
            ->to_float(act.data() + tok * arb, ar.data(), c.n_in);
        for (int64_t r = 0; r < c.n_out; ++r) {
          const uint8_t* wrow = w.data() + static_cast<size_t>(r) * wrb;
          const float want = ref.vec_dot(c.n_in, wrow, act.data() + tok * arb);
          ref.to_float(wrow, wr.data(), c.n_in);
          double bound = 0;
          for (int64_t i = 0; i < c.n_in; ++i) bound += std::fabs(double(wr[i]) * ar[i]);
          const float got = out[static_cast<size_t>(tok * ldo + r)];
          ASSERT_LE(std::fabs(double(got) - want), 2e-6 * bound + 1e-30)
              << isa_name(isa) << " " << dtype_name(t) << " n_out=" << c.n_out << " n_in=" << c.n_in
              << " T=" << c.T << " row " << r << " token " << tok;
        }
        for (int64_t r = c.n_out; r < ldo; ++r)
          ASSERT_EQ(out[static_cast<size_t>(tok * ldo + r)], -777.0f) << "wrote past n_rows";
      }
    }
  }
  if (tested == 0) GTEST_SKIP() << "no packed kernels for " << isa_name(isa) << " on this CPU";
}

INSTANTIATE_TEST_SUITE_P(Gemm, PackedGemmVariant,
                         ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512,
                                           Isa::Avx512Vnni),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(isa_name(info.param));
                         });

// The fused ops against the unfused scalar composition: rms_norm -> vec_dot rows (+ bias), and
// silu(gate) * up. Weights are packed when the active variant has a kernel for the type.
class LinearOps : public ::testing::TestWithParam<DType> {};

std::vector<float> ref_linear(const std::vector<float>& x, int64_t T, const ops::WeightView& w,
                              const float* bias) {
  const QuantKernels& k = *quant_kernels_for(w.type, Isa::Scalar);
  const QuantKernels& ak = *quant_kernels_for(k.vec_dot_type, Isa::Scalar);
  const size_t arb = row_bytes(k.vec_dot_type, w.n_in), wrb = row_bytes(w.type, w.n_in);
  std::vector<uint8_t> a(arb);
  std::vector<float> out(static_cast<size_t>(T * w.n_out));
  for (int64_t t = 0; t < T; ++t) {
    const uint8_t* ap = reinterpret_cast<const uint8_t*>(x.data() + t * w.n_in);
    if (k.vec_dot_type != DType::F32) {
      ak.from_float(x.data() + t * w.n_in, a.data(), w.n_in);
      ap = a.data();
    }
    for (int64_t r = 0; r < w.n_out; ++r)
      out[static_cast<size_t>(t * w.n_out + r)] =
          k.vec_dot(w.n_in, static_cast<const uint8_t*>(w.data) + r * wrb, ap) +
          (bias ? bias[r] : 0.0f);
  }
  return out;
}

std::vector<float> ref_norm(const std::vector<float>& x, int64_t T, int64_t n,
                            const std::vector<float>& g, float eps) {
  std::vector<float> h(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[t * n + i]) * x[t * n + i];
    const float s = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
    for (int64_t i = 0; i < n; ++i) h[t * n + i] = x[t * n + i] * s * g[i];
  }
  return h;
}

// Relative RMS difference.
double rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double se = 0, sr = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    se += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    sr += double(b[i]) * b[i];
  }
  return std::sqrt(se / std::max(sr, 1e-30));
}

TEST_P(LinearOps, FusedOpsMatchUnfusedReference) {
  const DType t = GetParam();
  const int64_t bs = dtype_layout(t).block_size;
  const int64_t n_in = std::max<int64_t>(bs, 256) * 2, n_q = 80, n_kv = 24, n_ff = 120;
  std::mt19937 rng(11);
  std::vector<std::vector<uint8_t>> store;
  std::vector<HugeBuffer> packs;
  ThreadPool pool(2);
  auto make = [&](int64_t n_out, const char* name) {
    const std::vector<float> wf = weights(n_out, n_in, rng);
    store.push_back(quantize(t, wf.data(), n_out, n_in));
    ops::WeightView w{t, n_in, n_out, store.back().data(), name};
    packs.push_back(ops::pack_weight(w, pool));
    return w;
  };
  const ops::WeightView wq = make(n_q, "q"), wk = make(n_kv, "k"), wv = make(n_kv, "v"),
                        wg = make(n_ff, "gate"), wu = make(n_ff, "up");
  // The fused gate/up matrix where the active variant packs this type (else an unset view).
  ops::WeightView gate_up;
  HugeBuffer gu_buf;
  if (const size_t n = ops::gate_up_packed_size(wg, wu)) {
    gu_buf = HugeBuffer(n);
    gate_up = ops::pack_gate_up_into(wg, wu, gu_buf.data(), pool);
  }
  if (packed_gemm(t)) {
    ASSERT_NE(wq.packed, nullptr);
  }
  const std::vector<float> gain = gaussian(n_in, rng, 1.0f), bq = gaussian(n_q, rng, 0.1f);
  for (int64_t T : {1, 5, 19, 300}) {
    const std::vector<float> x = gaussian(T * n_in, rng, 2.0f);
    const std::vector<float> h = ref_norm(x, T, n_in, gain, 1e-5f);
    std::vector<float> q(static_cast<size_t>(T * n_q)), k(static_cast<size_t>(T * n_kv)),
        v(static_cast<size_t>(T * n_kv)), ffn(static_cast<size_t>(T * n_ff));
    ops::LinearScratch scratch;
    const ops::LinearTarget tg[3] = {
        {&wq, bq.data(), q.data()}, {&wk, nullptr, k.data()}, {&wv, nullptr, v.data()}};
    ops::linear_multi(x.data(), T, ops::RmsNorm{gain.data(), 1e-5f}, tg, scratch, pool);
    // The fused norm rounds like the reference, so only vec_dot summation order may differ.
    EXPECT_LT(rel_rms(q, ref_linear(h, T, wq, bq.data())), 1e-5) << dtype_name(t) << " T=" << T;
    EXPECT_LT(rel_rms(k, ref_linear(h, T, wk, nullptr)), 1e-5) << dtype_name(t);
    EXPECT_LT(rel_rms(v, ref_linear(h, T, wv, nullptr)), 1e-5) << dtype_name(t);

    ops::swiglu_hidden(x.data(), T, ops::RmsNorm{gain.data(), 1e-5f}, wg, wu, gate_up, ffn.data(),
                       scratch, pool);
    std::vector<float> g = ref_linear(h, T, wg, nullptr), u = ref_linear(h, T, wu, nullptr);
    for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    EXPECT_LT(rel_rms(ffn, g), 1e-5) << dtype_name(t) << " T=" << T;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, LinearOps,
                         ::testing::Values(DType::F32, DType::F16, DType::Q4_0, DType::Q8_0,
                                           DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(dtype_name(info.param));
                         });

// The vector row kernels against the scalar ones.
TEST(VecOps, VariantsMatchScalar) {
  const VecOps& s = *vec_ops_for(Isa::Scalar);
  std::mt19937 rng(3);
  for (int v = 1; v < kIsaCount; ++v) {
    const VecOps* o = vec_ops_for(static_cast<Isa>(v));
    if (!o) continue;
    for (int64_t n : {1, 7, 16, 33, 2048}) {
      std::vector<float> x = gaussian(n, rng, 3.0f), w = gaussian(n, rng, 1.0f);
      x[0] = -95.0f;  // exp(95) overflows: silu -> -0
      if (n > 1) x[1] = 90.0f;
      EXPECT_NEAR(o->sum_sq(x.data(), n), s.sum_sq(x.data(), n), 1e-12 * s.sum_sq(x.data(), n));
      std::vector<float> a(n), b(n);
      o->scale_mul(x.data(), 0.37f, w.data(), a.data(), n);
      s.scale_mul(x.data(), 0.37f, w.data(), b.data(), n);
      EXPECT_EQ(a, b);
      o->silu_mul(x.data(), w.data(), a.data(), n);
      s.silu_mul(x.data(), w.data(), b.data(), n);
      for (int64_t i = 0; i < n; ++i)
        EXPECT_NEAR(a[i], b[i], 4e-7 * std::fabs(b[i]) + 1e-30) << isa_name(Isa(v)) << " " << x[i];
      a = x;
      b = x;
      o->add(a.data(), w.data(), n);
      s.add(b.data(), w.data(), n);
      EXPECT_EQ(a, b);
    }
    for (bool adjacent : {true, false})
      for (int n_dims : {8, 20, 64, 128}) {
        const int head_dim = 128, heads = 3;
        std::vector<float> x = gaussian(head_dim * heads, rng, 1.0f), y = x;
        std::vector<float> cs(n_dims / 2), sn(n_dims / 2);
        for (int i = 0; i < n_dims / 2; ++i) {
          cs[i] = std::cos(0.3f * i + 1);
          sn[i] = std::sin(0.3f * i + 1);
        }
        o->rope(x.data(), heads, head_dim, n_dims, adjacent, cs.data(), sn.data());
        s.rope(y.data(), heads, head_dim, n_dims, adjacent, cs.data(), sn.data());
        for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], 1e-6) << n_dims;
      }
  }
}

}  // namespace
