// Tiled attention (kernels/cpu/attention.h, ops::attention) against a naive double-precision
// reference written here: every kernel variant this CPU supports (others are skipped) plus the
// scalar one, pools of 1 and 2 threads, causal offsets, GQA/MQA/MHA, sliding windows, f32, f16
// and q8_0 K/V, contiguous and shuffled paged storage, and forced flash-decoding splits. F16 K/V
// are compared with a reference that uses the same rounded values, so both get the f32 tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa.h"
#include "ops/attention.h"

using namespace brisk;
using kernels::Isa;

namespace {

// Relative to the largest |output| of the reference; f32 rounding of q.k over head_dim terms and
// of the exp2 polynomial stays well inside it.
constexpr double kTol = 1e-5;

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (int i = 0; i < kernels::kIsaCount; ++i)
    if (kernels::cpu_supports(static_cast<Isa>(i))) out.push_back(static_cast<Isa>(i));
  return out;
}

struct Case {
  int64_t T = 1, pos0 = 0;
  int head_dim = 64, n_head = 8, n_head_kv = 2, window = 0;
  DType type = DType::F32;
  int block_tokens = 0;  // 0 = one contiguous block (the model's cache); else paged, shuffled
  std::string name() const {
    return "T=" + std::to_string(T) + " pos0=" + std::to_string(pos0) +
           " d=" + std::to_string(head_dim) + " heads=" + std::to_string(n_head) + "/" +
           std::to_string(n_head_kv) + " window=" + std::to_string(window) + " " +
           dtype_name(type) + (block_tokens ? " blocks of " + std::to_string(block_tokens) : "");
  }
};

// One of K or V: storage in the view's layout (unused slots hold NaN, so a read of the wrong
// element poisons the output) and the logical values (ctx, n_head_kv, head_dim) as doubles.
struct KvStore {
  std::vector<float> f32;
  std::vector<uint16_t> f16;
  std::vector<uint8_t> q8;  // q8_0: element e in the 34-byte block e / 32
  std::vector<int32_t> table;
  std::vector<double> values;
  kernels::KvView view;
};

KvStore make_kv(const Case& c, std::mt19937& rng) {
  const int64_t ctx = c.pos0 + c.T;
  const int64_t row = static_cast<int64_t>(c.n_head_kv) * c.head_dim;
  KvStore s;
  kernels::KvView& v = s.view;
  v.type = c.type;
  int64_t n_blocks;
  if (c.block_tokens == 0) {
    v.block_tokens = ctx + 3;  // a cache with room to spare
    v.token_stride = row;
    v.block_stride = v.block_tokens * row;
    n_blocks = 1;
  } else {
    v.block_tokens = c.block_tokens;
    // Padded token rows and blocks catch stride mix-ups (q8_0 pads by whole 32-element blocks).
    const bool q8 = c.type == DType::Q8_0;
    v.token_stride = row + (q8 ? 32 : 8);
    v.block_stride = v.block_tokens * v.token_stride + (q8 ? 64 : 24);
    n_blocks = (ctx + c.block_tokens - 1) / c.block_tokens + 2;  // two spare physical blocks
    std::vector<int32_t> perm(static_cast<size_t>(n_blocks));
    for (int32_t i = 0; i < n_blocks; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    s.table = perm;
    v.block_table = s.table.data();
  }
  const size_t n = static_cast<size_t>(n_blocks * v.block_stride);
  if (c.type == DType::F32) {
    s.f32.assign(n, std::numeric_limits<float>::quiet_NaN());
  } else if (c.type == DType::F16) {
    s.f16.assign(n, 0x7e00);  // f16 NaN
  } else {
    s.q8.assign(n / 32 * 34, 0);
    for (size_t b = 0; b < n / 32; ++b) {  // NaN scales poison any block read by mistake
      s.q8[b * 34] = 0x00;
      s.q8[b * 34 + 1] = 0x7e;
    }
  }
  std::normal_distribution<float> nd(0.0f, 1.0f);
  s.values.resize(static_cast<size_t>(ctx * row));
  for (int64_t j = 0; j < ctx; ++j) {
    const int64_t blk = j / v.block_tokens, off = j % v.block_tokens;
    const int64_t phys = v.block_table ? v.block_table[blk] : blk;
    const int64_t e0 = phys * v.block_stride + off * v.token_stride;
    if (c.type == DType::Q8_0) {
      // Round-to-nearest q8_0 blocks; the reference sees the dequantised values.
      for (int64_t b0 = 0; b0 < row; b0 += 32) {
        float x[32], amax = 0;
        for (float& xi : x) amax = std::max(amax, std::fabs(xi = nd(rng)));
        const uint16_t dh = f32_to_f16(amax / 127.0f);
        const float d = f16_to_f32(dh);
        uint8_t* blk_p = s.q8.data() + (e0 + b0) / 32 * 34;
        blk_p[0] = static_cast<uint8_t>(dh & 0xff);
        blk_p[1] = static_cast<uint8_t>(dh >> 8);
        for (int i = 0; i < 32; ++i) {
          const int qi = d > 0 ? static_cast<int>(std::lround(x[i] / d)) : 0;
          blk_p[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(qi, -127, 127)));
          s.values[static_cast<size_t>(j * row + b0 + i)] =
              static_cast<double>(d * static_cast<float>(static_cast<int8_t>(blk_p[2 + i])));
        }
      }
      continue;
    }
    for (int64_t i = 0; i < row; ++i) {
      float x = nd(rng);
      if (c.type == DType::F32) {
        s.f32[static_cast<size_t>(e0 + i)] = x;
      } else {
        const uint16_t h = f32_to_f16(x);
        s.f16[static_cast<size_t>(e0 + i)] = h;
        x = f16_to_f32(h);
      }
      s.values[static_cast<size_t>(j * row + i)] = x;
    }
  }
  v.base = c.type == DType::F32   ? static_cast<const void*>(s.f32.data())
           : c.type == DType::F16 ? static_cast<const void*>(s.f16.data())
                                  : static_cast<const void*>(s.q8.data());
  return s;
}

