// BlockPool and KvCacheManager without a model: LRU order, reference counts, the prefix cache and
// its collision safety, copy-on-write after fork, all-or-nothing allocation.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "core/error.h"
#include "kv/block_pool.h"
#include "kv/kv_cache_manager.h"

using namespace brisk;
using namespace brisk::kv;

namespace {

std::vector<int32_t> iota_tokens(int n, int32_t first = 100) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

std::vector<BlockId> table_of(const KvCacheManager& m, uint64_t req) {
  const auto t = m.block_table(req);
  return {t.begin(), t.end()};
}

// Runs one request's tokens through the manager as a whole prefill: allocate, compute, commit.
void prefill(KvCacheManager& m, uint64_t req, const std::vector<int32_t>& tokens) {
  std::vector<BlockCopy> copies;
  const int64_t matched = m.match_prefix(req, tokens);
  ASSERT_TRUE(m.allocate_slots(req, matched, static_cast<int64_t>(tokens.size()), copies));
  EXPECT_TRUE(copies.empty());
  m.commit(req, tokens, static_cast<int64_t>(tokens.size()));
  m.check_invariants();
}

}  // namespace

TEST(BlockPool, AllocatesInIdOrderThenEvictsLeastRecentlyReleased) {
  BlockPool pool(4);
  EXPECT_EQ(pool.n_blocks(), 4);
  EXPECT_EQ(pool.n_free(), 4);
  for (BlockId want = 0; want < 4; ++want) EXPECT_EQ(pool.allocate(), want);
  EXPECT_EQ(pool.n_free(), 0);
  EXPECT_EQ(pool.allocate(), -1);
  pool.release(2);
  pool.release(0);
  pool.release(3);
  pool.check_invariants();
  EXPECT_EQ(pool.n_free(), 3);
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_EQ(pool.allocate(), 0);
  EXPECT_EQ(pool.allocate(), 3);
  EXPECT_EQ(pool.allocate(), -1);
  pool.check_invariants();
}

TEST(BlockPool, ReferenceCounting) {
  BlockPool pool(3);
  const BlockId b = pool.allocate();
  EXPECT_EQ(pool.ref_count(b), 1);
  pool.acquire(b);
  EXPECT_EQ(pool.ref_count(b), 2);
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.n_free(), 2);  // still held
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 0);
  EXPECT_EQ(pool.n_free(), 3);
  pool.check_invariants();
  EXPECT_THROW(pool.release(b), Error);  // a double free is refused, state unchanged
  EXPECT_EQ(pool.n_free(), 3);
  pool.check_invariants();
  EXPECT_THROW(pool.release(7), Error);
  EXPECT_THROW(pool.acquire(-1), Error);
  EXPECT_THROW(pool.ref_count(3), Error);
  EXPECT_THROW(BlockPool(0), Error);
}

TEST(BlockPool, AcquireTakesAFreeBlockOffTheList) {
  BlockPool pool(3);
  for (int i = 0; i < 3; ++i) pool.allocate();
  pool.release(0);
  pool.release(1);
  pool.release(2);
  pool.acquire(1);  // e.g. a prefix-cache hit revives it
  EXPECT_EQ(pool.n_free(), 2);
  pool.check_invariants();
  EXPECT_EQ(pool.allocate(), 0);
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_EQ(pool.allocate(), -1);
}

TEST(BlockPool, CachedBlockStaysFindableUntilEvicted) {
  BlockPool pool(3);
  const std::vector<int32_t> toks = {5, 6, 7, 8};
  const BlockHash h = hash_block(0, toks);
  const BlockId b = pool.allocate();
  EXPECT_EQ(pool.lookup(h, toks), -1);
  pool.set_cached(b, h, toks);
  EXPECT_EQ(pool.lookup(h, toks), b);
  EXPECT_TRUE(pool.is_cached(b));
  pool.release(b);  // free but still cached: a later request may revive it
  EXPECT_EQ(pool.lookup(h, toks), b);
  EXPECT_EQ(pool.n_free(), 3);
  pool.check_invariants();
  // The two never-used blocks come first (b was released last, at the tail), then b is evicted.
  EXPECT_NE(pool.allocate(), b);
  EXPECT_NE(pool.allocate(), b);
  EXPECT_EQ(pool.lookup(h, toks), b);
  EXPECT_EQ(pool.allocate(), b);
  EXPECT_EQ(pool.lookup(h, toks), -1);
  EXPECT_FALSE(pool.is_cached(b));
  EXPECT_EQ(pool.n_cached(), 0);
  pool.check_invariants();
}

