#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace brisk::engine {

void SamplingParams::validate(int32_t n_vocab) const {
  check(n_vocab > 0, "sampling: n_vocab must be > 0, got ", n_vocab);
  check(std::isfinite(temperature) && temperature >= 0.0f,
        "sampling: temperature must be a finite number >= 0, got ", temperature);
  check(std::isfinite(top_p) && top_p > 0.0f && top_p <= 1.0f,
        "sampling: top_p must be in (0, 1], got ", top_p);
  check(std::isfinite(min_p) && min_p >= 0.0f && min_p <= 1.0f,
        "sampling: min_p must be in [0, 1], got ", min_p);
  check(std::isfinite(repeat_penalty) && repeat_penalty > 0.0f,
        "sampling: repeat_penalty must be a finite number > 0, got ", repeat_penalty);
  check(repeat_last_n >= -1, "sampling: repeat_last_n must be >= -1 (-1: whole history), got ",
        repeat_last_n);
  check(std::isfinite(frequency_penalty), "sampling: frequency_penalty must be finite, got ",
        frequency_penalty);
  check(std::isfinite(presence_penalty), "sampling: presence_penalty must be finite, got ",
        presence_penalty);
  for (const auto& [id, bias] : logit_bias) {
    check(id >= 0 && id < n_vocab, "sampling: logit_bias token id ", id, " is out of range [0, ",
          n_vocab, ")");
    // -inf bans a token; +inf or NaN would poison the softmax.
    check(!std::isnan(bias) && bias != std::numeric_limits<float>::infinity(),
          "sampling: logit_bias for token ", id, " must be a number or -inf, got ", bias);
  }
}