// out[t][h][i] = sum_j softmax_j(scale * q.k_j) v_j[i] over the keys the query at pos0 + t sees.
std::vector<double> reference(const Case& c, const std::vector<float>& q, const KvStore& k,
                              const KvStore& v, float scale) {
  const int64_t D = c.head_dim, group = c.n_head / c.n_head_kv, row = c.n_head_kv * D;
  std::vector<double> out(static_cast<size_t>(c.T * c.n_head * D), 0.0);
  std::vector<double> w;
  for (int64_t t = 0; t < c.T; ++t) {
    const int64_t p = c.pos0 + t;
    const int64_t j0 = c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0;
    for (int64_t h = 0; h < c.n_head; ++h) {
      const int64_t hk = h / group;
      const float* qv = q.data() + (t * c.n_head + h) * D;
      w.assign(static_cast<size_t>(p - j0 + 1), 0.0);
      double mx = -1e300;
      for (int64_t j = j0; j <= p; ++j) {
        const double* kv = k.values.data() + j * row + hk * D;
        double dot = 0;
        for (int64_t i = 0; i < D; ++i) dot += static_cast<double>(qv[i]) * kv[i];
        w[j - j0] = dot * scale;
        mx = std::max(mx, w[j - j0]);
      }
      double sum = 0;
      for (double& x : w) sum += (x = std::exp(x - mx));
      double* o = out.data() + (t * c.n_head + h) * D;
      for (int64_t j = j0; j <= p; ++j) {
        const double* vv = v.values.data() + j * row + hk * D;
        const double pj = w[j - j0] / sum;
        for (int64_t i = 0; i < D; ++i) o[i] += pj * vv[i];
      }
    }
  }
  return out;
}

// max |got - want| / max |want|
double rel_error(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(got[i] - want[i]));
    if (std::isnan(got[i])) err = std::numeric_limits<double>::infinity();
    scale = std::max(scale, std::fabs(want[i]));
  }
  return err / scale;
}

struct Inputs {
  std::vector<float> q;
  KvStore k, v;
  float scale;
};

Inputs make_inputs(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Inputs in;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  in.q.resize(static_cast<size_t>(c.T * c.n_head * c.head_dim));
  for (float& x : in.q) x = nd(rng);
  in.k = make_kv(c, rng);
  in.v = make_kv(c, rng);
  in.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  return in;
}