TEST(BlockPool, HashCollisionWithDifferentTokensIsNeverReturned) {
  BlockPool pool(4);
  const BlockHash h = 42;  // the same hash forced onto two different blocks of tokens
  const std::vector<int32_t> a = {1, 2, 3};
  const std::vector<int32_t> b = {1, 2, 4};
  const BlockId ba = pool.allocate();
  const BlockId bb = pool.allocate();
  pool.set_cached(ba, h, a);
  EXPECT_EQ(pool.lookup(h, b), -1);
  EXPECT_EQ(pool.lookup(h, std::vector<int32_t>{1, 2}), -1);  // a prefix is not a match either
  pool.set_cached(bb, h, b);                                  // first one wins; bb stays anonymous
  EXPECT_FALSE(pool.is_cached(bb));
  EXPECT_EQ(pool.lookup(h, a), ba);
  EXPECT_EQ(pool.lookup(h, b), -1);
  pool.check_invariants();
  // Re-tagging a block drops its old identity.
  pool.set_cached(ba, 43, b);
  EXPECT_EQ(pool.lookup(h, a), -1);
  EXPECT_EQ(pool.lookup(43, b), ba);
  pool.check_invariants();
}

TEST(BlockPool, HashIsChainedAndOrderSensitive) {
  const std::vector<int32_t> x = {1, 2, 3, 4};
  const std::vector<int32_t> y = {4, 3, 2, 1};
  EXPECT_EQ(hash_block(0, x), hash_block(0, x));
  EXPECT_NE(hash_block(0, x), hash_block(0, y));
  EXPECT_NE(hash_block(0, x), hash_block(1, x));
  EXPECT_NE(hash_block(hash_block(0, x), y), hash_block(hash_block(0, y), y));
  EXPECT_NE(hash_block(0, std::vector<int32_t>{0}), hash_block(0, std::vector<int32_t>{0, 0}));
}

TEST(KvCacheManager, ConfigIsValidated) {
  EXPECT_THROW(KvCacheManager(KvCacheConfig{0, 16, true}), Error);
  EXPECT_THROW(KvCacheManager(KvCacheConfig{4, 0, true}), Error);
  KvCacheManager m(KvCacheConfig{4, 16, true});
  EXPECT_EQ(m.blocks_needed(0), 0);
  EXPECT_EQ(m.blocks_needed(1), 1);
  EXPECT_EQ(m.blocks_needed(16), 1);
  EXPECT_EQ(m.blocks_needed(17), 2);
}

TEST(KvCacheManager, PrefixMatchLeavesAtLeastOneTokenToCompute) {
  KvCacheManager m(KvCacheConfig{16, 4, true});
  const auto toks = iota_tokens(12);
  prefill(m, 1, toks);  // three full blocks, all cached
  EXPECT_EQ(m.pool().n_cached(), 3);
  EXPECT_EQ(m.prefix_queries(), 12u);
  EXPECT_EQ(m.prefix_hits(), 0u);

  // Same 12 tokens: floor(11 / 4) = 2 blocks at most, the last block is recomputed.
  EXPECT_EQ(m.match_prefix(2, toks), 8);
  const auto t1 = table_of(m, 1);
  EXPECT_EQ(table_of(m, 2), std::vector<BlockId>(t1.begin(), t1.begin() + 2));
  EXPECT_EQ(m.pool().ref_count(t1[0]), 2);
  // One more token: all three blocks.
  auto longer = toks;
  longer.push_back(7);
  EXPECT_EQ(m.match_prefix(3, longer), 12);
  // Shorter: 8 tokens -> floor(7 / 4) = 1 block.
  EXPECT_EQ(m.match_prefix(4, std::vector<int32_t>(toks.begin(), toks.begin() + 8)), 4);
  // A single token never matches.
  EXPECT_EQ(m.match_prefix(5, std::vector<int32_t>{toks[0]}), 0);
  EXPECT_EQ(m.prefix_queries(), 12u + 12u + 13u + 8u + 1u);
  EXPECT_EQ(m.prefix_hits(), 8u + 12u + 4u);
  m.check_invariants();
  // A table must be empty to match into.
  EXPECT_THROW(m.match_prefix(2, toks), Error);
}

TEST(KvCacheManager, PrefixMatchStopsAtTheFirstDifferentBlock) {
  KvCacheManager m(KvCacheConfig{16, 4, true});
  const auto toks = iota_tokens(12);
  prefill(m, 1, toks);
  auto second_differs = toks;
  second_differs[5] = 0;
  EXPECT_EQ(m.match_prefix(2, second_differs), 4);
  // Chained hashes: the same third block after a different first block is not a hit.
  auto first_differs = toks;
  first_differs[0] = 0;
  first_differs.push_back(1);
  EXPECT_EQ(m.match_prefix(3, first_differs), 0);
  EXPECT_TRUE(m.block_table(3).empty());
  m.check_invariants();
}

