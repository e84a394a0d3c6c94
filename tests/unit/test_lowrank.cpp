// Low-rank factorisation (quant/lowrank.h, `brisk lowrank`): the SVD against matrices of known
// rank and known singular values, rank selection by energy, and factorised models: full rank
// equals the dense model, low rank differs, forward_batch equals forward, and malformed factor
// pairs are refused when loading.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/synth_model.h"
#include "common/testdata.h"
#include "core/error.h"
#include "io/gguf/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/lowrank.h"

using namespace brisk;
using test::all_logits;
using test::max_rel_diff;
using test::prompt;
using test::synth_file;

namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& x : w) x = nd(rng);
  return w;
}

// c (rows, cols) = a (rows, k) b (k, cols), in double.
std::vector<double> matmul(const std::vector<float>& a, const std::vector<float>& b, int64_t rows,
                           int64_t k, int64_t cols) {
  std::vector<double> c(static_cast<size_t>(rows * cols), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t o = 0; o < cols; ++o)
        c[static_cast<size_t>(i * cols + o)] += static_cast<double>(a[i * k + j]) * b[j * cols + o];
  return c;
}

double frobenius_diff(const std::vector<float>& w, const std::vector<double>& approx) {
  double s = 0;
  for (size_t i = 0; i < w.size(); ++i) s += (w[i] - approx[i]) * (w[i] - approx[i]);
  return std::sqrt(s);
}

// n orthonormal columns of length m (m >= n), row-major (m, n), by Gram-Schmidt on random vectors.
std::vector<double> orthonormal(int64_t m, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> q(static_cast<size_t>(m * n));
  for (int64_t j = 0; j < n; ++j) {
    std::vector<double> v(static_cast<size_t>(m));
    for (double& x : v) x = nd(rng);
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t p = 0; p < j; ++p) {
        double d = 0;
        for (int64_t i = 0; i < m; ++i) d += v[static_cast<size_t>(i)] * q[i * n + p];
        for (int64_t i = 0; i < m; ++i) v[static_cast<size_t>(i)] -= d * q[i * n + p];
      }
    double nrm = 0;
    for (double x : v) nrm += x * x;
    nrm = std::sqrt(nrm);
    for (int64_t i = 0; i < m; ++i) q[i * n + j] = v[static_cast<size_t>(i)] / nrm;
  }
  return q;
}

// W (rows, cols) = U diag(s) V^T with random orthonormal U, V: singular values known exactly.
std::vector<float> with_singular_values(int64_t rows, int64_t cols, const std::vector<double>& s,
                                        uint32_t seed) {
  const int64_t k = static_cast<int64_t>(s.size());
  const std::vector<double> u = orthonormal(rows, k, seed), v = orthonormal(cols, k, seed + 1);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double x = 0;
      for (int64_t p = 0; p < k; ++p) x += u[i * k + p] * s[static_cast<size_t>(p)] * v[j * k + p];
      w[static_cast<size_t>(i * cols + j)] = static_cast<float>(x);
    }
  return w;
}

template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; wanted one mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line: " << msg;
  }
}

}  // namespace

// A (rows, cols) matrix of rank k, tall and wide: k nonzero singular values, and the rank-k
// factors reproduce it.
TEST(LowRankSvd, KnownRankIsReproduced) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{40, 30}, {24, 57}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
    const int64_t k = 5;
    const std::vector<float> b0 = random_matrix(rows, k, 2), a0 = random_matrix(k, cols, 3);
    const std::vector<double> wd = matmul(b0, a0, rows, k, cols);
    std::vector<float> wf(wd.begin(), wd.end());
    const quant::Svd d = quant::svd(wf.data(), rows, cols);
    ASSERT_EQ(d.s.size(), static_cast<size_t>(std::min(rows, cols)));
    for (size_t i = 1; i < d.s.size(); ++i) EXPECT_GE(d.s[i - 1], d.s[i]);
    EXPECT_GT(d.s[k - 1], 1.0);
    for (size_t i = k; i < d.s.size(); ++i) EXPECT_LT(d.s[i], 1e-4 * d.s[0]);
    const quant::LowRank f = quant::truncate(d, k);
    ASSERT_EQ(f.a.size(), static_cast<size_t>(k * cols));
    ASSERT_EQ(f.b.size(), static_cast<size_t>(rows * k));
    const std::vector<double> ba = matmul(f.b, f.a, rows, k, cols);
    double max_err = 0;
    for (size_t i = 0; i < wf.size(); ++i)
      max_err = std::max(max_err, std::fabs(ba[i] - static_cast<double>(wf[i])));
    EXPECT_LT(max_err, 1e-4);
    EXPECT_GT(f.energy, 1.0 - 1e-9);
    // One rank less loses a visible part.
    const quant::LowRank g = quant::truncate(d, k - 1);
    EXPECT_GT(frobenius_diff(wf, matmul(g.b, g.a, rows, k - 1, cols)), 0.5);
  }
}

