// Token sampling and stop strings.
//
// Sampler turns one row of logits (n_vocab floats) into a token id. It owns three reusable buffers
// of O(n_vocab) (the working logits, the candidate list, the per-token counts for penalties), so a
// call allocates nothing after the first. Cost per call: O(V) for the copy, bias and penalties,
// plus O(V log k) for top-k, or O(V log n) for a top-p nucleus of n tokens when top-k is off.
//
// The pipeline follows the common engines: logit bias -> repetition penalty -> frequency/presence
// penalties -> greedy argmax, or top-k -> temperature -> softmax -> top-p -> min-p -> renormalise
// -> draw. The random stream is our own xoshiro256** (seeded through splitmix64), so a seed gives
// the same tokens with every compiler and standard library (std:: distributions are
// implementation-defined). The only platform dependence left is std::exp's last-bit rounding.
//
// StopMatcher scans streamed text for stop strings, holding back any tail that could still grow
// into one.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace brisk::engine {

struct SamplingParams {
  float temperature = 0.8f;     // 0: greedy (argmax, ties -> lowest id)
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // 1: off
  float min_p = 0.05f;          // 0: off; keeps tokens with p >= min_p * p_max
  float repeat_penalty = 1.0f;  // llama-style: divide positive logits, multiply negative ones
  int32_t repeat_last_n = 64;   // window of history for all penalties; 0: off, -1: whole history
  float frequency_penalty = 0;  // OpenAI-style: logit -= count * frequency_penalty
  float presence_penalty = 0;   //               logit -= (count > 0) * presence_penalty
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logit; -inf bans the token
  uint64_t seed = 0;

  // Throws brisk::Error naming the field at fault.
  void validate(int32_t n_vocab) const;
  bool greedy() const { return temperature == 0.0f; }
};

// Applies the repetition, frequency and presence penalties in place, over the last repeat_last_n
// tokens of history (prompt + generated so far; the same window for all three, as llama.cpp does).
// Each distinct token is penalised once, by its count in the window. Allocates a count buffer of
// logits.size(); the Sampler uses its own reusable one.
void apply_penalties(std::span<float> logits, std::span<const int32_t> history,
                     const SamplingParams& p);

// xoshiro256** (Blackman & Vigna), seeded by expanding the seed with splitmix64 as its authors
// recommend. Small, fast, and bit-identical everywhere.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed);
  uint64_t next();
  double uniform();  // in [0, 1), 53 random bits

 private:
  uint64_t s_[4];
};

// One surviving token of the last draw: its logit after bias and penalties, and its final
// (renormalised) probability.
struct Candidate {
  int32_t id;
  float logit;
  float p;
};

class Sampler {
 public:
  Sampler(SamplingParams params, int32_t n_vocab);  // validates params

  // logits: n_vocab floats for the next position. history: prompt + generated tokens so far.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

  // Restarts the random stream from the seed (same seed + same inputs -> same tokens again).
  void reset();

  // The distribution the last non-greedy draw used, after every filter (for tests and logprobs);
  // order is by descending logit when top-k or top-p sorted it, by id otherwise. Empty after a
  // greedy step.
  std::span<const Candidate> last_candidates() const { return cand_; }
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  int32_t n_vocab_;
  Xoshiro256 rng_;
  std::vector<float> logits_;    // working copy, n_vocab
  std::vector<int32_t> counts_;  // penalty counts, n_vocab, all zero between calls
  std::vector<Candidate> cand_;
};

// Streams text through a set of stop strings. push() returns the text that is safe to show now:
// everything except a tail that is a prefix of some stop string (it may complete on a later push).
// When a stop string appears, the text before it is emitted, it and everything after are dropped,
// and stopped is set; later pushes return nothing. Inputs are whole UTF-8 characters; the held
// tail always starts on a character boundary, so emitted text is whole characters too.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);  // empty strings are an error

  struct Result {
    std::string emit;
    bool stopped = false;
  };
  Result push(std::string_view text);
  // Releases the held tail at end of generation (nothing after a stop).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // held-back tail, shorter than the longest stop string
  bool stopped_ = false;
};

}  // namespace brisk::engine