std::vector<float> run(const Case& c, const Inputs& in, ThreadPool& pool,
                       const ops::AttentionOptions& opt) {
  ops::AttentionShape s{c.n_head, c.n_head_kv, c.head_dim, c.window, in.scale};
  std::vector<float> out(static_cast<size_t>(c.T * c.n_head * c.head_dim),
                         std::numeric_limits<float>::quiet_NaN());
  std::vector<float> scratch;
  ops::attention(in.q.data(), c.T, c.pos0, in.k.view, in.v.view, s, out.data(), scratch, pool, opt);
  return out;
}

// Every supported variant, pools of 1 and 2, the automatic split and the given forced ones.
void check_case(const Case& c, const std::vector<int>& chunks = {}) {
  SCOPED_TRACE(c.name());
  const Inputs in = make_inputs(c, static_cast<uint32_t>(c.T * 7919 + c.pos0 * 31 + c.head_dim));
  const std::vector<double> want = reference(c, in.q, in.k, in.v, in.scale);
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (Isa isa : supported_isas()) {
      std::vector<int> splits = {0};
      splits.insert(splits.end(), chunks.begin(), chunks.end());
      for (int kv_chunks : splits) {
        ops::AttentionOptions opt;
        opt.isa = isa;
        opt.kv_chunks = kv_chunks;
        const double err = rel_error(run(c, in, pool, opt), want);
        EXPECT_LE(err, kTol) << kernels::isa_name(isa) << " threads=" << threads
                             << " kv_chunks=" << kv_chunks;
      }
    }
  }
}

TEST(Attention, SweepsQueryLengthsOffsetsAndHeadSizes) {
  // GQA groups 1 (MHA), 4 and 8 (MQA here: one KV head), rotated through the grid with windows
  // (smaller than a key tile, and a long one) and storage types so every pair shows up.
  const int heads[3][2] = {{2, 2}, {8, 2}, {8, 1}};
  const int windows[3] = {0, 37, 700};
  int i = 0;
  for (int64_t T : {1, 2, 7, 64, 129})
    for (int64_t pos0 : {0, 3, 511, 2000})
      for (int d : {64, 128, 80, 40}) {
        Case c;
        const bool q8_ok = d % 32 == 0;
        c.T = T;
        c.pos0 = pos0;
        c.head_dim = d;
        c.n_head = heads[i % 3][0];
        c.n_head_kv = heads[i % 3][1];
        c.window = windows[i / 3 % 3];
        c.type = i / 2 % 3 == 1 ? DType::F16 : i / 2 % 3 == 2 && q8_ok ? DType::Q8_0 : DType::F32;
        check_case(c);
        ++i;
      }
}

TEST(Attention, GroupsWindowsAndTypesAllCombinations) {
  for (int d : {64, 128, 80, 8})
    for (const auto& hv : {std::pair{4, 4}, std::pair{8, 2}, std::pair{8, 1}, std::pair{16, 2}})
      for (int window : {0, 5, 100})
        for (DType type : {DType::F32, DType::F16}) {
          Case c;
          c.T = 9;
          c.pos0 = 300;
          c.head_dim = d;
          c.n_head = hv.first;
          c.n_head_kv = hv.second;
          c.window = window;
          c.type = type;
          check_case(c);
        }
}

TEST(Attention, PagedShuffledBlockTable) {
  for (int bt : {16, 5, 64})
    for (DType type : {DType::F32, DType::F16, DType::Q8_0})
      for (const auto& tp :
           {std::pair<int64_t, int64_t>{1, 700}, std::pair<int64_t, int64_t>{70, 33},
            std::pair<int64_t, int64_t>{3, 129}}) {
        Case c;
        c.T = tp.first;
        c.pos0 = tp.second;
        c.head_dim = 64;
        c.n_head = 8;
        c.n_head_kv = 2;
        c.window = bt == 5 ? 50 : 0;
        c.type = type;
        c.block_tokens = bt;
        check_case(c, {3});
      }
}