// ||W - B A||_F = sqrt(sum of the discarded s_i^2) at every rank, for a full-rank random matrix;
// and the factors split sqrt(s) to each side (row j of A has norm sqrt(s_j)).
TEST(LowRankSvd, FrobeniusErrorIsTheDiscardedSingularValues) {
  const int64_t rows = 17, cols = 29;
  const std::vector<float> w = random_matrix(rows, cols, 7);
  const quant::Svd d = quant::svd(w.data(), rows, cols);
  double norm = 0;
  for (float x : w) norm += static_cast<double>(x) * x;
  norm = std::sqrt(norm);
  for (int64_t r = 1; r <= rows; ++r) {
    SCOPED_TRACE(r);
    const quant::LowRank f = quant::truncate(d, r);
    double discarded = 0;
    for (size_t i = static_cast<size_t>(r); i < d.s.size(); ++i) discarded += d.s[i] * d.s[i];
    const double err = frobenius_diff(w, matmul(f.b, f.a, rows, r, cols));
    EXPECT_NEAR(err, std::sqrt(discarded), 1e-5 * norm);
    EXPECT_NEAR(f.error, std::sqrt(discarded), 1e-9 * norm);
    EXPECT_NEAR(f.rel_error, std::sqrt(discarded) / norm, 1e-9);
    double row0 = 0;
    for (int64_t i = 0; i < cols; ++i) row0 += static_cast<double>(f.a[i]) * f.a[i];
    EXPECT_NEAR(std::sqrt(row0), std::sqrt(d.s[0]), 1e-5 * std::sqrt(d.s[0]));
  }
  EXPECT_LT(quant::truncate(d, rows).rel_error, 1e-9);
}

// A matrix built with known singular values gets them back, and energy selection picks the rank
// those values imply.
TEST(LowRankSvd, EnergySelectionPicksTheRightRank) {
  const std::vector<double> s = {8, 4, 2, 1, 0.5, 0.25};  // s^2: 64 16 4 1 0.25 0.0625
  const std::vector<float> w = with_singular_values(20, 12, s, 11);
  const quant::Svd d = quant::svd(w.data(), 20, 12);
  for (size_t i = 0; i < s.size(); ++i) EXPECT_NEAR(d.s[i], s[i], 1e-5);
  for (size_t i = s.size(); i < d.s.size(); ++i) EXPECT_LT(d.s[i], 1e-5);
  const double total = 64 + 16 + 4 + 1 + 0.25 + 0.0625;
  EXPECT_EQ(quant::rank_for_energy(d.s, 0.5), 1);
  EXPECT_EQ(quant::rank_for_energy(d.s, 64 / total - 1e-6), 1);
  EXPECT_EQ(quant::rank_for_energy(d.s, 64 / total + 1e-6), 2);
  EXPECT_EQ(quant::rank_for_energy(d.s, 0.93), 2);  // 80 / 85.31 = 0.9377
  EXPECT_EQ(quant::rank_for_energy(d.s, 0.95), 3);  // 80 / 85.31 < 0.95 <= 84 / 85.31 = 0.9846
  EXPECT_EQ(quant::rank_for_energy(d.s, 0.99), 4);  // 84 / 85.31 = 0.9846, 85 / 85.31 = 0.9963
  EXPECT_EQ(quant::rank_for_energy(d.s, 0.999), 5);
  EXPECT_NEAR(quant::retained_energy(d.s, 2), 80 / total, 1e-9);

  // Exact values: energy 1 keeps every nonzero value; a zero matrix needs rank 1.
  const std::vector<double> e = {3, 2, 1, 0, 0};  // s^2 total 14
  EXPECT_EQ(quant::rank_for_energy(e, 9.0 / 14 - 1e-9), 1);
  EXPECT_EQ(quant::rank_for_energy(e, 9.5 / 14), 2);
  EXPECT_EQ(quant::rank_for_energy(e, 1.0), 3);
  EXPECT_EQ(quant::rank_for_energy(std::vector<double>{0, 0}, 1.0), 1);
  EXPECT_DOUBLE_EQ(quant::retained_energy(e, 3), 1.0);
  EXPECT_THROW(quant::rank_for_energy(e, 0.0), Error);
  EXPECT_THROW(quant::rank_for_energy(e, 1.5), Error);
}

