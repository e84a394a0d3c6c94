// Batcher: coverage of the windows mode, token budgets, the loss mask, determinism, resuming from
// a saved cursor, and global-batch planning.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/testdata.h"
#include "core/error.h"
#include "train/batcher.h"
#include "train/rng.h"

namespace brisk {
namespace {

using train::Batch;
using train::Batcher;
using train::BatcherConfig;

// A shard whose token at stream position p is p (so a token tells where it came from), with
// documents of pseudo-random lengths; every 7th token is outside the loss mask when masked.
std::shared_ptr<const train::TokenDataset> make_shard(const test::TempDir& dir, int64_t n_tokens,
                                                      bool masked, int64_t max_doc = 90) {
  train::TokenShardWriter w(65536);
  train::SplitMix64 rng(3);
  int64_t p = 0;
  while (p < n_tokens) {
    const int64_t n = std::min<int64_t>(
        1 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(max_doc))), n_tokens - p);
    std::vector<int32_t> t;
    std::vector<uint8_t> m;
    for (int64_t i = 0; i < n; ++i, ++p) {
      t.push_back(static_cast<int32_t>(p));
      m.push_back(masked && p % 7 == 0 ? 0 : 1);
    }
    w.add(t, m);
  }
  const std::string path = dir.file(masked ? "m.bin" : "s.bin");
  w.write(path);
  return train::TokenDataset::open(path);
}

void check_batch_shape(const Batch& b) {
  ASSERT_EQ(b.tokens.size(), b.targets.size());
  ASSERT_GE(b.seq_start.size(), 2u);
  EXPECT_EQ(b.seq_start.front(), 0);
  EXPECT_EQ(b.seq_start.back(), b.n_tokens());
  for (size_t s = 0; s + 1 < b.seq_start.size(); ++s) EXPECT_LT(b.seq_start[s], b.seq_start[s + 1]);
}

TEST(Batcher, WindowsCoverEveryTokenOncePerEpoch) {
  test::TempDir dir;
  const auto ds = make_shard(dir, 2000, false);
  BatcherConfig cfg;
  cfg.seq_len = 16;
  cfg.batch_size = 5;
  cfg.seed = 11;
  Batcher b(ds, cfg);
  const int64_t n_windows = (2000 - 1) / 16;
  ASSERT_EQ(b.units_per_epoch(), n_windows);
  std::vector<int32_t> starts;
  std::map<int32_t, int> target_seen;
  while (static_cast<int64_t>(starts.size()) < n_windows) {
    const Batch batch = b.next();
    check_batch_shape(batch);
    ASSERT_EQ(batch.n_seqs(), 5);
    ASSERT_EQ(batch.n_tokens(), 5 * 16);
    for (int64_t s = 0; s < batch.n_seqs() && static_cast<int64_t>(starts.size()) < n_windows;
         ++s) {
      const auto b0 = static_cast<size_t>(batch.seq_start[static_cast<size_t>(s)]);
      starts.push_back(batch.tokens[b0]);
      for (size_t j = b0; j < b0 + 16; ++j) {
        EXPECT_EQ(batch.tokens[j], batch.tokens[b0] + static_cast<int32_t>(j - b0));  // contiguous
        EXPECT_EQ(batch.targets[j], batch.tokens[j] + 1);                             // shifted
        ++target_seen[batch.targets[j]];
      }
    }
  }
  // The first epoch: every window once, in a shuffled order.
  std::vector<int32_t> sorted = starts;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t k = 0; k < n_windows; ++k) EXPECT_EQ(sorted[static_cast<size_t>(k)], k * 16);
  EXPECT_NE(starts, sorted);
  // Every token from 1 to n_windows * 16 was a target exactly once.
  EXPECT_EQ(static_cast<int64_t>(target_seen.size()), n_windows * 16);
  for (const auto& [t, n] : target_seen) {
    EXPECT_EQ(n, 1) << t;
    EXPECT_GE(t, 1);
    EXPECT_LE(t, n_windows * 16);
  }
  EXPECT_EQ(b.epoch(), 1u);  // 124 windows, batches of 5: the last one ran into epoch 1
}

