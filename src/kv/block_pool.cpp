#include "kv/block_pool.h"

#include <algorithm>

#include "core/error.h"

namespace brisk::kv {

BlockPool::BlockPool(int32_t n_blocks) {
  check(n_blocks > 0, "kv: n_blocks must be > 0, got ", n_blocks);
  blocks_.resize(static_cast<size_t>(n_blocks));
  // Initially every block is free, in id order.
  for (BlockId b = 0; b < n_blocks; ++b) push_tail(b);
  by_hash_.reserve(static_cast<size_t>(n_blocks));
}

void BlockPool::check_id(BlockId b, const char* what) const {
  check(b >= 0 && b < n_blocks(), "kv: ", what, ": block id ", b, " out of range [0, ", n_blocks(),
        ")");
}

void BlockPool::push_tail(BlockId b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  blk.prev = tail_;
  blk.next = -1;
  if (tail_ >= 0)
    blocks_[static_cast<size_t>(tail_)].next = b;
  else
    head_ = b;
  tail_ = b;
  blk.in_free = true;
  ++n_free_;
}

void BlockPool::unlink(BlockId b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.prev >= 0)
    blocks_[static_cast<size_t>(blk.prev)].next = blk.next;
  else
    head_ = blk.next;
  if (blk.next >= 0)
    blocks_[static_cast<size_t>(blk.next)].prev = blk.prev;
  else
    tail_ = blk.prev;
  blk.prev = blk.next = -1;
  blk.in_free = false;
  --n_free_;
}

void BlockPool::drop_identity(BlockId b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (!blk.cached) return;
  by_hash_.erase(blk.hash);  // the map holds blk.hash -> b (invariant)
  blk.cached = false;
  blk.hash = 0;
  blk.tokens.clear();
}

BlockId BlockPool::allocate() {
  if (head_ < 0) return -1;
  const BlockId b = head_;
  unlink(b);
  drop_identity(b);  // eviction: its old contents are about to be overwritten
  blocks_[static_cast<size_t>(b)].ref = 1;
  return b;
}

void BlockPool::acquire(BlockId b) {
  check_id(b, "acquire");
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.ref == 0) unlink(b);
  ++blk.ref;
}

void BlockPool::release(BlockId b) {
  check_id(b, "release");
  Block& blk = blocks_[static_cast<size_t>(b)];
  check(blk.ref > 0, "kv: release of block ", b, " whose reference count is already 0");
  if (--blk.ref == 0) push_tail(b);
}

int32_t BlockPool::ref_count(BlockId b) const {
  check_id(b, "ref_count");
  return blocks_[static_cast<size_t>(b)].ref;
}

bool BlockPool::is_cached(BlockId b) const {
  check_id(b, "is_cached");
  return blocks_[static_cast<size_t>(b)].cached;
}

void BlockPool::set_cached(BlockId b, BlockHash h, std::span<const int32_t> tokens) {
  check_id(b, "set_cached");
  check(!tokens.empty(), "kv: set_cached of block ", b, " with no tokens");
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.cached && blk.hash == h) return;
  drop_identity(b);
  if (by_hash_.contains(h)) return;  // another block already answers for h
  by_hash_.emplace(h, b);
  blk.cached = true;
  blk.hash = h;
  blk.tokens.assign(tokens.begin(), tokens.end());
}

BlockId BlockPool::lookup(BlockHash h, std::span<const int32_t> tokens) const {
  const auto it = by_hash_.find(h);
  if (it == by_hash_.end()) return -1;
  const Block& blk = blocks_[static_cast<size_t>(it->second)];
  if (!std::equal(blk.tokens.begin(), blk.tokens.end(), tokens.begin(), tokens.end())) return -1;
  return it->second;
}

void BlockPool::check_invariants() const {
  int32_t listed = 0;
  BlockId prev = -1;
  for (BlockId b = head_; b >= 0; b = blocks_[static_cast<size_t>(b)].next) {
    check(b < n_blocks(), "kv: free list holds bad id ", b);
    check(++listed <= n_blocks(), "kv: free list has a cycle");
    const Block& blk = blocks_[static_cast<size_t>(b)];
    check(blk.in_free && blk.ref == 0, "kv: block ", b, " in the free list with ref ", blk.ref);
    check(blk.prev == prev, "kv: free list back link of block ", b, " is ", blk.prev, ", not ",
          prev);
    prev = b;
  }
  check(prev == tail_, "kv: free list tail is ", tail_, ", the walk ends at ", prev);
  check(listed == n_free_, "kv: free list has ", listed, " blocks, n_free says ", n_free_);
  int32_t zero = 0;
  int64_t cached = 0;
  for (BlockId b = 0; b < n_blocks(); ++b) {
    const Block& blk = blocks_[static_cast<size_t>(b)];
    check(blk.ref >= 0, "kv: block ", b, " has negative ref ", blk.ref);
    check(blk.in_free == (blk.ref == 0), "kv: block ", b, " ref ", blk.ref, " but in_free ",
          blk.in_free);
    zero += blk.ref == 0;
    if (blk.cached) {
      ++cached;
      const auto it = by_hash_.find(blk.hash);
      check(it != by_hash_.end() && it->second == b, "kv: cached block ", b, " missing from map");
      check(!blk.tokens.empty(), "kv: cached block ", b, " has no tokens");
    }
  }
  check(zero == n_free_, "kv: ", zero, " blocks have ref 0, n_free says ", n_free_);
  check(cached == static_cast<int64_t>(by_hash_.size()), "kv: ", cached, " cached blocks, map has ",
        by_hash_.size());
}

namespace {

// The splitmix64 finaliser: a cheap bijective mix with full avalanche.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

BlockHash hash_block(BlockHash prev, std::span<const int32_t> tokens) {
  uint64_t h = mix64(prev ^ 0x9e3779b97f4a7c15ULL) + tokens.size();
  for (const int32_t t : tokens) h = mix64(h + 0x9e3779b97f4a7c15ULL + static_cast<uint32_t>(t));
  return h;
}

}  // namespace brisk::kv
