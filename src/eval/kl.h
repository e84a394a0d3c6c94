// KL-divergence of a model's next-token distributions to a base model's, the second yardstick of
// compression (issue 6): `brisk perplexity --save-logits BASE` on the base model writes its
// distributions, `brisk perplexity --kl-base BASE` on a compressed model compares against them.
//
// The file holds the base's log-probabilities at every scored position, in f32 so that small
// divergences (Q8_0 is ~1e-4 nats) are not buried under storage rounding:
//   header (48 bytes): "BRKL", u32 version = 1, u32 n_vocab, u32 reserved, u64 n_rows,
//                      i64 ctx, i64 stride, u64 hash of the token ids
//   n_rows x n_vocab f32 log-probabilities, row i = the i-th scored position.
// The token hash makes a comparison on different text (or a different tokenizer) an error.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace brisk::eval {

struct LogprobHeader {
  uint32_t n_vocab = 0;
  uint64_t n_rows = 0;
  int64_t ctx = 0, stride = 0;
  uint64_t tokens_hash = 0;
};

uint64_t hash_tokens(std::span<const int32_t> tokens);

// ln sum_i exp(z_i) over n logits, shifted by their maximum and summed in double.
double log_sum_exp(const float* z, int64_t n);

// Writes header + rows atomically (the file appears complete or not at all).
class LogprobWriter {
 public:
  LogprobWriter(const std::string& path, const LogprobHeader& h);
  ~LogprobWriter();
  void add(const float* logits);              // n_vocab logits -> log-softmax row
  void add(const float* logits, double lse);  // with their log_sum_exp already known
  void commit();                              // throws unless exactly n_rows rows were added

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class LogprobReader {
 public:
  // Throws brisk::Error for a missing, foreign, truncated or inconsistent file.
  explicit LogprobReader(const std::string& path);
  const LogprobHeader& header() const { return h_; }
  const float* row(uint64_t i) const;

 private:
  std::shared_ptr<MappedFile> f_;
  LogprobHeader h_;
};

struct KlStats {
  int64_t n = 0;
  double kl_mean = 0, kl_stderr = 0, kl_median = 0, kl_p99 = 0, kl_max = 0;
  double top1_agree = 0;  // fraction of positions where both argmaxes agree
  double base_mean_nll = 0, base_ppl = 0;
};

// Accumulates per-position KL(base || model) = sum_v p_base(v) (log p_base(v) - log p_model(v)).
class KlAccumulator {
 public:
  explicit KlAccumulator(int64_t n_vocab) : V_(n_vocab) {}
  void add(const float* base_logprobs, const float* logits, int32_t target);
  void add(const float* base_logprobs, const float* logits, int32_t target, double lse);
  KlStats result() const;

 private:
  int64_t V_;
  std::vector<double> kl_;
  double base_nll_ = 0;
  int64_t agree_ = 0;
};

}  // namespace brisk::eval
