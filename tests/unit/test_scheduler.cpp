// The continuous-batching scheduler without a model: step order, chunked prefill, admission
// order, refusals, preemption by recomputation, prefix hits, fork; then a randomized property
// test that drives a simulated model runner (it stores token ids in the blocks and checks every
// chunk reads back exactly its request's earlier tokens).
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "core/error.h"
#include "engine/scheduler.h"
#include "kv/kv_cache_manager.h"

using namespace brisk;
using namespace brisk::engine;
using brisk::kv::BlockId;
using brisk::kv::KvCacheConfig;
using brisk::kv::KvCacheManager;

namespace {

std::vector<int32_t> iota_tokens(int n, int32_t first = 100) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// A deterministic "model": the sampled token depends only on the request and its length, so a
// recomputed request samples exactly what it would have without preemption.
int32_t fake_token(uint64_t id, size_t len) {
  return static_cast<int32_t>((id * 7919 + len * 31) % 1000);
}

struct Harness {
  KvCacheManager kv;
  Scheduler sched;

  Harness(SchedulerConfig sc, KvCacheConfig kc) : kv(kc), sched(sc, kv) {}

  // One step with fake_token samples; returns the output.
  SchedulerOutput step() {
    SchedulerOutput out = sched.schedule();
    std::vector<std::pair<uint64_t, int32_t>> sampled;
    for (const ScheduledChunk& c : out.chunks)
      if (c.sample) sampled.emplace_back(c.id, fake_token(c.id, sched.tokens(c.id).size()));
    sched.update(out, sampled);
    sched.check_invariants();
    return out;
  }

  // Steps until nothing is left, removing a request when it reaches max_tokens. Returns the
  // final token list of every request.
  std::map<uint64_t, std::vector<int32_t>> run_to_completion(
      const std::map<uint64_t, int32_t>& max_tokens, int max_steps = 10000) {
    std::map<uint64_t, std::vector<int32_t>> done;
    for (int i = 0; i < max_steps && sched.has_work(); ++i) {
      const SchedulerOutput out = step();
      for (const ScheduledChunk& c : out.chunks) {
        if (!c.sample || sched.num_generated(c.id) < max_tokens.at(c.id)) continue;
        const auto t = sched.tokens(c.id);
        done[c.id].assign(t.begin(), t.end());
        sched.remove(c.id);
      }
    }
    EXPECT_FALSE(sched.has_work());
    return done;
  }
};

SchedulerConfig sched_config(int32_t max_num_seqs, int64_t max_batch_tokens,
                             int64_t max_waiting = 64, int64_t max_model_len = 2048) {
  SchedulerConfig c;
  c.max_num_seqs = max_num_seqs;
  c.max_batch_tokens = max_batch_tokens;
  c.max_waiting = max_waiting;
  c.max_model_len = max_model_len;
  return c;
}

std::vector<uint64_t> chunk_ids(const SchedulerOutput& out) {
  std::vector<uint64_t> ids;
  for (const ScheduledChunk& c : out.chunks) ids.push_back(c.id);
  return ids;
}

}  // namespace

TEST(Scheduler, ConfigIsValidated) {
  KvCacheManager kv(KvCacheConfig{8, 4, true});
  EXPECT_THROW(Scheduler(sched_config(0, 8), kv), Error);
  EXPECT_THROW(Scheduler(sched_config(1, 0), kv), Error);
  EXPECT_THROW(Scheduler(sched_config(1, 8, 0), kv), Error);
  Scheduler s(sched_config(1, 8), kv);
  EXPECT_THROW(s.add({1, {}, 4}), Error);
  EXPECT_THROW(s.add({1, {1}, 0}), Error);
}

