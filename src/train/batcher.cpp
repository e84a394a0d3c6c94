#include "train/batcher.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "train/rng.h"

namespace brisk::train {

namespace {

constexpr uint32_t kStateTag = 0x54534242;  // "BBST" little-endian
constexpr uint32_t kStateVersion = 1;

}  // namespace

void BatcherConfig::validate() const {
  if (mode == Mode::kWindows) {
    if (seq_len < 1) fail("batcher: seq_len must be at least 1 (got ", seq_len, ")");
    if (batch_size < 1) fail("batcher: batch_size must be at least 1 (got ", batch_size, ")");
    if (seq_len > (int64_t{1} << 30)) fail("batcher: seq_len ", seq_len, " is too large");
  } else {
    if (max_seq_len < 1) fail("batcher: max_seq_len must be at least 1 (got ", max_seq_len, ")");
    if (token_budget < max_seq_len)
      fail("batcher: token_budget ", token_budget, " is below max_seq_len ", max_seq_len,
           " (a full-length sequence must fit in a micro-batch)");
    if (max_seq_len > (int64_t{1} << 30))
      fail("batcher: max_seq_len ", max_seq_len, " is too large");
  }
}

std::vector<uint8_t> BatcherState::to_bytes() const {
  std::vector<uint8_t> b(kBytes);
  const uint32_t head[2] = {kStateTag, kStateVersion};
  const uint64_t body[4] = {seed, epoch, position, fingerprint};
  std::memcpy(b.data(), head, 8);
  std::memcpy(b.data() + 8, body, 32);
  return b;
}

BatcherState BatcherState::from_bytes(std::span<const uint8_t> b) {
  if (b.size() != kBytes) fail("batcher state: ", b.size(), " bytes (want ", kBytes, ")");
  uint32_t head[2];
  uint64_t body[4];
  std::memcpy(head, b.data(), 8);
  std::memcpy(body, b.data() + 8, 32);
  if (head[0] != kStateTag) fail("batcher state: bad tag (not a batcher state)");
  if (head[1] != kStateVersion)
    fail("batcher state: version ", head[1], " (want ", kStateVersion, ")");
  return BatcherState{body[0], body[1], body[2], body[3]};
}

Batcher::Batcher(std::shared_ptr<const TokenDataset> data, const BatcherConfig& cfg)
    : data_(std::move(data)), cfg_(cfg), seed_(cfg.seed) {
  cfg_.validate();
  const int64_t n_tokens = data_->n_tokens();
  uint64_t shape;
  if (cfg_.mode == BatcherConfig::Mode::kWindows) {
    if (n_tokens < cfg_.seq_len + 1)
      fail(data_->path(), ": ", n_tokens,
           " tokens, fewer than one window of seq_len + 1 = ", cfg_.seq_len + 1);
    n_windows_ = static_cast<uint64_t>((n_tokens - 1) / cfg_.seq_len);
    shape = mix64(1 ^ mix64(static_cast<uint64_t>(cfg_.seq_len) ^
                            mix64(static_cast<uint64_t>(cfg_.batch_size))));
  } else {
    for (int64_t d = 0; d < data_->n_docs(); ++d) {
      const int64_t b = data_->doc_begin(d), n = data_->doc_size(d);
      for (int64_t s = 0; s + 1 < n; s += cfg_.max_seq_len)
        units_.push_back({b + s, std::min(cfg_.max_seq_len + 1, n - s)});
    }
    if (units_.empty()) fail(data_->path(), ": no document has two tokens (nothing to predict)");
    shape = mix64(2 ^ mix64(static_cast<uint64_t>(cfg_.max_seq_len) ^
                            mix64(static_cast<uint64_t>(cfg_.token_budget))));
  }
  if (static_cast<uint64_t>(units_per_epoch()) > UINT32_MAX)
    fail(data_->path(), ": too many units per epoch (", units_per_epoch(), ")");
  fingerprint_ = mix64(shape ^ mix64(static_cast<uint64_t>(n_tokens) ^
                                     mix64(static_cast<uint64_t>(data_->n_docs()))));
}

const std::vector<uint32_t>& Batcher::order(uint64_t epoch) const {
  const size_t slot = epoch & 1;
  if (order_epoch_[slot] != epoch || order_seed_[slot] != seed_) {
    std::vector<uint32_t>& o = order_[slot];
    o.resize(static_cast<size_t>(units_per_epoch()));
    std::iota(o.begin(), o.end(), 0u);
    seeded_shuffle(o, derive_seed(seed_, epoch));
    order_epoch_[slot] = epoch;
    order_seed_[slot] = seed_;
  }
  return order_[slot];
}

Batcher::Unit Batcher::unit_at(Cursor c) const {
  const uint32_t k = order(c.epoch)[c.pos];
  if (!units_.empty()) return units_[k];
  return {static_cast<int64_t>(k) * cfg_.seq_len, cfg_.seq_len + 1};
}

void Batcher::advance(Cursor& c) const {
  if (++c.pos == static_cast<uint64_t>(units_per_epoch())) {
    c.pos = 0;
    ++c.epoch;
  }
}

int64_t Batcher::take(Cursor& c, std::vector<Unit>* out) const {
  int64_t n = 0;
  if (cfg_.mode == BatcherConfig::Mode::kWindows) {
    for (int64_t i = 0; i < cfg_.batch_size; ++i) {
      if (out) out->push_back(unit_at(c));
      n += cfg_.seq_len;
      advance(c);
    }
    return n;
  }
  for (;;) {
    const Unit u = unit_at(c);
    if (n > 0 && n + u.len - 1 > cfg_.token_budget) break;
    if (out) out->push_back(u);
    n += u.len - 1;
    advance(c);
  }
  return n;
}

Batch Batcher::next() {
  Cursor c{epoch_, pos_};
  std::vector<Unit> units;
  take(c, &units);
  Batch b;
  int64_t total = 0;
  for (const Unit& u : units) total += u.len - 1;
  b.tokens.reserve(static_cast<size_t>(total));
  b.targets.reserve(static_cast<size_t>(total));
  b.seq_start.reserve(units.size() + 1);
  b.seq_start.push_back(0);
  for (const Unit& u : units) {
    scratch_tok_.resize(static_cast<size_t>(u.len));
    scratch_mask_.resize(static_cast<size_t>(u.len));
    data_->read(u.begin, u.begin + u.len, scratch_tok_.data(), scratch_mask_.data());
    for (int64_t j = 0; j + 1 < u.len; ++j) {
      b.tokens.push_back(scratch_tok_[static_cast<size_t>(j)]);
      b.targets.push_back(scratch_mask_[static_cast<size_t>(j + 1)]
                              ? scratch_tok_[static_cast<size_t>(j + 1)]
                              : Batch::kIgnore);
    }
    b.seq_start.push_back(static_cast<int64_t>(b.tokens.size()));
  }
  epoch_ = c.epoch;
  pos_ = c.pos;
  return b;
}

int64_t Batcher::plan_global_batch(int64_t global_tokens) const {
  if (global_tokens <= 0) return 1;
  Cursor c{epoch_, pos_};
  int64_t count = 0, sum = 0;
  for (;;) {
    const int64_t n = take(c, nullptr);
    const int64_t prev = sum;
    sum += n;
    ++count;
    if (sum >= global_tokens) {
      // Stop before this micro-batch when that lands closer (ties: fewer micro-batches).
      if (count > 1 && global_tokens - prev <= sum - global_tokens) --count;
      return count;
    }
  }
}

BatcherState Batcher::state() const {
  return BatcherState{seed_, epoch_, pos_, fingerprint_};
}

void Batcher::restore(const BatcherState& s) {
  if (s.fingerprint != fingerprint_)
    fail(data_->path(),
         ": batcher state belongs to another dataset or batch configuration (fingerprint "
         "mismatch)");
  if (s.position >= static_cast<uint64_t>(units_per_epoch()))
    fail("batcher state: position ", s.position, " past the ", units_per_epoch(),
         " units of an epoch");
  seed_ = s.seed;
  epoch_ = s.epoch;
  pos_ = s.position;
}

}  // namespace brisk::train
