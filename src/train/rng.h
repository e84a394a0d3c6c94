// Deterministic randomness for the data pipeline: the same seed gives the same shuffles and splits
// on every platform and standard library. std::mt19937_64 would be portable, but the standard
// distributions (uniform_int_distribution, std::shuffle) are not specified bit for bit, so the
// bounded draw and the Fisher-Yates shuffle are written out here over SplitMix64.
#pragma once
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace brisk::train {

// SplitMix64's output function: a bijective 64-bit mixer (good avalanche, cheap).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One SplitMix64 step as a pure function of its state: a counter-based generator (element i of a
// stream is splitmix64(key + i)), so values do not depend on how work is split over threads.
inline uint64_t splitmix64(uint64_t x) {
  return mix64(x + 0x9E3779B97F4A7C15ull);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    return mix64(state_);
  }
  // Uniform in [0, n), n > 0, without modulo bias (rejects the top partial range).
  uint64_t below(uint64_t n) {
    const uint64_t limit = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const uint64_t x = next();
      if (x >= limit) return x % n;
    }
  }

 private:
  uint64_t state_;
};

// The seed of stream `k` derived from a user seed (epochs, splits): independent-looking streams.
inline uint64_t derive_seed(uint64_t seed, uint64_t k) {
  return mix64(seed ^ mix64(k + 0x632BE59BD9B4E019ull));
}

// Fisher-Yates, high index down; identical everywhere for a given seed.
template <class T>
void seeded_shuffle(std::vector<T>& v, uint64_t seed) {
  SplitMix64 rng(seed);
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.below(i));
    std::swap(v[i - 1], v[j]);
  }
}

// FNV-1a over the bytes, then mixed with the seed: a stable 64-bit content hash.
inline uint64_t hash_bytes(std::string_view s, uint64_t seed) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return mix64(h ^ mix64(seed));
}

}  // namespace brisk::train
