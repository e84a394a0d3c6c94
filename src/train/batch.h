// A training micro-batch: variable-length sequences packed back to back (no padding).
//
// Sequence s is tokens [seq_start[s], seq_start[s + 1]); attention never crosses a sequence
// boundary and positions restart at 0 in each sequence. targets[i] is the id the model should
// predict after tokens[i], or kIgnore where no loss is taken (the last token of a window without a
// successor, or prompt/user tokens in chat fine-tuning).
#pragma once
#include <cstdint>
#include <vector>

namespace brisk::train {

struct Batch {
  static constexpr int32_t kIgnore = -1;
  std::vector<int32_t> tokens;     // (N) input ids
  std::vector<int32_t> targets;    // (N) next-token ids or kIgnore
  std::vector<int64_t> seq_start;  // (n_seq + 1) offsets into tokens, seq_start[0] == 0

  int64_t n_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_seqs() const {
    return seq_start.empty() ? 0 : static_cast<int64_t>(seq_start.size()) - 1;
  }
  int64_t n_loss_tokens() const {
    int64_t n = 0;
    for (int32_t t : targets) n += t != kIgnore;
    return n;
  }
};

}  // namespace brisk::train