TEST(Scheduler, ChunkedPrefillRespectsTheBudget) {
  Harness h(sched_config(4, 8), KvCacheConfig{64, 4, true});
  const auto prompt = iota_tokens(20);
  ASSERT_EQ(h.sched.add({1, prompt, 4}), AddStatus::Ok);
  const std::vector<std::pair<int64_t, size_t>> want = {{0, 8}, {8, 8}, {16, 4}};
  for (const auto& [pos0, n] : want) {
    const SchedulerOutput out = h.step();
    ASSERT_EQ(out.chunks.size(), 1u);
    const ScheduledChunk& c = out.chunks[0];
    EXPECT_EQ(c.pos0, pos0);
    EXPECT_EQ(c.tokens.size(), n);
    EXPECT_EQ(c.tokens, std::vector<int32_t>(prompt.begin() + pos0, prompt.begin() + pos0 + n));
    EXPECT_EQ(c.sample, pos0 + static_cast<int64_t>(n) == 20);
    EXPECT_EQ(static_cast<int64_t>(c.block_table.size()), h.kv.blocks_needed(pos0 + n));
    EXPECT_EQ(out.n_tokens, static_cast<int64_t>(n));
  }
  EXPECT_EQ(h.sched.num_generated(1), 1);
  EXPECT_EQ(h.sched.num_computed(1), 20);
  const SchedulerOutput out = h.step();  // a decode
  ASSERT_EQ(out.chunks.size(), 1u);
  EXPECT_EQ(out.chunks[0].pos0, 20);
  EXPECT_TRUE(out.chunks[0].sample);
}

