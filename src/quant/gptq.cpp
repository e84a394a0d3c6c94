// GPTQ over GGUF block types (see gptq.h for the method and its costs).
//
// Notation: n = cols, H (n, n) the Hessian, U (n, n) the upper Cholesky factor of H^-1
// (H^-1 = U^T U), taken in the visiting order of the columns (permuted by act_order). Quantising
// column p with error e_p = (w_p - q_p) / U_pp and subtracting e_p * U[p, p+1:] from the later
// columns is the optimal (OBS) correction of the remaining weights for the error of column p.
// Lazy batches: the correction inside a batch of B columns is applied column by column, the one
// to the columns after the batch once per batch as a GEMM: W[:, i2:] -= E (r, B) . U[i1:i2, i2:].
//
// Rows are independent given U: they are cut into fixed chunks of kRowChunk rows (a function of
// the shape only), each chunk runs the whole column loop with its own GEMM calls, so every output
// byte is computed the same way whatever the number of threads (OpenBLAS splits a GEMM's output
// among its own threads, never the reduction, so even its threading does not change a value).
#include "quant/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "quant/block_grid.h"

// LAPACK (shipped inside OpenBLAS): Cholesky factorisation and inverse from it. The trailing
// size_t is the hidden length of the character argument of the Fortran ABI.
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uplo_len);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uplo_len);
}

namespace brisk::quant {
namespace {

constexpr int64_t kRowChunk = 16;

// Upper factor U (n, n) row-major f32 with H^-1 = U^T U, from A = the damped, permuted H in
// double (destroyed). A symmetric matrix is its own transpose, so LAPACK's column-major lower
// triangle is our row-major upper one: potrf('L') gives A = L L^T with L^T upper row-major, potri
// turns it into the same triangle of A^-1, and potrf('L') again gives H^-1 = U^T U.
std::vector<float> inverse_factor(std::vector<double>& A, int64_t n, double damp) {
  const int ni = static_cast<int>(n);
  int info = 0;
  dpotrf_("L", &ni, A.data(), &ni, &info, 1);
  check(info == 0, "gptq: the Hessian is not positive definite after damping (damp = ", damp,
        ", failed at column ", info, "); use a larger damp or more calibration data");
  dpotri_("L", &ni, A.data(), &ni, &info, 1);
  check(info == 0, "gptq: the Hessian is singular after damping (damp = ", damp, ")");
  dpotrf_("L", &ni, A.data(), &ni, &info, 1);
  check(info == 0, "gptq: the inverse Hessian is not positive definite (damp = ", damp,
        "); use a larger damp");
  std::vector<float> U(static_cast<size_t>(n * n), 0.0f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = r; c < n; ++c) U[r * n + c] = static_cast<float>(A[r * n + c]);
  return U;
}

struct Problem {
  float* W;
  int64_t rows, cols;
  DType type;
  int64_t bs;        // elements per quantisation block
  size_t type_size;  // bytes per block
  size_t row_bytes;
  int64_t batch;  // lazy-batch width, a multiple of bs
  bool act_order;
  const std::vector<int64_t>& perm;  // visiting position p -> original column
  const std::vector<char>& dead;     // original column -> H_ii was 0
  const std::vector<float>& U;       // (cols, cols), in visiting order
  uint8_t* out;
};

// GPTQ for rows [r0, r1) (at most kRowChunk of them).
void quantize_rows(const Problem& P, int64_t r0, int64_t r1) {
  const int64_t r = r1 - r0, n = P.cols, bs = P.bs;
  const kernels::QuantKernels& qk = kernels::quant_kernels(P.type);
  // work (r, n): the weights in visiting order, corrected as columns get quantised; a quantised
  // column holds its value q. xfix / rtn (r, n), original order: the weights each block's scales
  // were fitted to, and from_float's own dequantised values for them.
  std::vector<float> work(static_cast<size_t>(r * n)), xfix(work.size()), rtn(work.size());
  std::vector<float> err(static_cast<size_t>(r * P.batch));
  auto block_of = [&](int64_t k, int64_t c) {
    return P.out + static_cast<size_t>(r0 + k) * P.row_bytes +
           static_cast<size_t>(c / bs) * P.type_size;
  };
  for (int64_t k = 0; k < r; ++k)
    for (int64_t p = 0; p < n; ++p) {
      const int64_t c = P.perm[static_cast<size_t>(p)];
      work[k * n + p] = P.dead[static_cast<size_t>(c)] ? 0.0f : P.W[(r0 + k) * n + c];
    }
  // Fits block (k, c / bs) to the bs weights at x (original order) and records them.
  auto fix_block = [&](int64_t k, int64_t c, const float* x) {
    uint8_t* b = block_of(k, c);
    qk.from_float(x, b, bs);
    std::memcpy(&xfix[k * n + c], x, static_cast<size_t>(bs) * sizeof(float));
    qk.to_float(b, &rtn[k * n + c], bs);
  };
  if (P.act_order) {  // static groups: every block's scales from the original (dead-zeroed) row
    std::vector<float> row(static_cast<size_t>(n));
    for (int64_t k = 0; k < r; ++k) {
      for (int64_t p = 0; p < n; ++p) row[P.perm[static_cast<size_t>(p)]] = work[k * n + p];
      for (int64_t c = 0; c < n; c += bs) fix_block(k, c, &row[c]);
    }
  }
  for (int64_t i1 = 0; i1 < n; i1 += P.batch) {
    const int64_t i2 = std::min(n, i1 + P.batch);
    for (int64_t p = i1; p < i2; ++p) {
      const int64_t c = P.perm[static_cast<size_t>(p)];
      // Without act_order p == c, and a block's columns are all corrected by now (the batch
      // holds whole blocks): fit its scales to them.
      if (!P.act_order && c % bs == 0)
        for (int64_t k = 0; k < r; ++k) fix_block(k, c, &work[k * n + p]);
      const float* u = &P.U[static_cast<size_t>(p * n)];
      const float inv_d = 1.0f / u[p];
      for (int64_t k = 0; k < r; ++k) {
        float* wk = &work[k * n];
        const float w = wk[p];
        float q;
        if (w == xfix[k * n + c]) {
          // Unchanged since the scales were fitted: keep from_float's own code (its rounding
          // can differ from the nearest grid point by a tie), so that H = I gives RTN exactly.
          q = rtn[k * n + c];
        } else {
          const ElementGrid g = element_grid(P.type, block_of(k, c), c % bs);
          q = g.value(nearest_code(g, w));
        }
        wk[p] = q;
        const float e = (w - q) * inv_d;
        err[k * P.batch + (p - i1)] = e;
        for (int64_t j = p + 1; j < i2; ++j) wk[j] -= e * u[j];
      }
    }
    if (i2 < n)  // work[:, i2:] -= err (r, i2 - i1) . U[i1:i2, i2:]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(r),
                  static_cast<int>(n - i2), static_cast<int>(i2 - i1), -1.0f, err.data(),
                  static_cast<int>(P.batch), &P.U[static_cast<size_t>(i1 * n + i2)],
                  static_cast<int>(n), 1.0f, &work[i2], static_cast<int>(n));
  }
  // Write the codes of the values used (all grid points of their blocks), then W = to_float.
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t k = 0; k < r; ++k) {
    for (int64_t p = 0; p < n; ++p) row[P.perm[static_cast<size_t>(p)]] = work[k * n + p];
    for (int64_t c = 0; c < n; c += bs) set_codes(P.type, block_of(k, c), &row[c]);
    qk.to_float(block_of(k, 0), P.W + (r0 + k) * n, n);
  }
}

}  // namespace

