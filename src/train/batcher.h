// Micro-batches for training, drawn from a TokenDataset in a seeded order that can be resumed.
//
// Two ways to cut the data into units (each unit is a run of consecutive tokens; its first n-1
// tokens are the inputs and the last n-1 the targets, shifted by one):
//   windows       the whole token stream, documents back to back, cut into windows of
//                 seq_len + 1 tokens that overlap by one (window k starts at token k * seq_len), so
//                 every token but the first is a target exactly once per epoch; the last
//                 (n_tokens - 1) % seq_len tokens are not visited. A micro-batch holds batch_size
//                 windows: batch_size sequences of seq_len tokens. Attention may cross the
//                 <|endoftext|> between documents inside a window (as GPT-2 style training does).
//   token budget  each document is one sequence, split into pieces of at most max_seq_len + 1
//                 tokens (overlapping by one) when longer; pieces are packed, in order, into a
//                 micro-batch until the next one would exceed token_budget input tokens, so the
//                 number of sequences per micro-batch adapts to their lengths.
// Units are visited in a fresh seeded permutation every epoch (Fisher-Yates over SplitMix64 with
// derive_seed(seed, epoch): identical on every platform). The stream runs on across epochs: a
// micro-batch may take its last units from the next epoch's order. A target whose token is
// outside the loss mask is Batch::kIgnore.
//
// The cursor (seed, epoch, position in the epoch's order) is the whole state: state() /
// restore() resume bit-identically. The permutation is rebuilt from the seed (O(units)).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "train/batch.h"
#include "train/dataset.h"

namespace brisk::train {

struct BatcherConfig {
  enum class Mode { kWindows, kTokenBudget };
  Mode mode = Mode::kWindows;
  int64_t seq_len = 256;        // windows: input tokens per sequence
  int64_t batch_size = 8;       // windows: sequences per micro-batch
  int64_t token_budget = 4096;  // token budget: most input tokens per micro-batch
  int64_t max_seq_len = 1024;   // token budget: most input tokens per sequence (<= token_budget)
  uint64_t seed = 0;
  void validate() const;  // throws brisk::Error naming the bad field
};

// The resumable cursor. `fingerprint` ties it to the dataset and the unit shapes: restoring into
// a batcher over other data or another configuration is an error, not a silent misalignment.
struct BatcherState {
  uint64_t seed = 0, epoch = 0, position = 0, fingerprint = 0;
  static constexpr size_t kBytes = 40;
  std::vector<uint8_t> to_bytes() const;  // kBytes: tag, version, the four fields (little-endian)
  static BatcherState from_bytes(std::span<const uint8_t> b);  // throws brisk::Error if malformed
  bool operator==(const BatcherState&) const = default;
};

class Batcher {
 public:
  // Throws brisk::Error when the configuration is invalid or the dataset too small for one unit.
  Batcher(std::shared_ptr<const TokenDataset> data, const BatcherConfig& cfg);

  // The next micro-batch (the stream never ends; epochs roll over).
  Batch next();
  // How many of the next micro-batches, from the current cursor, make one optimizer step of about
  // global_tokens input tokens: the count whose total is closest to it (at least 1). Windows
  // mode: round(global_tokens / (batch_size * seq_len)). Does not move the cursor.
  int64_t plan_global_batch(int64_t global_tokens) const;

  int64_t units_per_epoch() const {
    return static_cast<int64_t>(units_.empty() ? n_windows_ : units_.size());
  }
  uint64_t epoch() const { return epoch_; }
  uint64_t position() const { return pos_; }
  BatcherState state() const;
  void restore(const BatcherState& s);

 private:
  struct Unit {
    int64_t begin;  // first token in the stream
    int64_t len;    // tokens including the one-token overlap (inputs = len - 1)
  };
  struct Cursor {
    uint64_t epoch, pos;
  };
  Unit unit_at(Cursor c) const;   // the unit at a cursor
  void advance(Cursor& c) const;  // one unit on, rolling epochs over
  const std::vector<uint32_t>& order(uint64_t epoch) const;
  // Units of one micro-batch starting at `c` (advances `c`); returns their input-token count.
  int64_t take(Cursor& c, std::vector<Unit>* out) const;

  std::shared_ptr<const TokenDataset> data_;
  BatcherConfig cfg_;
  uint64_t n_windows_ = 0;   // windows mode
  std::vector<Unit> units_;  // token-budget mode: the document pieces
  uint64_t fingerprint_ = 0;
  uint64_t seed_ = 0, epoch_ = 0, pos_ = 0;
  // Permutations of two epochs (slot = epoch & 1), so a look-ahead into the next epoch does not
  // evict the current one.
  mutable std::array<std::vector<uint32_t>, 2> order_;
  mutable std::array<uint64_t, 2> order_epoch_{UINT64_MAX, UINT64_MAX};
  mutable std::array<uint64_t, 2> order_seed_{0, 0};
  std::vector<int32_t> scratch_tok_;
  std::vector<uint8_t> scratch_mask_;
};

}  // namespace brisk::train