TEST(Scheduler, DecodesComeBeforePrefillChunks) {
  Harness h(sched_config(4, 8), KvCacheConfig{64, 4, true});
  ASSERT_EQ(h.sched.add({1, iota_tokens(4), 8}), AddStatus::Ok);
  ASSERT_EQ(h.sched.add({2, iota_tokens(3, 500), 8}), AddStatus::Ok);
  h.step();  // both prompts in one step
  ASSERT_EQ(h.sched.add({3, iota_tokens(20, 900), 8}), AddStatus::Ok);
  const SchedulerOutput out = h.step();
  ASSERT_EQ(chunk_ids(out), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(out.chunks[0].tokens.size(), 1u);
  EXPECT_EQ(out.chunks[1].tokens.size(), 1u);
  EXPECT_EQ(out.chunks[2].tokens.size(), 6u);  // what is left of the budget
  EXPECT_FALSE(out.chunks[2].sample);
  EXPECT_EQ(out.n_tokens, 8);
  // Next step: the two decodes, then the running prompt catching up, before any admission.
  ASSERT_EQ(h.sched.add({4, iota_tokens(5, 700), 8}), AddStatus::Ok);
  const SchedulerOutput next = h.step();
  ASSERT_EQ(chunk_ids(next), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(next.chunks[2].pos0, 6);
  EXPECT_EQ(h.sched.num_waiting(), 1);
}

TEST(Scheduler, AdmitsByPriorityThenArrival) {
  Harness h(sched_config(1, 64), KvCacheConfig{64, 4, true});
  ASSERT_EQ(h.sched.add({1, iota_tokens(4), 1, 0}), AddStatus::Ok);
  ASSERT_EQ(h.sched.add({2, iota_tokens(4), 1, 0}), AddStatus::Ok);
  ASSERT_EQ(h.sched.add({3, iota_tokens(4), 1, -1}), AddStatus::Ok);
  ASSERT_EQ(h.sched.add({4, iota_tokens(4), 1, 5}), AddStatus::Ok);
  std::vector<uint64_t> order;
  while (h.sched.has_work()) {
    const SchedulerOutput out = h.step();
    ASSERT_EQ(out.chunks.size(), 1u);  // max_num_seqs = 1
    order.push_back(out.chunks[0].id);
    h.sched.remove(out.chunks[0].id);  // max_tokens = 1: done after its first sample
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{3, 1, 2, 4}));
}

TEST(Scheduler, WaitingHeadThatDoesNotFitBlocksAdmission) {
  // 4 blocks of 4 tokens. Request 1 (8 tokens, decoding) holds 3 blocks; request 2 needs 3 and
  // waits; request 3 would fit in the last block but may not overtake request 2.
  Harness h(sched_config(8, 64), KvCacheConfig{4, 4, true});
  ASSERT_EQ(h.sched.add({1, iota_tokens(8), 8}), AddStatus::Ok);
  h.step();
  ASSERT_EQ(h.sched.add({2, iota_tokens(12, 300), 4}), AddStatus::Ok);
  ASSERT_EQ(h.sched.add({3, iota_tokens(2, 600), 2}), AddStatus::Ok);
  const SchedulerOutput out = h.step();
  EXPECT_EQ(chunk_ids(out), (std::vector<uint64_t>{1}));
  EXPECT_EQ(h.sched.num_waiting(), 2);
  EXPECT_EQ(h.kv.n_free_blocks(), 1);
  EXPECT_EQ(h.kv.num_requests(), 1);  // the failed admission returned its matched blocks
  h.sched.remove(1);
  const SchedulerOutput after = h.step();
  EXPECT_EQ(chunk_ids(after), (std::vector<uint64_t>{2, 3}));
}

TEST(Scheduler, RefusesWithAReason) {
  Harness h(sched_config(4, 64, /*max_waiting=*/2, /*max_model_len=*/32),
            KvCacheConfig{4, 4, true});
  EXPECT_EQ(h.sched.add({1, iota_tokens(8), 4}), AddStatus::Ok);
  EXPECT_EQ(h.sched.add({1, iota_tokens(8), 4}), AddStatus::Duplicate);
  EXPECT_EQ(h.sched.add({2, iota_tokens(30), 3}), AddStatus::TooLong);
  EXPECT_EQ(h.sched.add({3, iota_tokens(16), 1}), AddStatus::NeverFits);  // 17 tokens, 5 blocks
  EXPECT_EQ(h.sched.add({4, iota_tokens(15), 1}), AddStatus::Ok);         // 16 tokens fit exactly
  EXPECT_EQ(h.sched.add({5, iota_tokens(2), 1}), AddStatus::QueueFull);
  EXPECT_EQ(h.sched.num_waiting(), 2);
  h.step();  // admits request 1 (request 4 does not fit beside it)
  EXPECT_EQ(h.sched.add({5, iota_tokens(2), 1}), AddStatus::Ok);
  EXPECT_STREQ(to_string(AddStatus::NeverFits),
               "prompt + max_tokens needs more KV blocks than exist");
}

TEST(Scheduler, PreemptionRecomputesAndGivesIdenticalTokens) {
  // Reference: a pool big enough that nobody is preempted.
  const std::map<uint64_t, int32_t> max_tokens = {{1, 12}, {2, 12}, {3, 12}};
  auto add_all = [](Scheduler& s) {
    ASSERT_EQ(s.add({1, iota_tokens(6, 10), 12}), AddStatus::Ok);
    ASSERT_EQ(s.add({2, iota_tokens(7, 40), 12}), AddStatus::Ok);
    ASSERT_EQ(s.add({3, iota_tokens(5, 70), 12}), AddStatus::Ok);
  };
  Harness big(sched_config(4, 16), KvCacheConfig{64, 4, true});
  add_all(big.sched);
  const auto want = big.run_to_completion(max_tokens);
  EXPECT_EQ(big.sched.num_preemptions(), 0u);

  // 6 blocks of 4 tokens: three requests of up to 19 tokens cannot all stay.
  Harness small(sched_config(4, 16), KvCacheConfig{6, 4, true});
  add_all(small.sched);
  std::set<uint64_t> preempted_once;
  std::map<uint64_t, std::vector<int32_t>> done;
  for (int i = 0; i < 1000 && small.sched.has_work(); ++i) {
    const SchedulerOutput out = small.step();
    for (const uint64_t id : out.preempted) {
      preempted_once.insert(id);
      EXPECT_FALSE(small.sched.is_running(id));
      EXPECT_EQ(small.sched.num_computed(id), 0);
      EXPECT_TRUE(small.kv.block_table(id).empty());
      for (const ScheduledChunk& c : out.chunks) EXPECT_NE(c.id, id);
    }
    for (const ScheduledChunk& c : out.chunks) {
      if (!c.sample || small.sched.num_generated(c.id) < max_tokens.at(c.id)) continue;
      const auto t = small.sched.tokens(c.id);
      done[c.id].assign(t.begin(), t.end());
      small.sched.remove(c.id);
    }
  }
  EXPECT_FALSE(small.sched.has_work());
  EXPECT_GT(small.sched.num_preemptions(), 0u);
  EXPECT_FALSE(preempted_once.empty());
  EXPECT_EQ(done, want);
  EXPECT_EQ(small.kv.n_free_blocks(), 6);
}

TEST(Scheduler, PreemptsTheLowestPriorityNewestFirst) {
  // Two blocks of 4 tokens; each request needs a second block at its 5th token.
  Harness h(sched_config(4, 64), KvCacheConfig{2, 4, true});
  ASSERT_EQ(h.sched.add({1, iota_tokens(4, 10), 4, 1}), AddStatus::Ok);
  ASSERT_EQ(h.sched.add({2, iota_tokens(4, 40), 4, 0}), AddStatus::Ok);
  SchedulerOutput out = h.step();                            // both prompts (one block each)
  EXPECT_EQ(chunk_ids(out), (std::vector<uint64_t>{2, 1}));  // priority 0 first
  out = h.step();  // 2 decodes and needs a block: 1 (priority 1) is preempted
  EXPECT_EQ(out.preempted, (std::vector<uint64_t>{1}));
  EXPECT_EQ(chunk_ids(out), (std::vector<uint64_t>{2}));
  EXPECT_EQ(h.sched.num_waiting(), 1);
  EXPECT_EQ(h.sched.num_generated(1), 1);  // it keeps its sampled token
}

TEST(Scheduler, AVictimScheduledEarlierInTheStepLosesItsChunk) {
  // Two blocks of 4 tokens, budget 4. Request 2 (priority 1) decodes; request 1 (priority 0)
  // arrives later and is still catching up on its prompt. In step 3, 2's decode is scheduled
  // first (decodes come first), then 1 needs a block: 2 is the victim, loses its chunk, and its
  // token goes back to the budget.
  Harness h(sched_config(4, 4), KvCacheConfig{2, 4, true});
  ASSERT_EQ(h.sched.add({2, iota_tokens(2, 40), 6, 1}), AddStatus::Ok);
  h.step();  // 2: positions 0-1, one block
  ASSERT_EQ(h.sched.add({1, iota_tokens(6, 10), 2, 0}), AddStatus::Ok);
  SchedulerOutput out = h.step();  // 2 decodes position 2; 1 gets 3 tokens and the last block
  EXPECT_EQ(chunk_ids(out), (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(h.kv.n_free_blocks(), 0);
  out = h.step();
  EXPECT_EQ(out.preempted, (std::vector<uint64_t>{2}));
  ASSERT_EQ(chunk_ids(out), (std::vector<uint64_t>{1}));
  EXPECT_EQ(out.chunks[0].pos0, 3);
  EXPECT_EQ(out.chunks[0].tokens.size(), 3u);
  EXPECT_EQ(out.n_tokens, 3);
  EXPECT_TRUE(out.copies.empty());
  EXPECT_EQ(h.sched.num_generated(2), 2);  // kept, to be recomputed
  EXPECT_EQ(h.sched.num_computed(2), 0);
}

TEST(Scheduler, PrefixHitOnASecondRequestWithTheSamePrompt) {
  Harness h(sched_config(4, 64), KvCacheConfig{16, 4, true});
  const auto prompt = iota_tokens(10);
  ASSERT_EQ(h.sched.add({1, prompt, 2}), AddStatus::Ok);
  h.step();
  EXPECT_EQ(h.sched.num_cached_prompt_tokens(1), 0);
  h.sched.remove(1);
  ASSERT_EQ(h.sched.add({2, prompt, 2}), AddStatus::Ok);
  const SchedulerOutput out = h.step();
  ASSERT_EQ(out.chunks.size(), 1u);
  EXPECT_EQ(out.chunks[0].pos0, 8);  // two full blocks reused
  EXPECT_EQ(out.chunks[0].tokens, std::vector<int32_t>(prompt.begin() + 8, prompt.end()));
  EXPECT_EQ(h.sched.num_cached_prompt_tokens(2), 8);
  EXPECT_EQ(h.kv.prefix_hits(), 8u);
  EXPECT_EQ(h.kv.prefix_queries(), 20u);
}

TEST(Scheduler, ForkSharesBlocksAndCopiesOnWriteOnce) {
  Harness h(sched_config(1, 64), KvCacheConfig{16, 4, true});
  ASSERT_EQ(h.sched.add({1, iota_tokens(5), 8}), AddStatus::Ok);
  h.step();  // 5 computed, 1 sampled
  const auto parent = std::vector<int32_t>(h.sched.tokens(1).begin(), h.sched.tokens(1).end());
  h.sched.fork(1, 2, 777);
  h.sched.check_invariants();
  EXPECT_EQ(h.sched.num_running(), 2);  // above max_num_seqs = 1, by design
  auto child = parent;
  child.back() = 777;
  EXPECT_EQ(std::vector<int32_t>(h.sched.tokens(2).begin(), h.sched.tokens(2).end()), child);
  EXPECT_EQ(h.sched.num_generated(2), 1);
  const auto t1 = h.kv.block_table(1);
  EXPECT_TRUE(
      std::equal(t1.begin(), t1.end(), h.kv.block_table(2).begin(), h.kv.block_table(2).end()));
  const SchedulerOutput out = h.step();  // both decode position 5, in the shared block 1
  ASSERT_EQ(chunk_ids(out), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(out.chunks[1].tokens, std::vector<int32_t>{777});
  ASSERT_EQ(out.copies.size(), 1u);  // the first writer copies, the last writes in place
  EXPECT_EQ(out.chunks[0].block_table[0], out.chunks[1].block_table[0]);
  EXPECT_NE(out.chunks[0].block_table[1], out.chunks[1].block_table[1]);
  EXPECT_THROW(h.sched.fork(1, 2, 5), Error);  // child exists
  EXPECT_THROW(h.sched.fork(9, 3, 5), Error);  // unknown parent
  h.sched.remove(1);
  h.sched.remove(2);
  EXPECT_EQ(h.kv.n_free_blocks(), 16);
}

TEST(Scheduler, UpdateIgnoresRemovedRequestsAndChecksSamples) {
  Harness h(sched_config(4, 64), KvCacheConfig{16, 4, true});
  ASSERT_EQ(h.sched.add({1, iota_tokens(5), 8}), AddStatus::Ok);
  ASSERT_EQ(h.sched.add({2, iota_tokens(6), 8}), AddStatus::Ok);
  SchedulerOutput out = h.sched.schedule();
  ASSERT_EQ(out.chunks.size(), 2u);
  // A sampled chunk without a token is refused, and nothing changes.
  const std::vector<std::pair<uint64_t, int32_t>> only_one = {{1, 3}};
  EXPECT_THROW(h.sched.update(out, only_one), Error);
  EXPECT_EQ(h.sched.num_computed(1), 0);
  h.sched.remove(2);  // cancelled during the forward pass
  const std::vector<std::pair<uint64_t, int32_t>> both = {{1, 3}, {2, 4}};
  h.sched.update(out, both);
  h.sched.check_invariants();
  EXPECT_EQ(h.sched.num_generated(1), 1);
  EXPECT_EQ(h.kv.num_requests(), 1);
  // Unknown ids are a no-op for remove.
  h.sched.remove(42);
  EXPECT_THROW(h.sched.num_generated(42), Error);
}

TEST(Scheduler, SamplingBeyondMaxTokensIsRefused) {
  Harness h(sched_config(4, 64), KvCacheConfig{16, 4, true});
  ASSERT_EQ(h.sched.add({1, iota_tokens(3), 1}), AddStatus::Ok);
  h.step();
  EXPECT_EQ(h.sched.num_generated(1), 1);  // the caller should now remove it
  const SchedulerOutput out = h.sched.schedule();
  const std::vector<std::pair<uint64_t, int32_t>> one = {{1, 3}};
  EXPECT_THROW(h.sched.update(out, one), Error);
  h.sched.remove(1);
  EXPECT_EQ(h.kv.n_free_blocks(), 16);
}

// ---------------------------------------------------------------------------------------------
// Randomized property test. A simulated model runner keeps, for every block, a hash of the whole
// prefix written at each slot (as keys and values depend on it); each step it performs the copies,
// checks that every chunk reads back exactly its request's earlier tokens (this checks prefix hits,
// copy-on-write and block tables end to end), and checks that every write lands in a block that
// only this request holds and that is not in the prefix cache. A shadow copy of every request's
// tokens checks that tokens only ever grow by appends, and every id issued ends finished, aborted,
// or refused with the predicted reason.
// ---------------------------------------------------------------------------------------------

namespace {

class PropertyRun {
 public:
  explicit PropertyRun(uint64_t seed) : rng_(seed) {
    kcfg_.block_size = pick(1, 3) == 1 ? 1 : (pick(0, 1) ? 2 : 4);
    kcfg_.n_blocks = static_cast<int32_t>(pick((24 + kcfg_.block_size - 1) / kcfg_.block_size,
                                               (40 + kcfg_.block_size - 1) / kcfg_.block_size));
    kcfg_.prefix_caching = pick(0, 4) != 0;
    scfg_ = sched_config(static_cast<int32_t>(pick(2, 6)), pick(3, 16), pick(4, 10), 40);
    kv_ = std::make_unique<KvCacheManager>(kcfg_);
    sched_ = std::make_unique<Scheduler>(scfg_, *kv_);
    slots_.assign(static_cast<size_t>(kcfg_.n_blocks),
                  std::vector<uint64_t>(static_cast<size_t>(kcfg_.block_size), 0));
    for (auto& base : bases_)
      for (int i = 0; i < 16; ++i) base.push_back(static_cast<int32_t>(pick(0, kVocab - 1)));
  }

  void run(int n_ops) {
    for (int op = 0; op < n_ops; ++op) {
      const int64_t r = pick(0, 99);
      if (r < 30)
        add();
      else if (r < 90)
        step(/*draining=*/false);
      else
        abort_random();
      check_all();
      if (::testing::Test::HasFatalFailure()) return;
    }
    drain();
  }

  uint64_t preemptions() const { return sched_->num_preemptions(); }
  int64_t copies() const { return copies_seen_; }
  uint64_t prefix_hits() const { return kv_->prefix_hits(); }

 private:
  static constexpr int32_t kVocab = 24;  // small, so equal blocks and prefix hits are common

  struct Shadow {
    std::vector<int32_t> tokens;
    int32_t max_tokens = 0;
    int64_t n_prompt = 0;
    int64_t computed = 0;
    bool running = false;
  };

  int64_t pick(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  bool chance(int percent) { return pick(0, 99) < percent; }
  uint64_t random_live() {
    auto it = live_.begin();
    std::advance(it, pick(0, static_cast<int64_t>(live_.size()) - 1));
    return it->first;
  }

  void add() {
    SeqSpec spec;
    const bool dup = !live_.empty() && chance(5);
    spec.id = dup ? random_live() : next_id_++;
    if (chance(60)) {  // a shared prefix, then a random tail
      const auto& base = bases_[static_cast<size_t>(pick(0, 2))];
      spec.prompt.assign(base.begin(), base.begin() + pick(1, 16));
    }
    for (int64_t n = pick(spec.prompt.empty() ? 1 : 0, 8); n > 0; --n)
      spec.prompt.push_back(static_cast<int32_t>(pick(0, kVocab - 1)));
    spec.max_tokens = static_cast<int32_t>(pick(1, 16));
    spec.priority = static_cast<int32_t>(pick(0, 2));

    const int64_t total = static_cast<int64_t>(spec.prompt.size()) + spec.max_tokens;
    AddStatus want = AddStatus::Ok;
    if (dup)
      want = AddStatus::Duplicate;
    else if (total > scfg_.max_model_len)
      want = AddStatus::TooLong;
    else if (kv_->blocks_needed(total) > kcfg_.n_blocks)
      want = AddStatus::NeverFits;
    else if (sched_->num_waiting() >= scfg_.max_waiting)
      want = AddStatus::QueueFull;
    Shadow s;
    s.tokens = spec.prompt;
    s.max_tokens = spec.max_tokens;
    s.n_prompt = static_cast<int64_t>(spec.prompt.size());
    const uint64_t id = spec.id;
    const AddStatus got = sched_->add(std::move(spec));
    ASSERT_EQ(got, want) << "request " << id;
    if (dup) return;  // the live request is untouched
    if (got == AddStatus::Ok)
      live_.emplace(id, std::move(s));
    else
      refused_.emplace(id, got);
  }

  void abort_random() {
    if (live_.empty()) return;
    const uint64_t id = random_live();
    sched_->remove(id);
    live_.erase(id);
    aborted_.insert(id);
    sched_->remove(id);  // twice: a no-op
  }

  void step(bool draining) {
    const bool had_work = sched_->has_work();
    const SchedulerOutput out = sched_->schedule();
    ASSERT_NO_THROW(sched_->check_invariants());
    ASSERT_TRUE(!had_work || !out.chunks.empty()) << "no progress with work pending";

    // Preempted requests: back to waiting, recomputed later.
    for (const uint64_t id : out.preempted) {
      ASSERT_TRUE(live_.contains(id));
      Shadow& s = live_.at(id);
      ASSERT_TRUE(s.running);
      s.running = false;
      s.computed = 0;
      awaiting_reschedule_.insert(id);
      ASSERT_FALSE(sched_->is_running(id));
    }

    // The output itself.
    int64_t n_tokens = 0;
    std::set<uint64_t> ids;
    for (const ScheduledChunk& c : out.chunks) {
      ASSERT_TRUE(live_.contains(c.id));
      ASSERT_TRUE(ids.insert(c.id).second) << "request " << c.id << " scheduled twice";
      Shadow& s = live_.at(c.id);
      const int64_t n = static_cast<int64_t>(c.tokens.size());
      const int64_t size = static_cast<int64_t>(s.tokens.size());
      ASSERT_GT(n, 0);
      if (s.running) {
        ASSERT_EQ(c.pos0, s.computed);
      } else {  // newly (re)admitted: a prefix-cache hit covers whole blocks, never the last token
        ASSERT_EQ(c.pos0 % kcfg_.block_size, 0);
        ASSERT_LT(c.pos0, size);
        if (!kcfg_.prefix_caching) {
          ASSERT_EQ(c.pos0, 0);
        }
        awaiting_reschedule_.erase(c.id);
      }
      ASSERT_LE(c.pos0 + n, size);
      ASSERT_TRUE(std::equal(c.tokens.begin(), c.tokens.end(), s.tokens.begin() + c.pos0));
      ASSERT_EQ(c.sample, c.pos0 + n == size);
      ASSERT_GE(static_cast<int64_t>(c.block_table.size()), kv_->blocks_needed(c.pos0 + n));
      n_tokens += n;
    }
    {
      // Decodes first: once a non-decode chunk appears, no decode follows.
      bool non_decode = false;
      for (const ScheduledChunk& c : out.chunks) {
        const Shadow& s = live_.at(c.id);
        const bool decode = s.running && static_cast<int64_t>(s.tokens.size()) - s.computed == 1;
        ASSERT_FALSE(non_decode && decode) << "decode chunk after a prompt chunk";
        non_decode = non_decode || !decode;
      }
    }
    ASSERT_EQ(out.n_tokens, n_tokens);
    ASSERT_LE(n_tokens, scfg_.max_batch_tokens);

    // The simulated forward pass: copies, then reads and writes.
    for (const kv::BlockCopy& cp : out.copies) {
      ASSERT_NE(cp.src, cp.dst);
      slots_[static_cast<size_t>(cp.dst)] = slots_[static_cast<size_t>(cp.src)];
      ++copies_seen_;
    }
    const int64_t bs = kcfg_.block_size;
    for (const ScheduledChunk& c : out.chunks) {
      const Shadow& s = live_.at(c.id);
      auto slot = [&](int64_t p) -> uint64_t& {
        const BlockId b = c.block_table[static_cast<size_t>(p / bs)];
        return slots_[static_cast<size_t>(b)][static_cast<size_t>(p % bs)];
      };
      // Like real keys and values, an entry depends on the whole prefix up to its position.
      uint64_t prefix = 0;
      for (int64_t p = 0; p < c.pos0; ++p) {
        prefix = kv::hash_block(prefix, std::span(&s.tokens[static_cast<size_t>(p)], 1));
        ASSERT_EQ(slot(p), prefix)
            << "request " << c.id << " reads a wrong KV entry at position " << p;
      }
      for (int64_t p = c.pos0; p < c.pos0 + static_cast<int64_t>(c.tokens.size()); ++p) {
        const BlockId b = c.block_table[static_cast<size_t>(p / bs)];
        ASSERT_EQ(kv_->pool().ref_count(b), 1) << "write into shared block " << b;
        ASSERT_FALSE(kv_->pool().is_cached(b)) << "write into cached block " << b;
        prefix = kv::hash_block(prefix, std::span(&s.tokens[static_cast<size_t>(p)], 1));
        slot(p) = prefix;
      }
    }

    // Cancellations while the forward pass runs.
    if (!draining && !out.chunks.empty() && chance(10)) {
      const uint64_t id =
          out.chunks[static_cast<size_t>(pick(0, static_cast<int64_t>(out.chunks.size()) - 1))].id;
      sched_->remove(id);
      live_.erase(id);
      aborted_.insert(id);
    }

    // Samples (including ones for cancelled requests, which update() ignores).
    std::vector<std::pair<uint64_t, int32_t>> sampled;
    for (const ScheduledChunk& c : out.chunks)
      if (c.sample) sampled.emplace_back(c.id, static_cast<int32_t>(pick(0, kVocab - 1)));
    ASSERT_NO_THROW(sched_->update(out, sampled));
    for (const ScheduledChunk& c : out.chunks) {
      if (!live_.contains(c.id)) continue;
      Shadow& s = live_.at(c.id);
      s.running = true;
      s.computed = c.pos0 + static_cast<int64_t>(c.tokens.size());
    }
    for (const auto& [id, t] : sampled)
      if (live_.contains(id)) live_.at(id).tokens.push_back(t);

    // Finishes (length or a random "eos"), then forks of some that go on.
    for (const ScheduledChunk& c : out.chunks) {
      if (!c.sample || !live_.contains(c.id)) continue;
      const Shadow& s = live_.at(c.id);
      const int64_t generated = static_cast<int64_t>(s.tokens.size()) - s.n_prompt;
      ASSERT_EQ(sched_->num_generated(c.id), generated);
      if (generated >= s.max_tokens || chance(10)) {
        sched_->remove(c.id);
        live_.erase(c.id);
        finished_.insert(c.id);
        continue;
      }
      if (!draining && chance(generated == 1 ? 30 : 5)) {
        const uint64_t child = next_id_++;
        const int32_t first = static_cast<int32_t>(pick(0, kVocab - 1));
        ASSERT_NO_THROW(sched_->fork(c.id, child, first));
        Shadow cs = s;
        cs.tokens.back() = first;
        live_.emplace(child, std::move(cs));
        ++forks_;
      }
    }
  }

  void check_all() {
    ASSERT_NO_THROW(sched_->check_invariants());
    ASSERT_EQ(sched_->num_running() + sched_->num_waiting(), static_cast<int64_t>(live_.size()));
    for (const auto& [id, s] : live_) {
      const auto t = sched_->tokens(id);
      ASSERT_TRUE(std::equal(t.begin(), t.end(), s.tokens.begin(), s.tokens.end()))
          << "tokens of request " << id << " changed other than by appends";
      ASSERT_EQ(sched_->is_running(id), s.running);
      if (s.running) {
        ASSERT_EQ(sched_->num_computed(id), s.computed);
      }
    }
  }

  void drain() {
    for (int i = 0; i < 100000 && sched_->has_work(); ++i) {
      step(/*draining=*/true);
      check_all();
      if (::testing::Test::HasFatalFailure()) return;
    }
    ASSERT_FALSE(sched_->has_work());
    ASSERT_TRUE(live_.empty());
    ASSERT_EQ(kv_->n_free_blocks(), kv_->n_blocks());
    ASSERT_EQ(kv_->num_requests(), 0);
    ASSERT_NO_THROW(kv_->check_invariants());
    // Every preempted request came back, unless the test cancelled it.
    for (const uint64_t id : awaiting_reschedule_) ASSERT_TRUE(aborted_.contains(id)) << id;
    // Every id issued has exactly one fate.
    for (uint64_t id = 0; id < next_id_; ++id) {
      const int fates = finished_.contains(id) + aborted_.contains(id) + refused_.contains(id);
      ASSERT_EQ(fates, 1) << "request " << id;
    }
  }

  std::mt19937_64 rng_;
  KvCacheConfig kcfg_;
  SchedulerConfig scfg_;
  std::unique_ptr<KvCacheManager> kv_;
  std::unique_ptr<Scheduler> sched_;
  std::vector<std::vector<uint64_t>> slots_;  // the simulated KV: block -> slot -> prefix hash
  std::vector<int32_t> bases_[3];             // shared prompt prefixes
  std::map<uint64_t, Shadow> live_;
  std::set<uint64_t> finished_, aborted_, awaiting_reschedule_;
  std::map<uint64_t, AddStatus> refused_;
  uint64_t next_id_ = 0;
  int64_t copies_seen_ = 0;
  int64_t forks_ = 0;
};

}  // namespace

TEST(SchedulerProperty, RandomizedAddStepAbortForkKeepsEveryInvariant) {
  uint64_t preemptions = 0, hits = 0;
  int64_t copies = 0;
  for (const uint64_t seed : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u}) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    PropertyRun run(seed);
    run.run(5000);
    if (::testing::Test::HasFatalFailure()) return;
    preemptions += run.preemptions();
    hits += run.prefix_hits();
    copies += run.copies();
  }
  // The tiny pools must have exercised the interesting paths.
  EXPECT_GT(preemptions, 100u);
  EXPECT_GT(hits, 0u);
  EXPECT_GT(copies, 0);
}