namespace {

// counts must be all zero on entry (size >= logits.size()); it is all zero again on return, at a
// cost of O(window) rather than O(n_vocab).
void penalise(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& p,
              std::vector<int32_t>& counts) {
  if (p.repeat_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f) return;
  size_t n = history.size();
  if (p.repeat_last_n >= 0) n = std::min(n, static_cast<size_t>(p.repeat_last_n));
  if (n == 0) return;
  const std::span<const int32_t> window = history.last(n);
  const int64_t n_vocab = static_cast<int64_t>(logits.size());
  for (int32_t t : window) {
    if (t < 0 || t >= n_vocab) {
      for (int32_t u : window) {  // leave the buffer clean before throwing
        if (u >= 0 && u < n_vocab) counts[static_cast<size_t>(u)] = 0;
      }
      fail("sampling: history token id ", t, " is out of range [0, ", n_vocab, ")");
    }
    ++counts[static_cast<size_t>(t)];
  }
  for (int32_t t : window) {
    int32_t& c = counts[static_cast<size_t>(t)];
    if (c == 0) continue;  // already applied for an earlier occurrence
    float& l = logits[static_cast<size_t>(t)];
    l = l > 0.0f ? l / p.repeat_penalty : l * p.repeat_penalty;
    l -= static_cast<float>(c) * p.frequency_penalty + p.presence_penalty;
    c = 0;
  }
}

// Total order for candidates: higher logit first, then lower id, so sorting is deterministic.
bool by_logit(const Candidate& a, const Candidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

void apply_penalties(std::span<float> logits, std::span<const int32_t> history,
                     const SamplingParams& p) {
  std::vector<int32_t> counts(logits.size(), 0);
  penalise(logits, history, p, counts);
}

Xoshiro256::Xoshiro256(uint64_t seed) {
  // splitmix64 never yields four zero words in a row, so the state is never all zero.
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Xoshiro256::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Xoshiro256::uniform() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

Sampler::Sampler(SamplingParams params, int32_t n_vocab)
    : params_(std::move(params)), n_vocab_(n_vocab), rng_(params_.seed) {
  params_.validate(n_vocab);
  logits_.resize(static_cast<size_t>(n_vocab));
  counts_.assign(static_cast<size_t>(n_vocab), 0);
  cand_.reserve(static_cast<size_t>(n_vocab));
}

void Sampler::reset() {
  rng_ = Xoshiro256(params_.seed);
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  check(logits.size() == static_cast<size_t>(n_vocab_), "sampling: got ", logits.size(),
        " logits, expected n_vocab = ", n_vocab_);
  for (size_t i = 0; i < logits.size(); ++i) {
    // NaN or +inf would break the sort's ordering and the softmax; it means the model diverged.
    // -inf is fine: it is how a token is masked.
    if (std::isnan(logits[i]) || logits[i] == std::numeric_limits<float>::infinity())
      fail("sampling: logit of token ", i, " is ", logits[i], " (the model diverged)");
    logits_[i] = logits[i];
  }
  for (const auto& [id, bias] : params_.logit_bias) logits_[static_cast<size_t>(id)] += bias;
  penalise(logits_, history, params_, counts_);
  cand_.clear();

  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (params_.greedy()) {
    int32_t best = 0;
    for (int32_t i = 1; i < n_vocab_; ++i) {
      if (logits_[static_cast<size_t>(i)] > logits_[static_cast<size_t>(best)])
        best = i;  // ties keep the lower id
    }
    check(logits_[static_cast<size_t>(best)] > kNegInf,
          "sampling: every token has logit -inf (banned by logit_bias?)");
    return best;
  }

  // Banned (-inf) tokens can never be drawn; dropping them here keeps the later stages simple.
  for (int32_t i = 0; i < n_vocab_; ++i) {
    const float l = logits_[static_cast<size_t>(i)];
    if (l > kNegInf) cand_.push_back({i, l, 0.0f});
  }
  check(!cand_.empty(), "sampling: every token has logit -inf (banned by logit_bias?)");

  // top-k. Temperature > 0 does not change the order, so it can come first.
  bool sorted = false;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < cand_.size()) {
    const auto k = static_cast<ptrdiff_t>(params_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.end(), by_logit);
    cand_.resize(static_cast<size_t>(k));
    sorted = true;
  }

  // Temperature and softmax, in double so that the sums do not depend on summation luck.
  float max_logit = cand_[0].logit;
  for (const Candidate& c : cand_) max_logit = std::max(max_logit, c.logit);
  const double inv_t = 1.0 / static_cast<double>(params_.temperature);
  double sum = 0.0;
  for (Candidate& c : cand_) {
    const double e = std::exp((static_cast<double>(c.logit) - max_logit) * inv_t);
    c.p = static_cast<float>(e);
    sum += e;
  }
  // The max token has e = 1, so sum >= 1.
  double p_max = 0.0;
  for (Candidate& c : cand_) {
    c.p = static_cast<float>(c.p / sum);
    p_max = std::max(p_max, static_cast<double>(c.p));
  }

  // min-p and top-p each keep a prefix of the candidates in descending order, judged on the same
  // (not yet renormalised) probabilities, so the result is the shorter prefix whichever runs
  // first. min-p is a linear filter, so it runs first and leaves top-p less to sort. The most
  // likely token always survives both.
  if (params_.min_p > 0.0f) {
    const double threshold = static_cast<double>(params_.min_p) * p_max;
    std::erase_if(cand_, [&](const Candidate& c) { return static_cast<double>(c.p) < threshold; });
  }

  // top-p: the smallest prefix (by descending probability) whose mass reaches top_p. Unsorted
  // (no top-k), the list is sorted a block at a time, 256 then 4x more each round
  // (nth_element to find the block, then sort it), stopping once the nucleus is inside: O(V) per
  // round plus O(n log n) for a nucleus of n tokens, instead of a full O(V log V) sort.
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    size_t done = 0;  // cand_[0, done) holds the `done` largest, sorted
    size_t n = sorted ? cand_.size() : std::min<size_t>(256, cand_.size());
    size_t keep = cand_.size();  // if rounding leaves the total just under top_p: keep all
    for (;;) {
      if (!sorted) {
        const auto first = cand_.begin() + static_cast<ptrdiff_t>(done);
        const auto last = cand_.begin() + static_cast<ptrdiff_t>(n);
        if (last != cand_.end()) std::nth_element(first, last, cand_.end(), by_logit);
        std::sort(first, last, by_logit);
      }
      size_t i = done;
      for (; i < n; ++i) {
        cum += cand_[i].p;
        if (cum >= params_.top_p) break;
      }
      if (i < n) {
        keep = i + 1;
        break;
      }
      if (n == cand_.size()) break;
      done = n;
      n = std::min(n * 4, cand_.size());
    }
    cand_.resize(keep);
  }

  // Draw by inverse CDF over the unnormalised survivors, then renormalise for last_candidates().
  double total = 0.0;
  for (const Candidate& c : cand_) total += c.p;
  const double u = rng_.uniform() * total;
  int32_t chosen = cand_.back().id;  // if u lands in the rounding slack at the very top
  double cum = 0.0;
  for (const Candidate& c : cand_) {
    cum += c.p;
    if (u < cum) {
      chosen = c.id;
      break;
    }
  }
  for (Candidate& c : cand_) c.p = static_cast<float>(c.p / total);
  return chosen;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (size_t i = 0; i < stops_.size(); ++i)
    check(!stops_[i].empty(), "stop: stop string ", i, " is empty");
}

StopMatcher::Result StopMatcher::push(std::string_view text) {
  Result r;
  if (stopped_) {
    r.stopped = true;
    return r;
  }
  pending_.append(text);

  // The earliest full match wins: generation ends where the first stop string begins.
  size_t stop_at = std::string::npos;
  for (const std::string& s : stops_) stop_at = std::min(stop_at, pending_.find(s));
  if (stop_at != std::string::npos) {
    r.emit = pending_.substr(0, stop_at);
    r.stopped = stopped_ = true;
    pending_.clear();
    return r;
  }

  // Hold back the longest tail of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, pending_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (std::string_view(pending_).substr(pending_.size() - len) ==
          std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  size_t split = pending_.size() - hold;
  // A stop string that starts with a UTF-8 continuation byte could put the split inside a
  // character; widen the held tail back to the character's first byte.
  while (split > 0 && split < pending_.size() &&
         (static_cast<unsigned char>(pending_[split]) & 0xC0) == 0x80)
    --split;
  r.emit = pending_.substr(0, split);
  pending_.erase(0, split);
  return r;
}

std::string StopMatcher::flush() {
  std::string out;
  if (!stopped_) out.swap(pending_);
  pending_.clear();
  return out;
}

}  // namespace brisk::engine
