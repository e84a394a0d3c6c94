#include "kv/kv_cache_manager.h"

#include <algorithm>

#include "core/error.h"

namespace brisk::kv {

void KvCacheConfig::validate() const {
  check(n_blocks > 0, "kv config: n_blocks must be > 0, got ", n_blocks);
  check(block_size > 0, "kv config: block_size must be > 0, got ", block_size);
}

namespace {

const KvCacheConfig& validated(const KvCacheConfig& cfg) {
  cfg.validate();
  return cfg;
}

}  // namespace

KvCacheManager::KvCacheManager(const KvCacheConfig& cfg)
    : cfg_(validated(cfg)), pool_(cfg.n_blocks) {}

int64_t KvCacheManager::blocks_needed(int64_t n_tokens) const {
  check(n_tokens >= 0, "kv: blocks_needed of ", n_tokens, " tokens");
  return (n_tokens + cfg_.block_size - 1) / cfg_.block_size;
}

int64_t KvCacheManager::match_prefix(uint64_t req, std::span<const int32_t> tokens) {
  Table& t = reqs_[req];
  check(t.blocks.empty(), "kv: match_prefix for request ", req, " whose table is not empty");
  t.n_hashed = 0;
  t.last_hash = 0;
  if (!cfg_.prefix_caching || tokens.empty()) return 0;
  prefix_queries_ += tokens.size();
  const int64_t bs = cfg_.block_size;
  const int64_t max_blocks = (static_cast<int64_t>(tokens.size()) - 1) / bs;
  BlockHash h = 0;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const auto ids = tokens.subspan(static_cast<size_t>(i * bs), static_cast<size_t>(bs));
    const BlockHash hi = hash_block(h, ids);
    const BlockId b = pool_.lookup(hi, ids);
    if (b < 0) break;
    pool_.acquire(b);
    t.blocks.push_back(b);
    h = hi;
  }
  // The matched blocks are registered already: commit() continues the chain after them.
  t.n_hashed = static_cast<int64_t>(t.blocks.size());
  t.last_hash = h;
  const int64_t covered = t.n_hashed * bs;
  prefix_hits_ += static_cast<uint64_t>(covered);
  return covered;
}

bool KvCacheManager::allocate_slots(uint64_t req, int64_t n_computed, int64_t n_total,
                                    std::vector<BlockCopy>& copies) {
  const int64_t bs = cfg_.block_size;
  const auto found = reqs_.find(req);
  static const std::vector<BlockId> kNone;
  const std::vector<BlockId>& blocks = found == reqs_.end() ? kNone : found->second.blocks;
  const int64_t have = static_cast<int64_t>(blocks.size());
  check(0 <= n_computed && n_computed <= n_total, "kv: allocate_slots for request ", req,
        " with n_computed ", n_computed, " and n_total ", n_total);
  check(n_computed <= have * bs, "kv: request ", req, " has computed ", n_computed,
        " tokens but its table covers only ", have * bs);
  const int64_t need = blocks_needed(n_total);
  // Blocks that this step writes into and already exist: copy those that are shared. In practice
  // only the partial last block after a fork; the loop is general and O(blocks written).
  int64_t n_cow = 0;
  const int64_t first_written = n_computed / bs;
  const int64_t last_existing = std::min(have, need);
  for (int64_t i = first_written; i < last_existing; ++i)
    n_cow += pool_.ref_count(blocks[static_cast<size_t>(i)]) > 1;
  const int64_t n_new = std::max<int64_t>(0, need - have);
  if (n_new + n_cow > pool_.n_free()) return false;  // nothing changed, not even a new entry

  Table& t = found == reqs_.end() ? reqs_[req] : found->second;
  if (n_cow > 0) {
    for (int64_t i = first_written; i < last_existing; ++i) {
      BlockId& slot = t.blocks[static_cast<size_t>(i)];
      if (pool_.ref_count(slot) <= 1) continue;
      const BlockId dst = pool_.allocate();
      copies.push_back({slot, dst});
      pool_.release(slot);  // ref > 1: the other sharers keep it
      slot = dst;
    }
  }
  for (int64_t i = 0; i < n_new; ++i) t.blocks.push_back(pool_.allocate());
  return true;
}

void KvCacheManager::commit(uint64_t req, std::span<const int32_t> tokens, int64_t n_computed) {
  const auto it = reqs_.find(req);
  check(it != reqs_.end(), "kv: commit for unknown request ", req);
  Table& t = it->second;
  const int64_t bs = cfg_.block_size;
  check(0 <= n_computed && n_computed <= static_cast<int64_t>(tokens.size()) &&
            n_computed <= static_cast<int64_t>(t.blocks.size()) * bs,
        "kv: commit for request ", req, " of ", n_computed, " computed tokens (", tokens.size(),
        " tokens, ", t.blocks.size(), " blocks)");
  if (!cfg_.prefix_caching) return;
  while ((t.n_hashed + 1) * bs <= n_computed) {
    const auto ids = tokens.subspan(static_cast<size_t>(t.n_hashed * bs), static_cast<size_t>(bs));
    t.last_hash = hash_block(t.last_hash, ids);
    pool_.set_cached(t.blocks[static_cast<size_t>(t.n_hashed)], t.last_hash, ids);
    ++t.n_hashed;
  }
}

void KvCacheManager::fork(uint64_t parent, uint64_t child) {
  check(parent != child, "kv: fork of request ", parent, " onto itself");
  const auto it = reqs_.find(parent);
  check(it != reqs_.end(), "kv: fork of unknown request ", parent);
  const Table* existing = reqs_.contains(child) ? &reqs_.at(child) : nullptr;
  check(existing == nullptr || existing->blocks.empty(), "kv: fork onto request ", child,
        " which already holds blocks");
  Table copy = it->second;
  for (const BlockId b : copy.blocks) pool_.acquire(b);
  reqs_[child] = std::move(copy);
}

void KvCacheManager::free(uint64_t req) {
  const auto it = reqs_.find(req);
  if (it == reqs_.end()) return;
  const std::vector<BlockId>& blocks = it->second.blocks;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) pool_.release(*b);
  reqs_.erase(it);
}

std::span<const BlockId> KvCacheManager::block_table(uint64_t req) const {
  const auto it = reqs_.find(req);
  if (it == reqs_.end()) return {};
  return it->second.blocks;
}

void KvCacheManager::check_invariants() const {
  pool_.check_invariants();
  std::vector<int32_t> refs(static_cast<size_t>(pool_.n_blocks()), 0);
  for (const auto& [req, t] : reqs_) {
    check(0 <= t.n_hashed && t.n_hashed <= static_cast<int64_t>(t.blocks.size()), "kv: request ",
          req, " has ", t.n_hashed, " hashed blocks of ", t.blocks.size());
    for (const BlockId b : t.blocks) {
      check(b >= 0 && b < pool_.n_blocks(), "kv: request ", req, " holds bad block id ", b);
      ++refs[static_cast<size_t>(b)];
    }
  }
  for (BlockId b = 0; b < pool_.n_blocks(); ++b)
    check(refs[static_cast<size_t>(b)] == pool_.ref_count(b), "kv: block ", b, " is in ",
          refs[static_cast<size_t>(b)], " tables but has ref ", pool_.ref_count(b));
}

}  // namespace brisk::kv
