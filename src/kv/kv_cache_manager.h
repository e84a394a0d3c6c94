// KvCacheManager: one block table per request over one BlockPool, and the prefix cache.
//
// A request's table maps its positions to blocks: position p lives in block table[p / block_size]
// at slot p % block_size. The only references to blocks are table entries, so for every block
// ref_count == the number of tables that hold it (check_invariants). A full block whose tokens
// were computed is registered in the prefix cache under a chained hash (hash_block over the
// previous block's hash and its own ids), so equal hashes mean equal prefixes; such a block is
// never written again, by construction:
//   - writes only go to positions >= the request's n_computed, and only full computed blocks are
//     registered;
//   - match_prefix leaves at least one token to compute, so a hit never ends on the last token;
//   - a block shared after fork() is copied before the first write into it (copy-on-write).
// Costs: match_prefix O(matched tokens + block_size), allocate_slots O(new blocks), commit
// O(newly full blocks * block_size), fork/free O(table size).
#pragma once
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "kv/block_pool.h"

namespace brisk::kv {

struct KvCacheConfig {
  int32_t n_blocks = 0;
  int32_t block_size = 16;  // tokens per block
  bool prefix_caching = true;
  void validate() const;  // throws brisk::Error naming the field
};

// Copy-on-write work for the model runner: copy block src's contents into dst before the forward
// pass that writes into dst.
struct BlockCopy {
  BlockId src, dst;
};

class KvCacheManager {
 public:
  explicit KvCacheManager(const KvCacheConfig& cfg);

  // Looks up the longest run of cached full blocks at the start of `tokens` and puts them
  // (acquired) in the request's table, which must be new or empty. At most
  // floor((tokens.size() - 1) / block_size) blocks, so at least one token is always computed and
  // no write ever lands in a cached block. Returns the number of tokens covered. Counts prefix
  // queries (tokens.size()) and hits (the return value) when prefix caching is on.
  int64_t match_prefix(uint64_t req, std::span<const int32_t> tokens);

  // Makes the table cover positions [0, n_total) before positions [n_computed, n_total) are
  // written (an unknown request gets an empty table first). All or nothing: returns false and
  // changes nothing when there are not enough free blocks. A block that will be written and is
  // shared (ref > 1, only possible after fork) is replaced by a fresh copy and a BlockCopy is
  // appended to `copies`; the last sharer writes in place.
  bool allocate_slots(uint64_t req, int64_t n_computed, int64_t n_total,
                      std::vector<BlockCopy>& copies);

  // After a step computed the request's tokens up to n_computed: registers every newly full block
  // in the prefix cache. `tokens` is the request's full token list (it only ever grows by appends).
  void commit(uint64_t req, std::span<const int32_t> tokens, int64_t n_computed);

  // child's table = parent's blocks, each acquired; child must be unknown or empty.
  void fork(uint64_t parent, uint64_t child);
  // Releases the request's blocks, last block first, so that a sequence's tail is evicted before
  // its head and prefixes survive longest (as vLLM does). No-op for an unknown request.
  void free(uint64_t req);

  std::span<const BlockId> block_table(uint64_t req) const;  // empty for an unknown request
  bool has_request(uint64_t req) const { return reqs_.contains(req); }
  int64_t num_requests() const { return static_cast<int64_t>(reqs_.size()); }

  int32_t block_size() const { return cfg_.block_size; }
  int32_t n_blocks() const { return pool_.n_blocks(); }
  int32_t n_free_blocks() const { return pool_.n_free(); }
  int64_t blocks_needed(int64_t n_tokens) const;
  const BlockPool& pool() const { return pool_; }

  uint64_t prefix_queries() const { return prefix_queries_; }  // in tokens
  uint64_t prefix_hits() const { return prefix_hits_; }        // in tokens

  // Pool invariants, plus: every block's ref count equals the number of table entries naming it;
  // each request's hashed-block count is within its table. Throws brisk::Error. O(blocks + tables).
  void check_invariants() const;

 private:
  struct Table {
    std::vector<BlockId> blocks;
    int64_t n_hashed = 0;     // leading full blocks already registered (or found) in the cache
    BlockHash last_hash = 0;  // chained hash of block n_hashed - 1 (0 when none)
  };

  KvCacheConfig cfg_;
  BlockPool pool_;
  std::unordered_map<uint64_t, Table> reqs_;
  uint64_t prefix_queries_ = 0;
  uint64_t prefix_hits_ = 0;
};

}  // namespace brisk::kv