TEST(KvCacheManager, PrefixCachingOff) {
  KvCacheManager m(KvCacheConfig{16, 4, false});
  const auto toks = iota_tokens(12);
  prefill(m, 1, toks);
  EXPECT_EQ(m.pool().n_cached(), 0);
  EXPECT_EQ(m.match_prefix(2, toks), 0);
  EXPECT_EQ(m.prefix_queries(), 0u);
  m.check_invariants();
}

TEST(KvCacheManager, FreedBlocksKeepTheirPrefixAndTheHeadSurvivesLongest) {
  KvCacheManager m(KvCacheConfig{4, 4, true});
  const auto toks = iota_tokens(12);
  prefill(m, 1, toks);
  const auto t1 = table_of(m, 1);
  m.free(1);
  EXPECT_EQ(m.n_free_blocks(), 4);
  m.check_invariants();
  // The free list is now: the unused block, then 1's blocks tail first.
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.allocate_slots(2, 0, 4, copies));   // takes the unused block
  EXPECT_EQ(m.match_prefix(3, toks), 8);            // blocks 0 and 1 of request 1 are still there
  ASSERT_TRUE(m.allocate_slots(3, 8, 12, copies));  // evicts t1[2], the tail
  EXPECT_EQ(table_of(m, 3), (std::vector<BlockId>{t1[0], t1[1], t1[2]}));
  EXPECT_TRUE(copies.empty());
  m.check_invariants();
  m.free(2);
  m.free(3);
  m.free(99);  // unknown: no-op
  EXPECT_EQ(m.n_free_blocks(), 4);
  m.check_invariants();
}

TEST(KvCacheManager, CopyOnWriteAfterForkOnceThenInPlace) {
  KvCacheManager m(KvCacheConfig{8, 4, true});
  const auto toks = iota_tokens(6);  // one full block, one partial
  prefill(m, 1, toks);
  m.fork(1, 2);
  EXPECT_EQ(table_of(m, 1), table_of(m, 2));
  const auto shared = table_of(m, 1);
  EXPECT_EQ(m.pool().ref_count(shared[0]), 2);
  EXPECT_EQ(m.pool().ref_count(shared[1]), 2);
  m.check_invariants();

  // The child writes position 6 (in the shared partial block): it gets a copy.
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.allocate_slots(2, 6, 7, copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].src, shared[1]);
  const auto child = table_of(m, 2);
  EXPECT_EQ(copies[0].dst, child[1]);
  EXPECT_EQ(child[0], shared[0]);  // the full block stays shared
  EXPECT_NE(child[1], shared[1]);
  EXPECT_EQ(m.pool().ref_count(shared[1]), 1);
  // The parent, now the last sharer, writes in place.
  copies.clear();
  ASSERT_TRUE(m.allocate_slots(1, 6, 7, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(table_of(m, 1), shared);
  m.check_invariants();
  // Writing across into new blocks copies nothing more.
  ASSERT_TRUE(m.allocate_slots(2, 7, 10, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(m.block_table(2).size(), 3u);
  m.free(1);
  m.free(2);
  EXPECT_EQ(m.n_free_blocks(), 8);
  m.check_invariants();
}

TEST(KvCacheManager, AllocationIsAllOrNothing) {
  KvCacheManager m(KvCacheConfig{4, 4, true});
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.allocate_slots(1, 0, 10, copies));  // 3 blocks
  EXPECT_EQ(m.n_free_blocks(), 1);
  EXPECT_FALSE(m.allocate_slots(2, 0, 8, copies));  // needs 2
  EXPECT_EQ(m.n_free_blocks(), 1);
  EXPECT_TRUE(m.block_table(2).empty());
  m.check_invariants();
  // After a fork, writing into the shared partial block and one new block needs 2: refused whole.
  const auto toks = iota_tokens(10);
  m.commit(1, toks, 10);
  m.fork(1, 3);
  EXPECT_FALSE(m.allocate_slots(3, 10, 13, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(table_of(m, 3), table_of(m, 1));
  m.check_invariants();
  // Writing only into the shared block needs 1: fits.
  EXPECT_TRUE(m.allocate_slots(3, 10, 12, copies));
  EXPECT_EQ(copies.size(), 1u);
  EXPECT_EQ(m.n_free_blocks(), 0);
  m.check_invariants();
  // The computed part must be covered.
  EXPECT_THROW(m.allocate_slots(4, 4, 8, copies), Error);
  m.free(1);
  EXPECT_FALSE(m.has_request(4));
  m.free(2);
  m.free(3);
  EXPECT_EQ(m.n_free_blocks(), 4);
  m.check_invariants();
}