TEST(LowRankSvd, BadArgumentsAreErrors) {
  const std::vector<float> w = random_matrix(6, 4, 3);
  const quant::Svd d = quant::svd(w.data(), 6, 4);
  expect_error([&] { quant::truncate(d, 5); }, {"rank 5", "min(6, 4) = 4"});
  expect_error([&] { quant::truncate(d, 0); }, {"rank 0"});
  std::vector<float> bad = w;
  bad[5] = std::nanf("");
  expect_error([&] { quant::svd(bad.data(), 6, 4); }, {"non-finite", "element 5"});
  expect_error([&] { quant::svd(w.data(), 0, 4); }, {"empty"});
}

// ---- factorised models ----------------------------------------------------------------------

namespace {

io::ModelFile factorised(const io::ModelFile& base, quant::LowRankOptions o,
                         quant::LowRankReport* rep = nullptr) {
  ThreadPool pool(2);
  io::ModelFile m = base;
  const quant::LowRankReport r = quant::lowrank_model(m, o, pool);
  if (rep) *rep = r;
  return m;
}

quant::LowRankOptions full_rank_f32() {
  quant::LowRankOptions o;
  o.rank = 1 << 20;  // capped at min(n_in, n_out): exact
  o.type = DType::F32;
  o.only_if_smaller = false;
  return o;
}

}  // namespace

// At full rank (f32 factors) every matrix is factorised and the logits equal the dense model's
// (llama, and qwen2 whose Q/K/V biases apply after the second product).
TEST(LowRankModel, FullRankEqualsDense) {
  ThreadPool pool(2);
  for (const char* arch : {"llama", "qwen2"}) {
    SCOPED_TRACE(arch);
    const io::ModelFile base = synth_file(DType::F32, arch);
    quant::LowRankReport rep;
    io::ModelFile f = factorised(base, full_rank_f32(), &rep);
    EXPECT_EQ(rep.n_factorised, 14);
    EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight"), nullptr);
    const gguf::TensorInfo* a = f.find_tensor("blk.1.ffn_down.weight.lr_a");
    const gguf::TensorInfo* b = f.find_tensor("blk.1.ffn_down.weight.lr_b");
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->shape, (std::vector<int64_t>{128, 64}));  // A (r = 64, n_in = 128)
    EXPECT_EQ(b->shape, (std::vector<int64_t>{64, 64}));   // B (n_out = 64, r = 64)
    ASSERT_TRUE(f.find(quant::kLowRankKey));
    EXPECT_TRUE(f.find(quant::kLowRankKey)->as_bool(quant::kLowRankKey));
    EXPECT_EQ(f.find(quant::kLowRankCountKey)->as_int(quant::kLowRankCountKey), 14);

    auto dense = model::Model::load(base);
    auto lr = model::Model::load(std::move(f));
    EXPECT_EQ(lr->layer(0).lr_q.rank(), 64);
    EXPECT_EQ(lr->layer(0).lr_k.rank(), 32);
    EXPECT_EQ(lr->layer(0).gate_up.packed, nullptr);  // no fused gate/up for factorised ones
    const std::vector<int32_t> toks = prompt(12, dense->n_vocab(), 5);
    const double err = max_rel_diff(all_logits(*lr, toks, pool), all_logits(*dense, toks, pool));
    EXPECT_LT(err, 1e-4);
  }
}

// A low rank changes the logits (clearly, but they stay finite), and the saving is as promised.
TEST(LowRankModel, LowRankDiffers) {
  ThreadPool pool(2);
  const io::ModelFile base = synth_file(DType::F32);
  quant::LowRankOptions o;
  o.rank = 8;
  quant::LowRankReport rep;
  io::ModelFile f = factorised(base, o, &rep);
  EXPECT_EQ(rep.n_factorised, 14);
  uint64_t saved = 0;
  for (const quant::LowRankTensorReport& t : rep.tensors) {
    EXPECT_TRUE(t.factorised) << t.name;
    EXPECT_EQ(t.params_after, static_cast<uint64_t>(8 * (t.n_in + t.n_out)));
    EXPECT_GT(t.rel_error, 0.3);  // random weights: a rank-8 approximation loses most
    EXPECT_LT(t.energy, 0.7);
    saved += t.params_before - t.params_after;
  }
  EXPECT_EQ(rep.params_before - rep.params_after, saved);
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight.lr_a")->type, DType::F16);
  auto dense = model::Model::load(base);
  auto lr = model::Model::load(std::move(f));
  EXPECT_LT(lr->n_params(), dense->n_params());
  EXPECT_LT(lr->bytes_per_token(), dense->bytes_per_token());
  const std::vector<int32_t> toks = prompt(12, dense->n_vocab(), 5);
  const std::vector<float> got = all_logits(*lr, toks, pool);
  for (float x : got) ASSERT_TRUE(std::isfinite(x));
  EXPECT_GT(max_rel_diff(got, all_logits(*dense, toks, pool)), 1e-2);
}