TEST(Batcher, OrderIsSeededAndReshuffledEachEpoch) {
  test::TempDir dir;
  const auto ds = make_shard(dir, 1000, false);
  BatcherConfig cfg;
  cfg.seq_len = 10;
  cfg.batch_size = 3;
  cfg.seed = 1;
  auto starts = [&](uint64_t seed, int n) {
    BatcherConfig c = cfg;
    c.seed = seed;
    Batcher b(ds, c);
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      const Batch batch = b.next();
      for (size_t s = 0; s + 1 < batch.seq_start.size(); ++s)
        out.push_back(batch.tokens[static_cast<size_t>(batch.seq_start[s])]);
    }
    return out;
  };
  const int per_epoch = 33;  // 99 windows / 3
  const auto a = starts(1, 2 * per_epoch);
  EXPECT_EQ(a, starts(1, 2 * per_epoch));  // same seed, same stream
  EXPECT_NE(a, starts(2, 2 * per_epoch));  // another seed, another order
  const std::vector<int32_t> e0(a.begin(), a.begin() + 99), e1(a.begin() + 99, a.end());
  EXPECT_NE(e0, e1);  // each epoch has its own permutation of the same windows
  std::vector<int32_t> s0 = e0, s1 = e1;
  std::sort(s0.begin(), s0.end());
  std::sort(s1.begin(), s1.end());
  EXPECT_EQ(s0, s1);
}

TEST(Batcher, WindowsFollowTheLossMask) {
  test::TempDir dir;
  const auto ds = make_shard(dir, 500, true);
  BatcherConfig cfg;
  cfg.seq_len = 20;
  cfg.batch_size = 4;
  Batcher b(ds, cfg);
  int64_t ignored = 0;
  for (int i = 0; i < 10; ++i) {
    const Batch batch = b.next();
    for (size_t j = 0; j < batch.tokens.size(); ++j) {
      const int32_t next = batch.tokens[j] + 1;
      if (next % 7 == 0) {
        EXPECT_EQ(batch.targets[j], Batch::kIgnore);
        ++ignored;
      } else {
        EXPECT_EQ(batch.targets[j], next);
      }
    }
  }
  EXPECT_GT(ignored, 0);
}

TEST(Batcher, TokenBudgetPacksDocumentPieces) {
  test::TempDir dir;
  const auto ds = make_shard(dir, 3000, true, 150);
  BatcherConfig cfg;
  cfg.mode = BatcherConfig::Mode::kTokenBudget;
  cfg.max_seq_len = 64;
  cfg.token_budget = 200;
  cfg.seed = 4;
  Batcher b(ds, cfg);
  // Expected pieces: documents split into runs of at most 65 tokens overlapping by one.
  std::set<std::pair<int32_t, int64_t>> want;  // (first token, inputs)
  for (int64_t d = 0; d < ds->n_docs(); ++d)
    for (int64_t s = 0; s + 1 < ds->doc_size(d); s += 64)
      want.insert({static_cast<int32_t>(ds->doc_begin(d) + s),
                   std::min<int64_t>(64, ds->doc_size(d) - s - 1)});
  ASSERT_EQ(b.units_per_epoch(), static_cast<int64_t>(want.size()));
  std::set<std::pair<int32_t, int64_t>> got;
  std::map<int32_t, int> targets;
  int64_t collected = 0, batches = 0;
  // The first units_per_epoch() sequences drawn are the first epoch (the last micro-batch may
  // continue into the next one).
  while (collected < b.units_per_epoch()) {
    const Batch batch = b.next();
    ++batches;
    check_batch_shape(batch);
    EXPECT_LE(batch.n_tokens(), 200);
    for (int64_t s = 0; s < batch.n_seqs() && collected < b.units_per_epoch(); ++s, ++collected) {
      const auto b0 = static_cast<size_t>(batch.seq_start[static_cast<size_t>(s)]);
      const int64_t len =
          batch.seq_start[static_cast<size_t>(s) + 1] - batch.seq_start[static_cast<size_t>(s)];
      EXPECT_LE(len, 64);
      got.insert({batch.tokens[b0], len});
      for (size_t j = b0; j < b0 + static_cast<size_t>(len); ++j) {
        const int32_t next = batch.tokens[j] + 1;
        EXPECT_EQ(batch.targets[j], next % 7 == 0 ? Batch::kIgnore : next);
        ++targets[next];
      }
    }
  }
  EXPECT_EQ(got, want);
  // Packing: on average well over one sequence per micro-batch.
  EXPECT_GT(collected, batches * 3 / 2);
  // Every token but each document's first is predicted exactly once per epoch.
  for (int64_t d = 0; d < ds->n_docs(); ++d)
    for (int64_t p = ds->doc_begin(d) + 1; p < ds->doc_begin(d) + ds->doc_size(d); ++p)
      EXPECT_EQ(targets[static_cast<int32_t>(p)], 1) << p;
}

