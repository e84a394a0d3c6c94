#include "quant/prune.h"

#include <cblas.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/error.h"

// LAPACK from OpenBLAS (column-major). The trailing length is the hidden Fortran length of `uplo`;
// OpenBLAS's own C versions ignore it.
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uplo_len);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uplo_len);
}

namespace brisk::quant {

std::optional<PruneMethod> parse_prune_method(std::string_view s) {
  if (s == "magnitude") return PruneMethod::Magnitude;
  if (s == "wanda") return PruneMethod::Wanda;
  if (s == "sparsegpt") return PruneMethod::SparseGPT;
  return std::nullopt;
}

const char* prune_method_name(PruneMethod m) {
  switch (m) {
    case PruneMethod::Magnitude:
      return "magnitude";
    case PruneMethod::Wanda:
      return "wanda";
    case PruneMethod::SparseGPT:
      return "sparsegpt";
  }
  return "?";
}

std::optional<NMPattern> parse_nm_pattern(std::string_view s) {
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view t) -> std::optional<int> {
    int v = 0;
    if (t.empty() || t.size() > 6) return std::nullopt;
    const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
    return v;
  };
  const auto n = number(s.substr(0, colon)), m = number(s.substr(colon + 1));
  if (!n || !m || *n < 1 || *n >= *m) return std::nullopt;
  return NMPattern{*n, *m};
}

namespace {

// NaN scores (a NaN weight) rank as the largest: never chosen before a real score.
double key(double s) {
  return std::isnan(s) ? std::numeric_limits<double>::infinity() : s;
}

// Sets mask[j] = 1 for the k entries of score[0, len) with the smallest scores (ties: lower index
// first, so the choice is a pure function of the scores), 0 elsewhere. idx: scratch.
void mark_smallest(const double* score, int64_t len, int64_t k, uint8_t* mask,
                   std::vector<int32_t>& idx) {
  std::fill(mask, mask + len, uint8_t{0});
  if (k <= 0) return;
  if (k >= len) {
    std::fill(mask, mask + len, uint8_t{1});
    return;
  }
  idx.resize(static_cast<size_t>(len));
  std::iota(idx.begin(), idx.end(), 0);
  auto less = [&](int32_t a, int32_t b) {
    const double ka = key(score[a]), kb = key(score[b]);
    return ka < kb || (ka == kb && a < b);
  };
  std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), less);
  for (int64_t i = 0; i < k; ++i) mask[idx[static_cast<size_t>(i)]] = 1;
}

// f(row_begin, row_end) over [0, rows), split over the pool; each row's work is independent of
// the split, so results do not depend on the thread count.
template <class F>
void for_rows(ThreadPool* pool, int64_t rows, F&& f) {
  if (!pool || pool->size() == 1 || rows < 2) {
    f(int64_t{0}, rows);
    return;
  }
  pool->parallel_for(
      rows, [&](int64_t b, int64_t e, int) { f(b, e); }, 4);
}

// Zeros wanted among the first c columns of a row at unstructured sparsity s. Cumulative, so the
// per-batch counts floor(i2 s) - floor(i1 s) add up to exactly floor(cols s) per row.
int64_t zeros_before(int64_t c, double s) {
  return static_cast<int64_t>(std::floor(static_cast<double>(c) * s));
}

bool nm_mode(const PruneOptions& o) {
  return o.m > 0;
}

void validate(int64_t rows, int64_t cols, const float* W, const float* H, const PruneOptions& o) {
  const char* name = prune_method_name(o.method);
  check(rows >= 0 && cols >= 0, "prune: bad matrix shape (", rows, ", ", cols, ")");
  check(W || rows * cols == 0, "prune: weight matrix is missing");
  if (nm_mode(o)) {
    check(o.n >= 0 && o.n < o.m, "prune: bad N:M pattern ", o.n, ":", o.m, " (need 0 <= n < m)");
    check(cols % o.m == 0, "prune: N:M pattern ", o.n, ":", o.m, " needs the row length (", cols,
          ") to be a multiple of ", o.m);
  } else {
    check(o.m == 0, "prune: bad N:M pattern ", o.n, ":", o.m);
    check(o.sparsity >= 0.0 && o.sparsity < 1.0, "prune: sparsity ", o.sparsity,
          " is out of range [0, 1)");
  }
  if (o.method != PruneMethod::Magnitude)
    check(H != nullptr, "prune: method ", name, " needs calibration statistics (H) for the layer");
  if (o.method == PruneMethod::SparseGPT) {
    check(o.damp >= 0.0 && std::isfinite(o.damp), "prune: damp ", o.damp, " must be >= 0");
    check(o.block > 0, "prune: block ", o.block, " must be > 0");
  }
}