TEST(Attention, FlashDecodingSplitsMatchReference) {
  for (int64_t T : {1, 2, 7})
    for (int window : {0, 300}) {
      Case c;
      c.T = T;
      c.pos0 = 2000;
      c.head_dim = 128;
      c.n_head = 8;
      c.n_head_kv = 1;
      c.window = window;
      // 40 chunks of a 2000-key range leave some empty: their partials must merge as nothing.
      check_case(c, {1, 2, 3, 5, 8, 40});
    }
}

// Splitting the keys only changes the float rounding, not the result. Over 4096 keys each output
// is an average (~0.1) of unit-sized values, so the rounding of the accumulations is a few 1e-6 of
// the output scale; the unsplit result is that far from the exact one too.
TEST(Attention, FlashDecodingSplitsMatchUnsplitToRounding) {
  Case c;
  c.T = 1;
  c.pos0 = 4095;
  c.head_dim = 64;
  c.n_head = 32;
  c.n_head_kv = 4;
  const Inputs in = make_inputs(c, 5);
  ThreadPool pool(2);
  for (Isa isa : supported_isas()) {
    ops::AttentionOptions opt;
    opt.isa = isa;
    opt.kv_chunks = 1;
    const std::vector<float> whole = run(c, in, pool, opt);
    std::vector<double> whole_d(whole.begin(), whole.end());
    for (int chunks : {2, 3, 4, 7, 16, 64}) {
      opt.kv_chunks = chunks;
      EXPECT_LE(rel_error(run(c, in, pool, opt), whole_d), 5e-6)
          << kernels::isa_name(isa) << " chunks=" << chunks;
    }
  }
}

TEST(Attention, ScratchOnlyGrowsAndIsReused) {
  Case c;
  c.T = 1;
  c.pos0 = 1000;
  const Inputs in = make_inputs(c, 9);
  ops::AttentionShape s{c.n_head, c.n_head_kv, c.head_dim, 0, in.scale};
  std::vector<float> out(static_cast<size_t>(c.n_head * c.head_dim)), scratch;
  ThreadPool pool(2);
  ops::attention(in.q.data(), 1, c.pos0, in.k.view, in.v.view, s, out.data(), scratch, pool);
  const float* data = scratch.data();
  const size_t size = scratch.size();
  ASSERT_GT(size, 0u);
  for (int64_t pos0 : {1000, 500, 10, 999})
    ops::attention(in.q.data(), 1, pos0, in.k.view, in.v.view, s, out.data(), scratch, pool);
  EXPECT_EQ(scratch.data(), data);
  EXPECT_EQ(scratch.size(), size);
}

TEST(Attention, VectorVariantsFallBackToScalarForOtherHeadSizes) {
  for (Isa isa : supported_isas()) {
    EXPECT_EQ(kernels::attention_tile_isa(isa, 64), isa);
    EXPECT_EQ(kernels::attention_tile_isa(isa, 256), isa);
    EXPECT_EQ(kernels::attention_tile_isa(isa, 40), Isa::Scalar);
    EXPECT_EQ(kernels::attention_tile_isa(isa, 8), Isa::Scalar);
    EXPECT_NE(kernels::attention_tile_fn_for(isa, 64), nullptr);
  }
  Case c;
  c.T = 3;
  c.pos0 = 70;
  c.head_dim = 256;
  check_case(c);
}

TEST(Attention, RejectsBadShapes) {
  Case c;
  c.T = 2;
  const Inputs in = make_inputs(c, 1);
  std::vector<float> out(static_cast<size_t>(2 * c.n_head * c.head_dim)), scratch;
  ThreadPool pool(1);
  auto call = [&](ops::AttentionShape s, const kernels::KvView& k) {
    ops::attention(in.q.data(), 2, 0, k, in.v.view, s, out.data(), scratch, pool);
  };
  const ops::AttentionShape ok{8, 2, 64, 0, 0.125f};
  EXPECT_NO_THROW(call(ok, in.k.view));
  EXPECT_THROW(call({8, 3, 64, 0, 0.125f}, in.k.view), Error);   // heads not a multiple
  EXPECT_THROW(call({8, 2, 512, 0, 0.125f}, in.k.view), Error);  // head_dim too large
  kernels::KvView bad = in.k.view;
  bad.type = DType::Q4_0;
  EXPECT_THROW(call(ok, bad), Error);
  bad.type = DType::Q8_0;
  bad.token_stride += 8;  // q8_0 rows must start on whole 32-element blocks
  EXPECT_THROW(call(ok, bad), Error);
  bad = in.k.view;
  bad.block_tokens = 0;
  EXPECT_THROW(call(ok, bad), Error);
}

