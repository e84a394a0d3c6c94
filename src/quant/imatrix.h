// Importance matrix: per weight matrix, the mean squared calibration activation of each input
// column, E[x_j^2]. Quantising with it (quantize_row_weighted) weighs each weight's rounding error
// by how strongly its input is driven, the "importance-weighted" search of issue 6.
//
// File format: a GGUF with general.type = "imatrix", imatrix.tokens (u64, calibration tokens),
// imatrix.dataset (string), and one F32 tensor of shape (cols) per weight matrix under the
// weight's own name ("blk.0.attn_q.weight").
#pragma once
#include <map>
#include <string>
#include <vector>

#include "quant/calib.h"

namespace brisk::quant {

struct Imatrix {
  std::map<std::string, std::vector<float>> values;
  uint64_t tokens = 0;
  std::string dataset;
  const std::vector<float>* find(const std::string& tensor) const;
};

// Collects E[x^2] per column at every site (weights untouched).
class ImatrixCollector final : public CalibProcessor {
 public:
  void process(const CalibSite& s, const float* X, int64_t n, float* W, CalibModel& m) override;
  Imatrix take(std::string dataset);

 private:
  Imatrix im_;
  int64_t n_ = 0;
  std::string last_;  // the previous site's tensor
};

void write_imatrix(const Imatrix& im, const std::string& path);
// Throws brisk::Error for a file that is not an imatrix GGUF or holds a malformed entry.
Imatrix read_imatrix(const std::string& path);

}  // namespace brisk::quant
