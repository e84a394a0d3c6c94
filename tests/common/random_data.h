// Seeded Gaussian test data, shared by the kernel, quantisation and GPTQ tests.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace brisk::test {

// n draws of N(0, scale^2) from rng.
inline std::vector<float> gaussian(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// The same from a fresh generator seeded with `seed`.
inline std::vector<float> gaussian(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  return gaussian(n, rng, scale);
}

}  // namespace brisk::test
