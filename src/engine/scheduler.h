// Scheduler: iteration-level continuous batching with chunked prefill, after vLLM v1.
//
// It sees request ids, token ids, token counts and block ids, never a tensor (it includes only kv/
// and core/). A request has `tokens` (prompt + generated so far) and `num_computed`; each step
// every scheduled request computes the next chunk of its uncomputed tokens, so prefill, chunked
// prefill, decode and recomputation after preemption are one rule.
//
// State: every request is either waiting (ordered by (priority, order): order is the arrival
// number, or a decreasing counter for a preempted request so it goes back to the front of its
// priority class) or running (ordered by (priority, arrival)). Running requests hold blocks in the
// KvCacheManager; waiting ones hold none. Iterating running in (priority, arrival) order makes the
// preemption victim (the largest key: lowest priority, newest) simply the last one.
//
// One step (schedule): budget = max_batch_tokens.
//   1. running requests that are decoding (exactly one uncomputed token), in order, 1 token each;
//   2. running requests still catching up (prompt, or recomputation), min(remaining, budget);
//   3. only if nothing was preempted this step (memory is short: as vLLM): admit waiting requests
//      in order while running < max_num_seqs and budget > 0. A request that cannot get blocks
//      stays waiting and stops admission (FCFS: no overtaking).
// When a running request cannot get blocks, the last running request is preempted by
// recomputation (blocks freed, num_computed = 0, back to waiting; it keeps its tokens) until the
// allocation fits or the asker itself was preempted. A victim already scheduled this step loses its
// chunk (and its copy-on-write copies) and its tokens go back to the budget. add() refuses a
// request that alone needs more blocks than exist (NeverFits), so the oldest highest-priority
// running request always fits once the others are preempted: it always makes progress.
// Cost per step: O((running + waiting admitted) * log) bookkeeping plus the chunks' tokens and
// block tables copied into the output.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kv/kv_cache_manager.h"

namespace brisk::engine {

struct SchedulerConfig {
  int32_t max_num_seqs = 16;       // running sequences at most (fork may exceed it, see fork())
  int64_t max_batch_tokens = 512;  // token budget per step
  int64_t max_waiting = 256;       // bounded queue: add() refuses beyond it
  int64_t max_model_len = 2048;    // prompt + max_tokens must fit
  void validate() const;           // throws brisk::Error naming the field
};

struct SeqSpec {
  uint64_t id;
  std::vector<int32_t> prompt;  // not empty
  int32_t max_tokens;           // >= 1
  int32_t priority = 0;         // lower runs first
};

enum class AddStatus {
  Ok,
  QueueFull,  // max_waiting requests are waiting already; try later
  TooLong,    // prompt + max_tokens > max_model_len
  NeverFits,  // prompt + max_tokens needs more KV blocks than exist
  Duplicate,  // the id is waiting or running
};
const char* to_string(AddStatus s);

struct ScheduledChunk {
  uint64_t id;
  int64_t pos0;                 // == num_computed before this step
  std::vector<int32_t> tokens;  // the ids at positions [pos0, pos0 + tokens.size())
  bool sample;  // the chunk reaches the end of the request's tokens: sample from its last position
  std::vector<kv::BlockId> block_table;  // the full table after allocation (plain data)
};

// Plain data, serialisable: everything the model runner needs for one step.
struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;  // decodes first, then prompt chunks
  std::vector<kv::BlockCopy> copies;   // perform before the forward pass
  std::vector<uint64_t> preempted;     // freed this step, will be recomputed later
  int64_t n_tokens = 0;                // total tokens in chunks
};

class Scheduler {
 public:
  // kv must outlive the scheduler, and only this scheduler may change it.
  Scheduler(const SchedulerConfig& cfg, kv::KvCacheManager& kv);

  // Queues a request. Refusals are reported, never thrown; an empty prompt or max_tokens < 1 is a
  // caller bug and throws brisk::Error. Checks in order: Duplicate, TooLong, NeverFits, QueueFull.
  AddStatus add(SeqSpec spec);