// Only some matrices (layer 1, gate and down; a Q8_0 base whose other tensors stay Q8_0): layer 0
// keeps its fused gate/up, layer 1 runs the unfused path; full rank still equals dense up to the
// f16 rounding of the factors.
TEST(LowRankModel, SelectedMatricesOnAQuantisedBase) {
  ThreadPool pool(2);
  const io::ModelFile base = synth_file(DType::Q8_0);
  quant::LowRankOptions o = full_rank_f32();
  o.type = DType::F16;
  o.layers = {1};
  o.tensors = {"ffn_gate", "ffn_down"};
  quant::LowRankReport rep;
  io::ModelFile f = factorised(base, o, &rep);
  EXPECT_EQ(rep.n_factorised, 2);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate.weight")->type, DType::Q8_0);
  EXPECT_EQ(f.find_tensor("blk.1.ffn_up.weight")->type, DType::Q8_0);
  EXPECT_EQ(f.find_tensor("blk.1.ffn_gate.weight"), nullptr);
  auto dense = model::Model::load(base);
  auto lr = model::Model::load(std::move(f));
  EXPECT_EQ(lr->layer(1).lr_gate.rank(), 64);
  EXPECT_EQ(lr->layer(1).lr_up.rank(), 0);
  EXPECT_EQ(lr->layer(1).gate_up.packed, nullptr);
  EXPECT_EQ(lr->layer(0).gate_up.packed, dense->layer(0).gate_up.packed);
  const std::vector<int32_t> toks = prompt(10, dense->n_vocab(), 8);
  EXPECT_LT(max_rel_diff(all_logits(*lr, toks, pool), all_logits(*dense, toks, pool)), 2e-2);
}

// forward_batch (paged KV, two sequences, then a decode step) equals forward on a factorised model;
// and prefill at once equals token by token.
TEST(LowRankModel, BatchEqualsForward) {
  ThreadPool pool(2);
  quant::LowRankOptions o;
  o.rank = 12;
  auto m = model::Model::load(factorised(synth_file(DType::F32, "qwen2"), o));
  test::expect_batch_equals_forward(*m, pool);

  const std::vector<std::vector<int32_t>> seqs = {prompt(13, 256, 1)};
  const int64_t V = m->n_vocab();
  const std::vector<float> w0 = all_logits(*m, seqs[0], pool);
  auto row = [&](const std::vector<float>& l, int64_t r) {
    return std::vector<float>(l.begin() + r * V, l.begin() + (r + 1) * V);
  };

  // Token by token.
  model::InferenceState st1(m->hparams(), 16);
  std::vector<float> step;
  for (int32_t t : seqs[0]) m->forward(std::span(&t, 1), st1, step, false, pool);
  EXPECT_LT(max_rel_diff(step, row(w0, static_cast<int64_t>(seqs[0].size()) - 1)), 1e-5);
}

// Energy mode: each matrix gets the smallest rank reaching the energy; a rank whose factors would
// not be smaller keeps the matrix dense (and says why).
TEST(LowRankModel, EnergyModeAndKeptDense) {
  const io::ModelFile base = synth_file(DType::F32);
  quant::LowRankOptions o;
  o.energy = 0.5;
  quant::LowRankReport rep;
  factorised(base, o, &rep);
  ASSERT_EQ(rep.tensors.size(), 14u);
  for (const quant::LowRankTensorReport& t : rep.tensors) {
    EXPECT_GE(t.energy, 0.5) << t.name;
    EXPECT_GT(t.rank, 1) << t.name;
  }
  // 64x64 at r = 32: 32 * 128 = 64 * 64, not smaller; 32x64 (K, V): r = min(n_in, n_out);
  // 128x64 at r = 32: 6144 < 8192, smaller.
  quant::LowRankOptions r32;
  r32.rank = 32;
  io::ModelFile f = factorised(base, r32, &rep);
  for (const quant::LowRankTensorReport& t : rep.tensors) {
    const bool square = t.n_in == 64 && t.n_out == 64;
    const bool smaller = 32 * (t.n_in + t.n_out) < t.n_in * t.n_out;  // gate, up, down only
    EXPECT_EQ(t.factorised, smaller) << t.name;
    if (square) {
      EXPECT_NE(t.note.find("not be smaller"), std::string::npos);
    }
  }
  EXPECT_NE(f.find_tensor("blk.0.attn_q.weight"), nullptr);
  EXPECT_NE(f.find_tensor("blk.0.ffn_up.weight.lr_a"), nullptr);
  EXPECT_NO_THROW(model::Model::load(std::move(f)));
}

