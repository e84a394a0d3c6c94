// AWQ (activation-aware weight quantisation, Lin et al. 2023): before rounding, scale each input
// channel j of a group of matrices that share an input by s_j = mean|x_j|^alpha (normalised so
// that sqrt(max s * min s) = 1), divide the same channel out of whatever produced the input (an
// RMSNorm weight or the rows of the previous linear layer), and quantise W diag(s). Salient
// channels (large activations) then get finer effective steps. alpha is searched on a grid per
// group to minimise the group's output error on calibration inputs:
//   err(s) = sum_m || X W_m^T - X (Q(W_m diag(s)) diag(1/s))^T ||_F^2
// computed through the Gram matrix G = X^T X as sum_m sum(D_m G (.) D_m), D_m = W_m - W_eff.
// alpha = 0 (s = 1) is plain round-to-nearest and is on the grid, so the search never returns a
// scaling with a larger error than RTN on the objective it optimises.
//
// Groups in a llama layer: {q, k, v} after attn_norm; {gate, up} after ffn_norm; {down} after up
// (rows of up); {o} after v (rows of v) only when there is no grouped-query sharing (n_head ==
// n_head_kv), since with GQA one v row feeds several o columns (o is then only clipped); {output}
// after output_norm, only when the embeddings are not tied (a tied matrix is also the input
// embedding table, which a column scaling would change; it is then only clipped).
//
// Then AWQ's second step, weight clipping: for each row and quantisation block of every scaled
// matrix, the ratio r in a grid over [0.5, 1] such that clamping the block to +-r max|w| before
// rounding minimises the block's own output error d^T G_bb d (G_bb: the block's diagonal block of
// the Gram matrix of the scaled inputs). A smaller step on the bulk of a block can be worth more
// than representing its extreme weight exactly. The clipping is kept only when the group's full
// error (cross-block terms included) drops, so the result again never exceeds RTN's.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "quant/calib.h"

namespace brisk::quant {

struct AwqMatrix {
  const float* W;  // (rows, cols)
  int64_t rows;
  DType type;                                // the storage type it will be quantised to
  const std::vector<float>* clip = nullptr;  // clip ratios (rows x blocks), or none
};

struct AwqResult {
  std::vector<float> s;  // (cols)
  double alpha = 0;
  double err_rtn = 0, err_best = 0;  // the objective at alpha = 0 and at the chosen alpha
};

// G: (cols, cols) = X^T X; act: (cols) mean |x_j|. grid + 1 values of alpha in [0, 1].
AwqResult awq_search(const float* G, const float* act, int64_t cols,
                     const std::vector<AwqMatrix>& mats, int grid, ThreadPool& pool);

// Clip ratios (rows x cols / block) of W (rows, cols), already scaled, for inputs with Gram
// matrix G (cols, cols); steps + 1 ratios from 1 down to 0.5.
std::vector<float> awq_clip_search(const float* W, int64_t rows, int64_t cols, DType type,
                                   const float* G, int steps, ThreadPool& pool);
// Clamps every block of row i to +-ratio * its max |w|.
void awq_apply_clip(float* W, int64_t rows, int64_t cols, int64_t block,
                    const std::vector<float>& ratios);

// The group error for a given scaling and optional clipping (exposed for tests).
double awq_error(const float* G, int64_t cols, const std::vector<AwqMatrix>& mats,
                 const std::vector<float>& s, ThreadPool& pool);

// Searches every group during a calibration pass; apply() folds the scales into the model
// afterwards (the pass itself runs on the unscaled weights, which compute the same function).
class AwqProcessor final : public CalibProcessor {
 public:
  // clip = false: the scale search only (whose folds preserve the float model exactly).
  AwqProcessor(std::function<DType(const std::string&)> type_of, int grid, int64_t max_tokens,
               ThreadPool& pool, bool clip = true)
      : type_of_(std::move(type_of)),
        grid_(grid),
        max_tokens_(max_tokens),
        pool_(pool),
        clip_(clip) {}
  void process(const CalibSite& s, const float* X, int64_t n, float* W, CalibModel& m) override;
  void apply(CalibModel& m) const;
  struct GroupLog {
    std::string group;                            // "blk.0.qkv", ...
    double alpha, err_rtn, err_scaled, err_best;  // err_best: after clipping
    bool clipped;
  };
  const std::vector<GroupLog>& log() const { return log_; }

 private:
  struct Fold {
    int64_t layer;
    int kind;  // 0 qkv <- attn_norm, 1 o <- v rows, 2 gate/up <- ffn_norm, 3 down <- up rows,
               // 4 output <- output_norm
    std::vector<float> s;                                           // empty: no scaling
    std::vector<std::pair<std::string, std::vector<float>>> clips;  // per tensor, may be empty
  };
  std::function<DType(const std::string&)> type_of_;
  int grid_;
  int64_t max_tokens_;
  ThreadPool& pool_;
  bool clip_;
  std::vector<Fold> folds_;
  std::vector<GroupLog> log_;
};

}  // namespace brisk::quant
