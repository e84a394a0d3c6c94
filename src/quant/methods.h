// The calibration-pass processors of GPTQ and pruning (quant/gptq.h, quant/prune.h hold the
// per-matrix algorithms): each sees a layer's inputs, forms H = (2/n) X^T X, rewrites the weights
// in place (GPTQ: to their dequantised values, keeping the blocks for the output file; pruning:
// zeros), and the rest of the pass runs on the rewritten weights.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "quant/calib.h"
#include "quant/gptq.h"
#include "quant/prune.h"

namespace brisk::quant {

class GptqProcessor final : public CalibProcessor {
 public:
  GptqProcessor(std::function<DType(const std::string&)> type_of, GptqOptions o, ThreadPool& pool)
      : type_of_(std::move(type_of)), o_(o), pool_(pool) {}
  void process(const CalibSite& s, const float* X, int64_t n, float* W, CalibModel& m) override;
  struct Out {
    DType type;
    std::vector<uint8_t> bytes;
  };
  std::map<std::string, Out>& results() { return out_; }

 private:
  std::function<DType(const std::string&)> type_of_;
  GptqOptions o_;
  ThreadPool& pool_;
  std::map<std::string, Out> out_;
  std::vector<float> H_;  // of the last site's input (reused by sites with the same input)
};

// Prunes the 7 matrices of every layer; the output projection is left dense, as in the papers.
class PruneProcessor final : public CalibProcessor {
 public:
  PruneProcessor(PruneOptions o, ThreadPool& pool) : o_(o), pool_(pool) {}
  void process(const CalibSite& s, const float* X, int64_t n, float* W, CalibModel& m) override;
  int64_t zeros() const { return zeros_; }
  int64_t total() const { return total_; }

 private:
  PruneOptions o_;
  ThreadPool& pool_;
  int64_t zeros_ = 0, total_ = 0;
  std::vector<float> H_;  // of the last site's input (reused by sites with the same input)
};

}  // namespace brisk::quant