TEST(Batcher, RestoredStateDrawsTheSameBatches) {
  test::TempDir dir;
  const auto ds = make_shard(dir, 2500, true, 120);
  for (const auto mode : {BatcherConfig::Mode::kWindows, BatcherConfig::Mode::kTokenBudget}) {
    BatcherConfig cfg;
    cfg.mode = mode;
    cfg.seq_len = 32;
    cfg.batch_size = 3;
    cfg.max_seq_len = 50;
    cfg.token_budget = 128;
    cfg.seed = 77;
    Batcher a(ds, cfg);
    for (int i = 0; i < 37; ++i) a.next();  // K batches (past an epoch boundary in windows mode)
    const std::vector<uint8_t> saved = a.state().to_bytes();
    ASSERT_EQ(saved.size(), train::BatcherState::kBytes);
    std::vector<Batch> more;
    for (int i = 0; i < 25; ++i) more.push_back(a.next());

    BatcherConfig other = cfg;
    other.seed = 5;  // the state carries the seed
    Batcher b(ds, other);
    b.next();
    b.restore(train::BatcherState::from_bytes(saved));
    for (int i = 0; i < 25; ++i) {
      const Batch x = b.next();
      EXPECT_EQ(x.tokens, more[static_cast<size_t>(i)].tokens) << i;
      EXPECT_EQ(x.targets, more[static_cast<size_t>(i)].targets) << i;
      EXPECT_EQ(x.seq_start, more[static_cast<size_t>(i)].seq_start) << i;
    }
    EXPECT_EQ(a.state(), b.state());
  }
}

TEST(Batcher, StateErrors) {
  test::TempDir dir;
  const auto ds = make_shard(dir, 1000, false);
  BatcherConfig cfg;
  cfg.seq_len = 16;
  Batcher a(ds, cfg);
  std::vector<uint8_t> bytes = a.state().to_bytes();
  EXPECT_THROW(train::BatcherState::from_bytes(std::span(bytes).first(10)), Error);
  bytes[0] ^= 1;
  EXPECT_THROW(train::BatcherState::from_bytes(bytes), Error);
  // A state from another configuration (or dataset) is refused.
  BatcherConfig longer = cfg;
  longer.seq_len = 32;
  Batcher c(ds, longer);
  EXPECT_THROW(c.restore(a.state()), Error);
  train::BatcherState past = a.state();
  past.position = 1u << 20;
  EXPECT_THROW(a.restore(past), Error);
}

TEST(Batcher, PlansGlobalBatches) {
  test::TempDir dir;
  const auto ds = make_shard(dir, 4000, false, 200);
  BatcherConfig cfg;
  cfg.seq_len = 50;
  cfg.batch_size = 2;  // 100 tokens per micro-batch
  Batcher w(ds, cfg);
  EXPECT_EQ(w.plan_global_batch(340), 3);
  EXPECT_EQ(w.plan_global_batch(360), 4);
  EXPECT_EQ(w.plan_global_batch(10), 1);
  EXPECT_EQ(w.plan_global_batch(0), 1);

  cfg.mode = BatcherConfig::Mode::kTokenBudget;
  cfg.max_seq_len = 100;
  cfg.token_budget = 256;
  Batcher b(ds, cfg);
  for (int step = 0; step < 5; ++step) {
    const int64_t n = b.plan_global_batch(1000);
    const auto before = b.state();
    // The planned micro-batches total closer to 1000 than one more or one fewer would.
    std::vector<int64_t> sizes;
    for (int64_t i = 0; i < n + 1; ++i) sizes.push_back(b.next().n_tokens());
    int64_t total = 0;
    for (int64_t i = 0; i < n; ++i) total += sizes[static_cast<size_t>(i)];
    EXPECT_LE(std::abs(total - 1000), std::abs(total + sizes.back() - 1000));
    if (n > 1) {
      EXPECT_LE(std::abs(total - 1000), std::abs(total - sizes[static_cast<size_t>(n - 1)] - 1000));
    }
    EXPECT_LE(total, 1000 + 256);
    // Planning does not move the cursor; step on by exactly n.
    b.restore(before);
    for (int64_t i = 0; i < n; ++i) b.next();
  }
}

TEST(Batcher, RejectsImpossibleSettings) {
  test::TempDir dir;
  const auto ds = make_shard(dir, 100, false);
  BatcherConfig cfg;
  cfg.seq_len = 100;  // needs 101 tokens
  EXPECT_THROW(Batcher(ds, cfg), Error);
  cfg.seq_len = 0;
  EXPECT_THROW(Batcher(ds, cfg), Error);
  cfg = {};
  cfg.mode = BatcherConfig::Mode::kTokenBudget;
  cfg.max_seq_len = 64;
  cfg.token_budget = 32;
  EXPECT_THROW(Batcher(ds, cfg), Error);
}

}  // namespace
}  // namespace brisk
