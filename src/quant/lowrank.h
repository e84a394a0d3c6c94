// Low-rank factorisation of weight matrices by truncated SVD (`brisk lowrank`).
//
// A matrix W (rows = n_out, cols = n_in; f32 row-major, i.e. GGUF layout) with thin SVD
// W = U S V^T (s_0 >= s_1 >= ... >= 0) is replaced by the best rank-r approximation (Eckart-Young)
// W ~= B A,  A = sqrt(S_r) V_r^T (r, n_in),  B = U_r sqrt(S_r) (n_out, r).
// The singular values are split as sqrt(S) on each side so that A and B have the same scale
// (both are stored in F16 by default; putting all of S in B would leave A orthonormal with entries
// ~ 1/sqrt(n_in) and B with the whole dynamic range). The Frobenius error is
// ||W - B A||_F = sqrt(sum_{i >= r} s_i^2); the retained energy is sum_{i<r} s_i^2 / sum s_i^2.
// The SVD runs in double precision through LAPACK's dgesdd (OpenBLAS).
//
// GGUF convention (docs/ARCHITECTURE.md, "Low-rank factorised matrices"): a factorised layer
// matrix N (e.g. "blk.3.attn_q.weight", ggml ne [n_in, n_out]) is absent and replaced by
//   N.lr_a  ggml ne [n_in, r]   math A (r, n_in)
//   N.lr_b  ggml ne [r, n_out]  math B (n_out, r)
// (F32 or F16 as written here; the model loader accepts any matrix storage type), and the file
// has `brisk.lowrank = true` and `brisk.lowrank.count` (u32, the number of factorised matrices).
// The runtime (model/model.h, LowRankPair) computes y = (x A^T) B^T.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "io/model_file.h"
#include "model/model.h"

namespace brisk::quant {

// The factor suffixes belong to the model loader, which reads them (model/model.h).
using model::kLowRankASuffix;
using model::kLowRankBSuffix;
inline constexpr const char* kLowRankKey = "brisk.lowrank";
inline constexpr const char* kLowRankCountKey = "brisk.lowrank.count";

// Thin SVD of a (rows, cols) f32 row-major matrix: W = U diag(s) V^T, k = min(rows, cols).
struct Svd {
  int64_t rows = 0, cols = 0;
  std::vector<double> s;   // (k), descending, >= 0
  std::vector<double> u;   // (rows, k) row-major: column j is the left singular vector u_j
  std::vector<double> vt;  // (k, cols) row-major: row j is the right singular vector v_j^T
};
// Throws brisk::Error for an empty matrix, non-finite entries or a LAPACK failure.
Svd svd(const float* w, int64_t rows, int64_t cols);

// sum_{i<r} s_i^2 / sum_i s_i^2 (1 for a zero matrix).
double retained_energy(std::span<const double> s, int64_t r);
// The smallest r >= 1 whose retained energy is >= energy, energy in (0, 1]. energy = 1 keeps
// every nonzero singular value.
int64_t rank_for_energy(std::span<const double> s, double energy);

// The rank-r factors of an Svd, r in [1, min(rows, cols)] (r = min is exact up to rounding; a
// larger r is an error: it cannot be represented and could never save anything).
struct LowRank {
  int64_t rows = 0, cols = 0, rank = 0;
  std::vector<float> a;  // (rank, cols) row-major: sqrt(s_j) v_j^T
  std::vector<float> b;  // (rows, rank) row-major: sqrt(s_j) u_j
  double energy = 0;     // retained energy
  double error = 0;      // ||W - B A||_F = sqrt(sum of the discarded s_i^2)
  double rel_error = 0;  // error / ||W||_F (0 for a zero matrix)
};
LowRank truncate(const Svd& d, int64_t rank);

// What `brisk lowrank` factorises. Exactly one of rank (> 0) and energy (in (0, 1]) is set.
struct LowRankOptions {
  int64_t rank = 0;
  double energy = 0;
  std::vector<int64_t> layers;       // layer indices; empty: all layers
  std::vector<std::string> tensors;  // attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up,
                                     // ffn_down; empty: all seven
  DType type = DType::F16;           // storage of the factors: F16 or F32
  // Keep a matrix dense when r * (n_in + n_out) >= n_in * n_out (the factors would not be
  // smaller), which includes every r >= min(n_in, n_out). Tests turn it off to factorise at full
  // rank.
  bool only_if_smaller = true;
};

// The seven factorisable layer matrices' short names, in block order.
std::span<const char* const> lowrank_tensor_names();

struct LowRankTensorReport {
  std::string name;  // "blk.0.attn_q.weight"
  int64_t n_in = 0, n_out = 0;
  int64_t rank = 0;      // chosen rank (also for a matrix kept dense)
  double energy = 0;     // retained energy at that rank
  double rel_error = 0;  // ||W - B A||_F / ||W||_F
  bool factorised = false;
  std::string note;  // why it was kept dense
  uint64_t params_before = 0, params_after = 0;
};

struct LowRankReport {
  std::vector<LowRankTensorReport> tensors;      // every selected matrix, in file order
  uint64_t params_before = 0, params_after = 0;  // all tensors of the file
  int n_factorised = 0;
};

// Replaces the selected layer matrices of `m` (in memory) by their factors, following the GGUF
// convention above; every other tensor and all metadata stay as they are (any storage type).
// Matrices are dequantised to f32 one at a time. Throws brisk::Error for bad options (no rank or
// energy, both, out of range, unknown tensor name, a layer the model does not have, a type other
// than F16 / F32) or a file without selected matrices. progress(i, n, name) before each matrix.
LowRankReport lowrank_model(
    io::ModelFile& m, const LowRankOptions& opts, ThreadPool& pool,
    const std::function<void(size_t, size_t, const std::string&)>& progress = {});

}  // namespace brisk::quant