  // One step. Every output must go to update() before the next schedule() (throws otherwise), and
  // the model runner must perform its copies, in order, before the forward pass.
  SchedulerOutput schedule();

  // After the forward pass: each chunk's tokens are now computed (num_computed += size, full
  // blocks committed to the prefix cache); for every chunk with sample == true the caller passes
  // the sampled token, which is appended. Chunks whose request was removed meanwhile are ignored,
  // as are their sampled tokens.
  // Throws brisk::Error, changing nothing, when a live sampled chunk has no token, a token names a
  // live request without a sampled chunk, or an append would exceed the request's max_tokens.
  void update(const SchedulerOutput& out, std::span<const std::pair<uint64_t, int32_t>> sampled);

  // n > 1 choices: right after update() appended parent's sampled token, creates `child` sharing
  // parent's blocks (kv fork), with parent's tokens except the last, which is `first_token`. The
  // child is running at once, with parent's priority and a new arrival number, even when that
  // makes running exceed max_num_seqs: the n choices of one request are admitted together (their
  // KV is shared, so the overshoot costs only the blocks they later write).
  void fork(uint64_t parent, uint64_t child, int32_t first_token);

  // Finished (stop/eos/length, decided by the caller) or cancelled: frees blocks, forgets it.
  // No-op for unknown ids.
  void remove(uint64_t id);

  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  // The queries below throw brisk::Error for an unknown id.
  int64_t num_generated(uint64_t id) const;  // tokens appended so far (for max_tokens)
  // The prefix-cache hit of its first admission, in tokens (0 before it was admitted).
  int64_t num_cached_prompt_tokens(uint64_t id) const;
  int64_t num_computed(uint64_t id) const;
  std::span<const int32_t> tokens(uint64_t id) const;  // prompt + generated
  bool is_running(uint64_t id) const;
  uint64_t num_preemptions() const { return num_preemptions_; }

  // Queue/map/state agreement, per-request counters, block tables covering the computed tokens,
  // and the KvCacheManager's own invariants. Throws brisk::Error. O(requests + blocks).
  void check_invariants() const;

 private:
  using Key = std::pair<int32_t, int64_t>;  // (priority, arrival or queue order)

  struct Request {
    uint64_t id = 0;
    std::vector<int32_t> tokens;
    int64_t n_prompt = 0;
    int32_t max_tokens = 0;
    int32_t priority = 0;
    int64_t arrival = 0;      // unique, increasing: the running key and preemption order
    int64_t queue_order = 0;  // the waiting key (arrival, or negative for a preempted request)
    int64_t num_computed = 0;
    int64_t cached_prompt = 0;
    bool admitted_once = false;
    bool running = false;
    int64_t inflight = 0;  // tokens scheduled by the last schedule(), awaiting update()
  };

  Request& get(uint64_t id);
  const Request& get(uint64_t id) const;
  // Gives r blocks for n more tokens, preempting the last running requests as needed. False when
  // r itself was preempted.
  bool allocate_or_preempt(Request& r, int64_t n, SchedulerOutput& out, int64_t& budget);
  void preempt(Request& victim, SchedulerOutput& out, int64_t& budget);
  void schedule_chunk(Request& r, int64_t n, int64_t& budget);

  SchedulerConfig cfg_;
  kv::KvCacheManager& kv_;
  std::unordered_map<uint64_t, Request> reqs_;  // node-based: references stay valid
  std::map<Key, uint64_t> running_;             // (priority, arrival) -> id
  std::map<Key, uint64_t> waiting_;             // (priority, queue_order) -> id
  int64_t next_arrival_ = 0;
  int64_t next_front_ = -1;  // queue order for the next preempted request, decreasing
  uint64_t num_preemptions_ = 0;
  bool awaiting_update_ = false;  // schedule() and update() alternate
  // Per-step scratch (kept to reuse its capacity).
  std::vector<uint64_t> order_;                             // running ids at step start
  std::vector<uint64_t> scheduled_;                         // ids in chunk order
  std::vector<std::pair<uint64_t, kv::BlockCopy>> copies_;  // owner, copy
  std::vector<kv::BlockCopy> copy_scratch_;
};

}  // namespace brisk::engine
