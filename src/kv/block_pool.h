// BlockPool: the fixed set of KV-cache blocks, without any tensor. It owns only bookkeeping; the
// model runner owns the memory that block ids index.
//
// Structure: per block a reference count, the links of an intrusive doubly linked free list and an
// optional prefix-cache identity (a chained hash plus the block's token ids); one hash -> block
// map. Blocks with ref 0 sit in the free list in LRU order: head = evicted first, release() appends
// at the tail. A cached block keeps its identity while it is free, so a later request can find and
// revive it (acquire() takes it off the free list); only allocate() reusing it drops the identity
// (eviction). Every operation is O(1), apart from set_cached/lookup which are O(block_size) for
// the token copy/compare.
//
// Invariants (check_invariants):
//   - a block is in the free list iff its ref count is 0; n_free() is the list length;
//   - the map holds h -> b iff block b is cached under hash h (one block per hash: when two blocks
//     carry the same hash only the first registered is cached, the other stays anonymous).
#pragma once
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace brisk::kv {

using BlockId = int32_t;
using BlockHash = uint64_t;

class BlockPool {
 public:
  explicit BlockPool(int32_t n_blocks);

  int32_t n_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  // Blocks with ref 0 (cached or not): what allocate() can hand out.
  int32_t n_free() const { return n_free_; }

  // Takes the LRU head, drops its cache identity, sets ref = 1. Returns -1 when none is free.
  BlockId allocate();
  // ref++; a block at ref 0 leaves the free list (a prefix-cache hit revives it this way).
  void acquire(BlockId b);
  // ref--; at 0 the block goes to the free-list tail. Throws brisk::Error when ref is already 0
  // (a double free).
  void release(BlockId b);
  int32_t ref_count(BlockId b) const;

  // Gives block b (a full block) the identity (h, tokens). If another block already holds hash h,
  // b stays anonymous: the first copy wins and lookups stay unambiguous. A previous identity of b
  // is dropped first.
  void set_cached(BlockId b, BlockHash h, std::span<const int32_t> tokens);
  // The block cached under h whose tokens equal `tokens`, or -1. Does not acquire. Comparing the
  // tokens means a 64-bit hash collision can never return the wrong block (it returns -1).
  BlockId lookup(BlockHash h, std::span<const int32_t> tokens) const;
  bool is_cached(BlockId b) const;
  int64_t n_cached() const { return static_cast<int64_t>(by_hash_.size()); }

  // For tests: list links, ref counts and the hash map agree. Throws brisk::Error. O(n_blocks).
  void check_invariants() const;

 private:
  struct Block {
    int32_t ref = 0;
    BlockId prev = -1;  // free-list links, -1 at the ends or when not free
    BlockId next = -1;
    bool in_free = false;
    bool cached = false;
    BlockHash hash = 0;
    std::vector<int32_t> tokens;  // the cached identity; capacity is kept across evictions
  };

  void check_id(BlockId b, const char* what) const;
  void push_tail(BlockId b);
  void unlink(BlockId b);
  void drop_identity(BlockId b);

  std::vector<Block> blocks_;
  BlockId head_ = -1;
  BlockId tail_ = -1;
  int32_t n_free_ = 0;
  std::unordered_map<BlockHash, BlockId> by_hash_;
};

// Chained hash of one full block: mixes the previous block's hash (0 for the first block) with the
// block's ids, so equal hashes mean (up to collisions) equal whole prefixes, not just equal blocks.
BlockHash hash_block(BlockHash prev, std::span<const int32_t> tokens);

}  // namespace brisk::kv
