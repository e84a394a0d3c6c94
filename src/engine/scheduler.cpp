#include "engine/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace brisk::engine {

void SchedulerConfig::validate() const {
  check(max_num_seqs > 0, "scheduler config: max_num_seqs must be > 0, got ", max_num_seqs);
  check(max_batch_tokens > 0, "scheduler config: max_batch_tokens must be > 0, got ",
        max_batch_tokens);
  check(max_waiting > 0, "scheduler config: max_waiting must be > 0, got ", max_waiting);
  check(max_model_len > 1, "scheduler config: max_model_len must be > 1, got ", max_model_len);
}

const char* to_string(AddStatus s) {
  switch (s) {
    case AddStatus::Ok:
      return "ok";
    case AddStatus::QueueFull:
      return "queue full";
    case AddStatus::TooLong:
      return "prompt + max_tokens exceeds max_model_len";
    case AddStatus::NeverFits:
      return "prompt + max_tokens needs more KV blocks than exist";
    case AddStatus::Duplicate:
      return "duplicate request id";
  }
  return "?";
}

namespace {

const SchedulerConfig& validated(const SchedulerConfig& cfg) {
  cfg.validate();
  return cfg;
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& cfg, kv::KvCacheManager& kv)
    : cfg_(validated(cfg)), kv_(kv) {}

Scheduler::Request& Scheduler::get(uint64_t id) {
  const auto it = reqs_.find(id);
  check(it != reqs_.end(), "scheduler: unknown request ", id);
  return it->second;
}

const Scheduler::Request& Scheduler::get(uint64_t id) const {
  const auto it = reqs_.find(id);
  check(it != reqs_.end(), "scheduler: unknown request ", id);
  return it->second;
}

AddStatus Scheduler::add(SeqSpec spec) {
  check(!spec.prompt.empty(), "scheduler: request ", spec.id, " has an empty prompt");
  check(spec.max_tokens >= 1, "scheduler: request ", spec.id, " has max_tokens ", spec.max_tokens,
        ", must be >= 1");
  if (reqs_.contains(spec.id)) return AddStatus::Duplicate;
  const int64_t total = static_cast<int64_t>(spec.prompt.size()) + spec.max_tokens;
  if (total > cfg_.max_model_len) return AddStatus::TooLong;
  // Conservative by one token (the last sampled token is never computed) so that a caller that
  // lets a request compute its last token still cannot make a lone request not fit.
  if (kv_.blocks_needed(total) > kv_.n_blocks()) return AddStatus::NeverFits;
  if (num_waiting() >= cfg_.max_waiting) return AddStatus::QueueFull;

  Request r;
  r.id = spec.id;
  r.n_prompt = static_cast<int64_t>(spec.prompt.size());
  r.tokens = std::move(spec.prompt);
  r.tokens.reserve(static_cast<size_t>(total));
  r.max_tokens = spec.max_tokens;
  r.priority = spec.priority;
  r.arrival = next_arrival_++;
  r.queue_order = r.arrival;
  waiting_.emplace(Key{r.priority, r.queue_order}, r.id);
  reqs_.emplace(r.id, std::move(r));
  return AddStatus::Ok;
}

void Scheduler::schedule_chunk(Request& r, int64_t n, int64_t& budget) {
  r.inflight = n;
  budget -= n;
  scheduled_.push_back(r.id);
}

void Scheduler::preempt(Request& victim, SchedulerOutput& out, int64_t& budget) {
  // Its chunk (if any) is dropped when the output is assembled, and its tokens are refunded.
  budget += victim.inflight;
  victim.inflight = 0;
  kv_.free(victim.id);
  running_.erase(Key{victim.priority, victim.arrival});
  victim.running = false;
  victim.num_computed = 0;
  victim.queue_order = next_front_--;  // before everything else of its priority class
  waiting_.emplace(Key{victim.priority, victim.queue_order}, victim.id);
  out.preempted.push_back(victim.id);
  ++num_preemptions_;
}

bool Scheduler::allocate_or_preempt(Request& r, int64_t n, SchedulerOutput& out, int64_t& budget) {
  for (;;) {
    copy_scratch_.clear();
    if (kv_.allocate_slots(r.id, r.num_computed, r.num_computed + n, copy_scratch_)) {
      for (const kv::BlockCopy& c : copy_scratch_) copies_.emplace_back(r.id, c);
      return true;
    }
    // r is running, so running_ is not empty. Its last entry is the lowest priority, newest.
    Request& victim = get(running_.rbegin()->second);
    preempt(victim, out, budget);
    if (&victim == &r) return false;
  }
}

SchedulerOutput Scheduler::schedule() {
  // The previous output's block tables and copies are already in the KvCacheManager: skipping
  // its update() would schedule positions twice and could lose a copy-on-write.
  check(!awaiting_update_, "scheduler: schedule() called again before update()");
  awaiting_update_ = true;
  SchedulerOutput out;
  int64_t budget = cfg_.max_batch_tokens;
  scheduled_.clear();
  copies_.clear();
  order_.clear();
  for (const auto& [key, id] : running_) order_.push_back(id);

  // 1. Decodes: one token each.
  for (const uint64_t id : order_) {
    if (budget == 0) break;
    Request& r = get(id);
    if (!r.running || static_cast<int64_t>(r.tokens.size()) - r.num_computed != 1) continue;
    if (allocate_or_preempt(r, 1, out, budget)) schedule_chunk(r, 1, budget);
  }
  // 2. Running requests catching up on their prompt (or on a recomputation): chunked prefill.
  for (const uint64_t id : order_) {
    if (budget == 0) break;
    Request& r = get(id);
    const int64_t remaining = static_cast<int64_t>(r.tokens.size()) - r.num_computed;
    if (!r.running || r.inflight > 0 || remaining <= 1) continue;
    const int64_t n = std::min(remaining, budget);
    if (allocate_or_preempt(r, n, out, budget)) schedule_chunk(r, n, budget);
  }
  // 3. Admission, unless memory was short this step.
  while (out.preempted.empty() && budget > 0 && num_running() < cfg_.max_num_seqs &&
         !waiting_.empty()) {
    const auto it = waiting_.begin();
    Request& r = get(it->second);
    const int64_t matched = kv_.match_prefix(r.id, r.tokens);
    const int64_t n = std::min(static_cast<int64_t>(r.tokens.size()) - matched, budget);
    copy_scratch_.clear();
    if (!kv_.allocate_slots(r.id, matched, matched + n, copy_scratch_)) {
      kv_.free(r.id);  // gives back the matched blocks; they stay cached
      break;           // FCFS: nobody overtakes the head
    }
    for (const kv::BlockCopy& c : copy_scratch_) copies_.emplace_back(r.id, c);
    waiting_.erase(it);
    r.num_computed = matched;
    if (!r.admitted_once) {
      r.admitted_once = true;
      r.cached_prompt = matched;
    }
    r.running = true;
    running_.emplace(Key{r.priority, r.arrival}, r.id);
    schedule_chunk(r, n, budget);
  }

  // Assemble the output from what survived preemption, in scheduling order.
  out.chunks.reserve(scheduled_.size());
  for (const uint64_t id : scheduled_) {
    const Request& r = get(id);
    if (!r.running || r.inflight == 0) continue;
    ScheduledChunk c;
    c.id = id;
    c.pos0 = r.num_computed;
    const auto first = r.tokens.begin() + r.num_computed;
    c.tokens.assign(first, first + r.inflight);
    c.sample = r.num_computed + r.inflight == static_cast<int64_t>(r.tokens.size());
    const auto table = kv_.block_table(id);
    c.block_table.assign(table.begin(), table.end());
    out.n_tokens += r.inflight;
    out.chunks.push_back(std::move(c));
  }
  // In recording order: a block freed by a preemption and reused as a later copy's destination is
  // still read by the earlier copy first.
  for (const auto& [owner, c] : copies_) {
    const Request& r = get(owner);
    if (r.running && r.inflight > 0) out.copies.push_back(c);
  }
  return out;
}

void Scheduler::update(const SchedulerOutput& out,
                       std::span<const std::pair<uint64_t, int32_t>> sampled) {
  // The request a chunk still belongs to, or nullptr (removed, preempted, rescheduled).
  auto live = [&](const ScheduledChunk& c) -> Request* {
    const auto it = reqs_.find(c.id);
    if (it == reqs_.end()) return nullptr;
    Request& r = it->second;
    if (!r.running || r.inflight != static_cast<int64_t>(c.tokens.size()) ||
        r.num_computed != c.pos0)
      return nullptr;
    return &r;
  };

  // Validate everything first so that a bad call changes nothing.
  std::unordered_map<uint64_t, int32_t> token_of;
  token_of.reserve(sampled.size());
  for (const auto& [id, t] : sampled) {
    check(token_of.emplace(id, t).second, "scheduler: two sampled tokens for request ", id);
    const auto it = reqs_.find(id);
    if (it == reqs_.end()) continue;
    const Request& r = it->second;
    check(!r.running || r.inflight == 0 ||
              r.num_computed + r.inflight == static_cast<int64_t>(r.tokens.size()),
          "scheduler: sampled token for request ", id, " whose chunk does not sample");
  }
  for (const ScheduledChunk& c : out.chunks) {
    const Request* r = live(c);
    if (r == nullptr || !c.sample) continue;
    check(token_of.contains(c.id), "scheduler: no sampled token for request ", c.id);
    check(static_cast<int64_t>(r->tokens.size()) - r->n_prompt < r->max_tokens,
          "scheduler: request ", c.id, " already generated max_tokens = ", r->max_tokens,
          " tokens (the caller must remove it)");
  }

  awaiting_update_ = false;
  for (const ScheduledChunk& c : out.chunks) {
    Request* r = live(c);
    if (r == nullptr) continue;
    r->num_computed += r->inflight;
    r->inflight = 0;
    kv_.commit(r->id, r->tokens, r->num_computed);
    if (c.sample) r->tokens.push_back(token_of.at(c.id));
  }
}

void Scheduler::fork(uint64_t parent, uint64_t child, int32_t first_token) {
  check(parent != child, "scheduler: fork of request ", parent, " onto itself");
  check(!reqs_.contains(child), "scheduler: fork onto request ", child, " which already exists");
  const Request& p = get(parent);
  check(p.running && p.inflight == 0 &&
            p.num_computed + 1 == static_cast<int64_t>(p.tokens.size()) &&
            static_cast<int64_t>(p.tokens.size()) > p.n_prompt,
        "scheduler: fork of request ", parent, " which has not just sampled a token");
  Request c = p;
  c.id = child;
  c.tokens.back() = first_token;
  c.arrival = next_arrival_++;
  c.queue_order = c.arrival;
  kv_.fork(parent, child);
  running_.emplace(Key{c.priority, c.arrival}, child);
  reqs_.emplace(child, std::move(c));
}

void Scheduler::remove(uint64_t id) {
  const auto it = reqs_.find(id);
  if (it == reqs_.end()) return;
  const Request& r = it->second;
  if (r.running)
    running_.erase(Key{r.priority, r.arrival});
  else
    waiting_.erase(Key{r.priority, r.queue_order});
  kv_.free(id);
  reqs_.erase(it);
}

int64_t Scheduler::num_generated(uint64_t id) const {
  const Request& r = get(id);
  return static_cast<int64_t>(r.tokens.size()) - r.n_prompt;
}

int64_t Scheduler::num_cached_prompt_tokens(uint64_t id) const {
  return get(id).cached_prompt;
}
int64_t Scheduler::num_computed(uint64_t id) const {
  return get(id).num_computed;
}
std::span<const int32_t> Scheduler::tokens(uint64_t id) const {
  return get(id).tokens;
}
bool Scheduler::is_running(uint64_t id) const {
  return get(id).running;
}

void Scheduler::check_invariants() const {
  kv_.check_invariants();
  check(running_.size() + waiting_.size() == reqs_.size(), "scheduler: ", running_.size(),
        " running + ", waiting_.size(), " waiting != ", reqs_.size(), " requests");
  check(kv_.num_requests() == num_running(), "scheduler: kv holds ", kv_.num_requests(),
        " tables for ", num_running(), " running requests");
  for (const auto& [key, id] : running_) {
    const Request& r = get(id);
    check(r.running && key == Key{r.priority, r.arrival}, "scheduler: running entry of request ",
          id, " is stale");
    const int64_t n_tokens = static_cast<int64_t>(r.tokens.size());
    check(0 <= r.num_computed && r.num_computed + r.inflight <= n_tokens, "scheduler: request ", id,
          " computed ", r.num_computed, " + ", r.inflight, " in flight of ", n_tokens);
    const auto table_size = static_cast<int64_t>(kv_.block_table(id).size());
    check(kv_.blocks_needed(r.num_computed + r.inflight) <= table_size &&
              table_size <= kv_.blocks_needed(n_tokens),
          "scheduler: request ", id, " has ", table_size, " blocks for ", r.num_computed,
          " computed of ", n_tokens, " tokens");
  }
  for (const auto& [key, id] : waiting_) {
    const Request& r = get(id);
    check(!r.running && key == Key{r.priority, r.queue_order},
          "scheduler: waiting entry of request ", id, " is stale");
    check(r.num_computed == 0 && r.inflight == 0 && !kv_.has_request(id), "scheduler: waiting ",
          "request ", id, " holds computed tokens or blocks");
  }
  for (const auto& [id, r] : reqs_) {
    check(r.id == id && r.n_prompt >= 1 && static_cast<int64_t>(r.tokens.size()) >= r.n_prompt &&
              static_cast<int64_t>(r.tokens.size()) - r.n_prompt <= r.max_tokens,
          "scheduler: request ", id, " has ", r.tokens.size(), " tokens for a prompt of ",
          r.n_prompt, " and max_tokens ", r.max_tokens);
  }
}

}  // namespace brisk::engine