std::vector<uint8_t> gptq_quantize(float* W, int64_t rows, int64_t cols, const float* H, DType type,
                                   const GptqOptions& o, ThreadPool* pool) {
  check(has_block_grid(type), "gptq: storage type ", dtype_name(type),
        " is not supported (q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K are)");
  const int64_t bs = grid_block_size(type);
  check(rows >= 0 && cols > 0 && cols % bs == 0, "gptq: a (", rows, ", ", cols,
        ") matrix cannot be stored as ", dtype_name(type),
        ": the row length must be a positive multiple of ", bs);
  check(cols <= (int64_t{1} << 16), "gptq: ", cols, " columns is more than the 65536 supported");
  check(std::isfinite(o.damp) && o.damp >= 0, "gptq: damp must be finite and >= 0, got ", o.damp);
  check(o.block > 0, "gptq: block (lazy-batch width) must be positive, got ", o.block);
  check(W != nullptr && H != nullptr, "gptq: null weight or Hessian");
  const size_t rb = row_bytes(type, cols);
  std::vector<uint8_t> out(static_cast<size_t>(rows) * rb);
  if (rows == 0) return out;
  for (int64_t i = 0; i < rows * cols; ++i)
    check(std::isfinite(W[i]), "gptq: weight (", i / cols, ", ", i % cols, ") is not finite");

  // H in double, symmetrised, in visiting order; dead inputs (H_ii == 0: never active) get
  // H_ii = 1 and zero weight.
  const size_t n = static_cast<size_t>(cols);
  std::vector<double> diag(n);
  std::vector<char> dead(n, 0);
  double diag_sum = 0;
  for (size_t i = 0; i < n; ++i) {
    diag[i] = H[i * n + i];
    if (diag[i] == 0) {
      dead[i] = 1;
      diag[i] = 1;
    }
    diag_sum += diag[i];
  }
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (o.act_order)  // decreasing H_ii, ties in column order
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return diag[a] > diag[b]; });
  std::vector<double> A(n * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      const size_t pi = static_cast<size_t>(perm[i]), pj = static_cast<size_t>(perm[j]);
      check(std::isfinite(H[pi * n + pj]), "gptq: Hessian entry (", pi, ", ", pj,
            ") is not finite");
      A[i * n + j] =
          i == j
              ? diag[pi]
              : 0.5 * (static_cast<double>(H[pi * n + pj]) + static_cast<double>(H[pj * n + pi]));
    }
  const double add = o.damp * diag_sum / static_cast<double>(cols);
  for (size_t i = 0; i < n; ++i) A[i * n + i] += add;
  const std::vector<float> U = inverse_factor(A, cols, o.damp);
  A = {};

  const int64_t batch = std::min(cols, (std::min(o.block, cols) + bs - 1) / bs * bs);
  const Problem P{W,           rows, cols, type, bs,        dtype_layout(type).type_size, rb, batch,
                  o.act_order, perm, dead, U,    out.data()};
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  auto run = [&](int64_t b, int64_t e, int) {
    for (int64_t ch = b; ch < e; ++ch)
      quantize_rows(P, ch * kRowChunk, std::min(rows, (ch + 1) * kRowChunk));
  };
  if (pool && pool->size() > 1 && chunks > 1) {
    // As the training GEMMs do: brisk's pool owns the cores, OpenBLAS's own threads stay unused.
    openblas_set_num_threads(1);
    pool->parallel_for(chunks, run, 1);
  } else {
    run(0, chunks, 0);
  }
  return out;
}

}  // namespace brisk::quant
