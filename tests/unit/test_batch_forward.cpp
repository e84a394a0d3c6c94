// Model::forward_batch (continuous batching over a paged KV cache) against Model::forward (one
// sequence, contiguous f32 cache): the same logits for one sequence, batch invariance (a
// sequence's logits do not depend on what else is in the batch, bit for bit), shuffled block
// tables, and the accuracy cost of f16 and q8_0 K/V.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/synth_model.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "model/synth.h"

using namespace brisk;

namespace {

std::unique_ptr<model::Model> tiny_model(DType type, ThreadPool&) {
  return test::load_synth_model(256, 512, 512, type).m;  // k-quants need multiples of 256
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return t;
}

// Logits of every position of `tokens` fed one chunk at a time through forward().
std::vector<std::vector<float>> reference_logits(const model::Model& m,
                                                 const std::vector<int32_t>& tokens,
                                                 ThreadPool& pool) {
  model::InferenceState st(m.hparams(), static_cast<int64_t>(tokens.size()));
  std::vector<float> logits;
  m.forward(tokens, st, logits, true, pool);
  std::vector<std::vector<float>> out;
  const size_t V = static_cast<size_t>(m.n_vocab());
  for (size_t t = 0; t < tokens.size(); ++t)
    out.emplace_back(logits.begin() + static_cast<std::ptrdiff_t>(t * V),
                     logits.begin() + static_cast<std::ptrdiff_t>((t + 1) * V));
  return out;
}

double max_rel_diff(std::span<const float> a, std::span<const float> b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return err / scale;
}

// A sequence being served: its tokens, its block table (shuffled physical blocks), progress.
struct Seq {
  std::vector<int32_t> tokens;
  std::vector<int32_t> table;
  int64_t done = 0;
};

// Runs several sequences together: each step every unfinished sequence contributes a chunk of
// `chunk` tokens (the last chunk may be shorter). Returns per sequence the logits of the last
// token of each chunk, keyed by that token's position.
std::vector<std::vector<std::pair<int64_t, std::vector<float>>>> run_batched(
    const model::Model& m, std::vector<Seq> seqs, model::PagedKvCache& kv,
    const std::vector<int64_t>& chunks, ThreadPool& pool) {
  model::InferenceState st(m.hparams(), 0);
  std::vector<std::vector<std::pair<int64_t, std::vector<float>>>> out(seqs.size());
  std::vector<float> logits;
  const size_t V = static_cast<size_t>(m.n_vocab());
  for (;;) {
    std::vector<int32_t> batch;
    std::vector<model::BatchSeq> bs;
    std::vector<size_t> which;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Seq& s = seqs[i];
      const int64_t left = static_cast<int64_t>(s.tokens.size()) - s.done;
      if (left == 0) continue;
      const int64_t n = std::min(left, chunks[i]);
      model::BatchSeq b;
      b.begin = static_cast<int64_t>(batch.size());
      b.n = n;
      b.pos0 = s.done;
      b.block_table = s.table;
      batch.insert(batch.end(), s.tokens.begin() + s.done, s.tokens.begin() + s.done + n);
      bs.push_back(b);
      which.push_back(i);
    }
    if (bs.empty()) break;
    m.forward_batch(batch, bs, kv, st, logits, pool);
    for (size_t j = 0; j < bs.size(); ++j) {
      Seq& s = seqs[which[j]];
      s.done += bs[j].n;
      out[which[j]].emplace_back(
          s.done - 1,
          std::vector<float>(logits.begin() + static_cast<std::ptrdiff_t>(j * V),
                             logits.begin() + static_cast<std::ptrdiff_t>((j + 1) * V)));
    }
  }
  return out;
}

// Hands out physical blocks in a shuffled order so tables are never the identity.
std::vector<int32_t> shuffled_blocks(int64_t n, uint32_t seed) {
  std::vector<int32_t> b(static_cast<size_t>(n));
  std::iota(b.begin(), b.end(), 0);
  std::shuffle(b.begin(), b.end(), std::mt19937(seed));
  return b;
}

std::vector<Seq> make_seqs(const model::Model& m, const std::vector<int64_t>& lens,
                           int32_t block_size, int64_t n_blocks) {
  const std::vector<int32_t> phys = shuffled_blocks(n_blocks, 7);
  size_t next = 0;
  std::vector<Seq> seqs;
  for (size_t i = 0; i < lens.size(); ++i) {
    Seq s;
    s.tokens = random_tokens(lens[i], m.n_vocab(), static_cast<uint32_t>(100 + i));
    const int64_t nb = (lens[i] + block_size - 1) / block_size;
    for (int64_t b = 0; b < nb; ++b) s.table.push_back(phys.at(next++));
    seqs.push_back(std::move(s));
  }
  return seqs;
}

}  // namespace