// Magnitude and Wanda: score each weight, zero the lowest per row or per N:M group.
// colscale (cols) multiplies |W_ij| (||X_j|| for Wanda), nullptr: 1.
int64_t prune_by_score(float* W, int64_t rows, int64_t cols, const double* colscale,
                       const PruneOptions& o, ThreadPool* pool) {
  const bool nm = nm_mode(o);
  const int64_t k_row = nm ? 0 : zeros_before(cols, o.sparsity);
  std::vector<int64_t> row_zeros(static_cast<size_t>(rows), 0);
  for_rows(pool, rows, [&](int64_t r0, int64_t r1) {
    std::vector<double> score(static_cast<size_t>(cols));
    std::vector<uint8_t> mask(static_cast<size_t>(cols));
    std::vector<int32_t> idx;
    for (int64_t r = r0; r < r1; ++r) {
      float* w = W + r * cols;
      for (int64_t j = 0; j < cols; ++j)
        score[j] = std::fabs(static_cast<double>(w[j])) * (colscale ? colscale[j] : 1.0);
      if (nm) {
        for (int64_t g = 0; g < cols; g += o.m) mark_smallest(&score[g], o.m, o.n, &mask[g], idx);
      } else {
        mark_smallest(score.data(), cols, k_row, mask.data(), idx);
      }
      int64_t z = 0;
      for (int64_t j = 0; j < cols; ++j)
        if (mask[j]) {
          w[j] = 0.0f;
          ++z;
        }
      row_zeros[r] = z;
    }
  });
  return std::accumulate(row_zeros.begin(), row_zeros.end(), int64_t{0});
}

// U (cols, cols) row-major, upper triangle: the upper Cholesky factor of (damped H)^-1, i.e.
// H^-1 = U^T U. dead[j] = 1 where H_jj == 0.
std::vector<double> inverse_cholesky(const float* H, int64_t cols, double damp,
                                     std::vector<uint8_t>& dead) {
  const size_t n = static_cast<size_t>(cols);
  std::vector<double> U(n * n);
  for (size_t i = 0; i < n * n; ++i) {
    U[i] = H[i];
    check(std::isfinite(U[i]), "prune: calibration statistics (H) contain a non-finite value");
  }
  dead.assign(n, 0);
  double mean = 0;
  for (size_t j = 0; j < n; ++j) {
    double& d = U[j * n + j];
    if (d == 0.0) {
      dead[j] = 1;
      d = 1.0;
    }
    mean += d;
  }
  mean /= static_cast<double>(n);
  for (size_t j = 0; j < n; ++j) U[j * n + j] += damp * mean;
  // Row-major (i, j) is column-major (j, i): LAPACK's lower triangle ('L') is our upper one, so
  // potrf('L') gives H = U^T U with U in our upper triangle, potri('L') leaves H^-1 there, and a
  // second potrf('L') factors H^-1 = U^T U. Our lower triangle is never read.
  const int ni = static_cast<int>(cols);
  int info = 0;
  dpotrf_("L", &ni, U.data(), &ni, &info, 1);
  check(info == 0, "prune: damped calibration Hessian is not positive definite (column ", info,
        "); raise damp");
  dpotri_("L", &ni, U.data(), &ni, &info, 1);
  check(info == 0, "prune: damped calibration Hessian is singular (column ", info, ")");
  dpotrf_("L", &ni, U.data(), &ni, &info, 1);
  check(info == 0, "prune: inverse calibration Hessian is not positive definite (column ", info,
        "); raise damp");
  return U;
}