TEST(LowRankModel, BadOptionsAreErrors) {
  const io::ModelFile base = synth_file(DType::F32);
  auto run = [&](quant::LowRankOptions o) { factorised(base, o); };
  quant::LowRankOptions o;
  expect_error([&] { run(o); }, {"exactly one"});
  o.rank = 4;
  o.energy = 0.9;
  expect_error([&] { run(o); }, {"exactly one"});
  o = {};
  o.energy = 1.5;
  expect_error([&] { run(o); }, {"energy", "(0, 1]"});
  o = {};
  o.rank = 4;
  o.tensors = {"attn_x"};
  expect_error([&] { run(o); }, {"unknown tensor 'attn_x'"});
  o.tensors = {};
  o.layers = {2};
  expect_error([&] { run(o); }, {"layer 2", "2 layers"});
  o.layers = {};
  o.type = DType::Q8_0;
  expect_error([&] { run(o); }, {"f16 or f32"});
  // Everything already factorised: nothing left to select.
  o.type = DType::F16;
  const io::ModelFile once = factorised(base, o);
  expect_error([&] { factorised(once, o); }, {"no dense layer matrix"});
}

// A file with only one factor, factors of mismatched shapes, or a matrix stored both ways is
// refused with a one-line error naming the tensor; a GGUF round trip of a good one loads.
TEST(LowRankModel, MalformedFactorsAreRefused) {
  const io::ModelFile base = synth_file(DType::F32);
  quant::LowRankOptions o;
  o.rank = 8;
  const io::ModelFile good = factorised(base, o);
  auto without = [&](const std::string& name) {
    io::ModelFile f = good;
    std::erase_if(f.tensors, [&](const gguf::TensorInfo& t) { return t.name == name; });
    return f;
  };
  expect_error([&] { model::Model::load(without("blk.1.attn_k.weight.lr_b")); },
               {"blk.1.attn_k.weight", "has 'blk.1.attn_k.weight.lr_a' but not"});
  expect_error([&] { model::Model::load(without("blk.0.ffn_up.weight.lr_a")); },
               {"has 'blk.0.ffn_up.weight.lr_b' but not 'blk.0.ffn_up.weight.lr_a'"});
  {
    // B with rank 7 against A's rank 8.
    io::ModelFile f = good;
    for (gguf::TensorInfo& t : f.tensors)
      if (t.name == "blk.0.attn_v.weight.lr_b") {
        t.shape = {7, 32};
        t.nbytes = row_bytes(t.type, 7) * 32;
      }
    expect_error([&] { model::Model::load(std::move(f)); },
                 {"blk.0.attn_v.weight", "do not make a [64, 32] matrix"});
  }
  {
    // A whose rows are the wrong length.
    io::ModelFile f = good;
    for (gguf::TensorInfo& t : f.tensors)
      if (t.name == "blk.0.attn_q.weight.lr_a") {
        t.shape = {32, 8};
        t.nbytes = row_bytes(t.type, 32) * 8;
      }
    expect_error([&] { model::Model::load(std::move(f)); },
                 {"blk.0.attn_q.weight.lr_a", "expected [64, 8]"});
  }
  {
    // Dense and factorised at once.
    io::ModelFile f = good;
    f.tensors.push_back(*base.find_tensor("blk.0.attn_output.weight"));
    expect_error([&] { model::Model::load(std::move(f)); },
                 {"blk.0.attn_output.weight", "both dense and factorised"});
  }
  test::TempDir dir;
  io::write_gguf(good, dir.file("lr.gguf"));
  auto m = model::Model::load(io::load_model_file(dir.file("lr.gguf")));
  EXPECT_EQ(m->layer(1).lr_down.rank(), 8);
}