TEST(BatchForward, PagedF32MatchesContiguousForward) {
  ThreadPool pool(2);
  auto m = tiny_model(DType::Q8_0, pool);
  model::PagedKvCache kv(m->hparams(), 64, 16, DType::F32);
  // Three sequences of different lengths, prompts in chunks of 7, 16 and 1 (pure decoding).
  const std::vector<int64_t> lens = {40, 33, 9};
  std::vector<Seq> seqs = make_seqs(*m, lens, 16, 64);
  const auto got = run_batched(*m, seqs, kv, {7, 16, 1}, pool);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto want = reference_logits(*m, seqs[i].tokens, pool);
    for (const auto& [pos, l] : got[i]) {
      SCOPED_TRACE("seq " + std::to_string(i) + " pos " + std::to_string(pos));
      EXPECT_LE(max_rel_diff(l, want[static_cast<size_t>(pos)]), 1e-5);
    }
  }
}

// The batch a sequence shares a step with must not change its logits at all: the matrix products
// treat token rows independently and attention runs per sequence.
TEST(BatchForward, BatchInvariantBitForBit) {
  ThreadPool pool(2);
  for (DType wt : {DType::Q4_0, DType::Q4_K, DType::F16}) {
    SCOPED_TRACE(dtype_name(wt));
    auto m = tiny_model(wt, pool);
    const std::vector<int64_t> lens = {37, 20, 5, 64};
    const std::vector<Seq> seqs = make_seqs(*m, lens, 16, 64);
    model::PagedKvCache kv_all(m->hparams(), 64, 16, DType::F16);
    const auto together = run_batched(*m, seqs, kv_all, {5, 1, 2, 64}, pool);
    for (size_t i = 0; i < seqs.size(); ++i) {
      model::PagedKvCache kv_one(m->hparams(), 64, 16, DType::F16);
      std::vector<Seq> alone = {seqs[i]};
      const auto single =
          run_batched(*m, alone, kv_one, {std::vector<int64_t>{5, 1, 2, 64}[i]}, pool);
      ASSERT_EQ(single[0].size(), together[i].size());
      for (size_t k = 0; k < single[0].size(); ++k) {
        EXPECT_EQ(single[0][k].first, together[i][k].first);
        EXPECT_TRUE(single[0][k].second == together[i][k].second)
            << "seq " << i << " step " << k << " differs by "
            << max_rel_diff(single[0][k].second, together[i][k].second);
      }
    }
  }
}

// The accuracy cost of storing K/V in f16 or q8_0 (relative to the f32 cache's logits).
TEST(BatchForward, ReducedPrecisionKvStaysClose) {
  ThreadPool pool(2);
  auto m = tiny_model(DType::F16, pool);
  const std::vector<int64_t> lens = {200};
  const std::vector<Seq> seqs = make_seqs(*m, lens, 16, 16);
  model::PagedKvCache f32(m->hparams(), 16, 16, DType::F32);
  const auto want = run_batched(*m, seqs, f32, {1}, pool);
  for (auto [type, tol] : {std::pair{DType::F16, 2e-3}, std::pair{DType::Q8_0, 2e-2}}) {
    model::PagedKvCache kv(m->hparams(), 16, 16, type);
    const auto got = run_batched(*m, seqs, kv, {1}, pool);
    double worst = 0;
    for (size_t k = 0; k < got[0].size(); ++k)
      worst = std::max(worst, max_rel_diff(got[0][k].second, want[0][k].second));
    RecordProperty(std::string("max_rel_diff_") + dtype_name(type), std::to_string(worst));
    std::printf("KV %s: max relative logit difference %.3g over %zu positions\n", dtype_name(type),
                worst, got[0].size());
    EXPECT_LE(worst, tol) << dtype_name(type);
    EXPECT_GT(worst, 0.0) << dtype_name(type) << " should not be lossless";
  }
}

TEST(BatchForward, BadBatchesAreRefused) {
  ThreadPool pool(1);
  auto m = tiny_model(DType::Q8_0, pool);
  model::PagedKvCache kv(m->hparams(), 4, 16, DType::F16);
  model::InferenceState st(m->hparams(), 0);
  std::vector<float> logits;
  const std::vector<int32_t> toks = {1, 2, 3};
  const std::vector<int32_t> table = {2};
  model::BatchSeq b{0, 3, 14, table, true};  // positions 14..16 need two blocks
  EXPECT_THROW(m->forward_batch(toks, std::span(&b, 1), kv, st, logits, pool), Error);
  b = model::BatchSeq{1, 2, 0, table, true};  // does not start at 0
  EXPECT_THROW(m->forward_batch(toks, std::span(&b, 1), kv, st, logits, pool), Error);
  EXPECT_THROW(model::PagedKvCache(m->hparams(), 4, 16, DType::Q4_0), Error);
}
