// Weight pruning of one linear layer's matrix (issue 6): the algorithms alone, on raw f32 rows.
// The calibration driver (model forward over calibration text, per-layer H) and the CLI live
// elsewhere and call prune_matrix once per weight matrix.
//
// Methods (all keep exactly the requested number of zeros per output row, or per N:M group):
//  - Magnitude: prune the smallest |W_ij| of each row (or N:M group). No calibration data.
//  - Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2, per row (or group); ||X_j|| comes from
//    diag(H). No weight update.
//  - SparseGPT (Frantar & Alistarh 2023): Optimal-Brain-Surgeon pruning column by column with the
//    upper Cholesky factor of the damped H^-1; each pruned weight's error is spread over the
//    columns to its right. Mask chosen per lazy batch of `block` columns by w^2 / Hinv_jj^2.
//
// Costs (SparseGPT): H^-1 and its Cholesky factor in double, cols^2 * 8 bytes (about 1 GB for
// cols = 11008) and ~1.3 cols^3 flops in LAPACK (OpenBLAS threads); the weight updates are about
// rows * cols^2 flops, one OpenBLAS sgemm per batch. Magnitude and Wanda are O(rows * cols).
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/thread_pool.h"

namespace brisk::quant {

enum class PruneMethod { Magnitude, Wanda, SparseGPT };

// "magnitude", "wanda", "sparsegpt"; nullopt otherwise.
std::optional<PruneMethod> parse_prune_method(std::string_view s);
const char* prune_method_name(PruneMethod m);

struct PruneOptions {
  PruneMethod method = PruneMethod::Magnitude;
  double sparsity = 0.5;  // unstructured: fraction of zeros per row, in [0, 1)
  int n = 0, m = 0;       // N:M semi-structured when m > 0: n zeros in every m consecutive
                          // weights along a row (the input dimension), e.g. 2:4; sparsity ignored
  double damp = 0.01;     // SparseGPT: fraction of mean(diag H) added to the diagonal
  int64_t block = 128;    // SparseGPT lazy-batch width (columns); rounded down to a multiple of m
};

// W: (rows, cols) f32 row-major, GGUF layout (rows = output features, cols = input features).
// H: (cols, cols) row-major, = (2/N) X^T X of the calibration inputs X (N, cols). Magnitude
// ignores it (may be nullptr); Wanda uses only its diagonal (||X_j|| = sqrt(H_jj * N / 2); the
// scale does not change the ranking); SparseGPT uses all of it. Columns with H_jj == 0 (inputs
// never active) are "dead": their weights do not affect the output, so they score 0 and go first;
// SparseGPT sets their H_jj to 1 (as GPTQ does) to keep H invertible.
// Prunes in place: per row exactly floor(cols * sparsity) zeros (unstructured), or n in each
// group of m (N:M). Returns the number of weights set to zero. Results do not depend on the
// number of threads in `pool` (nullptr: the calling thread alone).
// Throws brisk::Error on a bad setting: sparsity outside [0, 1), n:m with n >= m or cols not a
// multiple of m, H missing for wanda/sparsegpt, H not finite, damped H not positive definite.
int64_t prune_matrix(float* W, int64_t rows, int64_t cols, const float* H, const PruneOptions& o,
                     ThreadPool* pool);

struct NMPattern {
  int n = 0, m = 0;
};
// Parses "2:4" style patterns (n zeros per m weights); nullopt when malformed, n < 1 or n >= m.
std::optional<NMPattern> parse_nm_pattern(std::string_view s);

}  // namespace brisk::quant