// The vector exp2 against the exact value: within 2 ulp on [-126, 127], exactly 0 below -126
// (so masked scores weigh nothing), exactly 1 at 0.
TEST(Attention, Exp2IsAccurate) {
  std::vector<float> x;
  for (int i = -126 * 256; i <= 127 * 256; ++i) x.push_back(static_cast<float>(i) / 256.0f);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> ud(-126.0f, 127.0f);
  for (int i = 0; i < 200000; ++i) x.push_back(ud(rng));
  for (float v : {-0.5f, 0.5f, -1e-8f, 1e-8f, -125.9999f}) x.push_back(v);
  const size_t n_in_range = x.size();
  for (float v : {-126.5f, -127.0f, -150.0f, -1e30f, -std::numeric_limits<float>::infinity()})
    x.push_back(v);
  x.push_back(0.0f);
  for (Isa isa : supported_isas()) {
    std::vector<float> y(x.size());
    ASSERT_TRUE(kernels::attention_exp2(isa, x.data(), y.data(), static_cast<int64_t>(x.size())));
    double worst = 0;
    float worst_x = 0;
    for (size_t i = 0; i < n_in_range; ++i) {
      const double exact = std::exp2(static_cast<double>(x[i]));
      const double ulp = std::ldexp(1.0, std::ilogb(exact) - 23);
      const double e = std::fabs(y[i] - exact) / ulp;
      if (e > worst) worst = e, worst_x = x[i];
    }
    EXPECT_LE(worst, 2.0) << kernels::isa_name(isa) << " at x = " << worst_x;
    if (isa != Isa::Scalar) {
      for (size_t i = n_in_range; i + 1 < x.size(); ++i)
        EXPECT_EQ(y[i], 0.0f) << kernels::isa_name(isa) << " x = " << x[i];
    }
    EXPECT_EQ(y.back(), 1.0f) << kernels::isa_name(isa);
    std::printf("[exp2] %-10s max error %.2f ulp\n", kernels::isa_name(isa), worst);
  }
}

}  // namespace

// attention_batch gives every sequence exactly (bit for bit) what attention() gives it alone:
// decodes, prompt chunks and a long context that attention() splits along its keys, mixed.
TEST(Attention, BatchEqualsOneCallPerSequence) {
  const std::vector<std::pair<int64_t, int64_t>> tp = {{1, 40},  {1, 3000}, {9, 100}, {1, 0},
                                                       {70, 33}, {1, 700},  {2, 5}};
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<Inputs> ins;
    std::vector<Case> cases;
    for (size_t i = 0; i < tp.size(); ++i) {
      Case c;
      c.T = tp[i].first;
      c.pos0 = tp[i].second;
      c.head_dim = 64;
      c.n_head = 8;
      c.n_head_kv = 2;
      c.type = i % 2 ? DType::F16 : DType::F32;
      c.block_tokens = 16;
      cases.push_back(c);
      ins.push_back(make_inputs(c, static_cast<uint32_t>(i + 1)));
    }
    const ops::AttentionShape s{8, 2, 64, 0, ins[0].scale};
    std::vector<std::vector<float>> alone, batched(tp.size());
    std::vector<ops::AttnSeq> seqs;
    for (size_t i = 0; i < tp.size(); ++i) {
      alone.push_back(run(cases[i], ins[i], pool, {}));
      batched[i].assign(alone.back().size(), std::numeric_limits<float>::quiet_NaN());
      seqs.push_back(ops::AttnSeq{ins[i].q.data(), batched[i].data(), cases[i].T, cases[i].pos0,
                                  ins[i].k.view, ins[i].v.view});
    }
    std::vector<float> scratch;
    std::vector<int64_t> items;
    ops::attention_batch(seqs, s, scratch, items, pool);
    for (size_t i = 0; i < tp.size(); ++i)
      EXPECT_TRUE(alone[i] == batched[i]) << "sequence " << i << " threads " << threads;
  }
}