// SparseGPT over lazy batches of `block` columns. Per batch [i1, i2) and per row (independent):
// choose the mask (unstructured: the k lowest w^2 / U_jj^2 of the batch at its start; N:M: the n
// lowest of each group of m at the group's start), then column by column zero each masked weight
// and move its error e = w / U_jj onto the batch's later columns (w_l -= e U_jl). The batch's
// errors E (rows, bw) then update every column to its right at once: W[:, i2:] -= E U[i1:i2, i2:].
int64_t prune_sparsegpt(float* W, int64_t rows, int64_t cols, const float* H, const PruneOptions& o,
                        ThreadPool* pool) {
  std::vector<uint8_t> dead;
  const std::vector<double> U = inverse_cholesky(H, cols, o.damp, dead);
  const bool nm = nm_mode(o);
  const int64_t block = nm ? std::max<int64_t>(o.m, o.block / o.m * o.m) : o.block;

  std::vector<float> err(static_cast<size_t>(rows * std::min(block, cols)));
  std::vector<float> u_right;  // U[i1:i2, i2:] as f32 for the sgemm
  std::vector<int64_t> row_zeros(static_cast<size_t>(rows), 0);
  for (int64_t i1 = 0; i1 < cols; i1 += block) {
    const int64_t i2 = std::min(cols, i1 + block), bw = i2 - i1;
    const int64_t k_batch = nm ? 0 : zeros_before(i2, o.sparsity) - zeros_before(i1, o.sparsity);
    for_rows(pool, rows, [&](int64_t r0, int64_t r1) {
      std::vector<double> w(static_cast<size_t>(bw)), score(static_cast<size_t>(bw));
      std::vector<uint8_t> mask(static_cast<size_t>(bw));
      std::vector<int32_t> idx;
      auto scores = [&](int64_t a, int64_t b) {  // batch-relative columns [a, b)
        for (int64_t j = a; j < b; ++j) {
          const double d = U[static_cast<size_t>((i1 + j) * cols + i1 + j)];
          score[j] = dead[i1 + j] ? 0.0 : w[j] * w[j] / (d * d);
        }
      };
      for (int64_t r = r0; r < r1; ++r) {
        float* wr = W + r * cols + i1;
        float* er = err.data() + r * bw;
        for (int64_t j = 0; j < bw; ++j) w[j] = wr[j];
        if (!nm) {
          scores(0, bw);
          mark_smallest(score.data(), bw, k_batch, mask.data(), idx);
        }
        int64_t z = 0;
        for (int64_t i = 0; i < bw; ++i) {
          if (nm && i % o.m == 0) {
            scores(i, i + o.m);
            mark_smallest(&score[i], o.m, o.n, &mask[i], idx);
          }
          if (!mask[i]) {
            er[i] = 0.0f;
            continue;
          }
          const double* u = U.data() + (i1 + i) * cols + i1;  // U[i1 + i, i1:i2]
          const double e = w[i] / u[i];
          for (int64_t l = i + 1; l < bw; ++l) w[l] -= e * u[l];
          w[i] = 0.0;
          er[i] = static_cast<float>(e);
          ++z;
        }
        for (int64_t j = 0; j < bw; ++j) wr[j] = static_cast<float>(w[j]);
        row_zeros[r] += z;
      }
    });
    const int64_t right = cols - i2;
    if (right == 0 || rows == 0) continue;
    u_right.resize(static_cast<size_t>(bw * right));
    for (int64_t i = 0; i < bw; ++i)
      for (int64_t j = 0; j < right; ++j)
        u_right[i * right + j] =
            static_cast<float>(U[static_cast<size_t>((i1 + i) * cols + i2 + j)]);
    // W[:, i2:] (rows, right; ld cols) -= err (rows, bw) . u_right (bw, right)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows),
                static_cast<int>(right), static_cast<int>(bw), -1.0f, err.data(),
                static_cast<int>(bw), u_right.data(), static_cast<int>(right), 1.0f, W + i2,
                static_cast<int>(cols));
  }
  return std::accumulate(row_zeros.begin(), row_zeros.end(), int64_t{0});
}

}  // namespace

int64_t prune_matrix(float* W, int64_t rows, int64_t cols, const float* H, const PruneOptions& o,
                     ThreadPool* pool) {
  validate(rows, cols, W, H, o);
  // Nothing to prune: leave W (and H's cost) alone.
  const int64_t per_row = nm_mode(o) ? cols / o.m * o.n : zeros_before(cols, o.sparsity);
  if (rows == 0 || cols == 0 || per_row == 0) return 0;
  switch (o.method) {
    case PruneMethod::Magnitude:
      return prune_by_score(W, rows, cols, nullptr, o, pool);
    case PruneMethod::Wanda: {
      std::vector<double> norm(static_cast<size_t>(cols));
      for (int64_t j = 0; j < cols; ++j)
        norm[j] = std::sqrt(std::max(0.0, static_cast<double>(H[j * cols + j])));
      return prune_by_score(W, rows, cols, norm.data(), o, pool);
    }
    case PruneMethod::SparseGPT:
      return prune_sparsegpt(W, rows, cols, H, o, pool);
  }
  return 0;
}

}  // namespace brisk::quant
