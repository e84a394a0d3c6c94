// Dispatch of the bf16 training GEMM and its scalar reference (gemm_bf16.h).
#include "kernels/cpu/gemm_bf16.h"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/isa.h"

namespace brisk::kernels {
namespace {

inline float round_bf16(float x) {
  return bf16_to_f32(f32_to_bf16(x));
}

// C (M, N) = beta * C, with beta == 0 writing zeros without reading C (the K == 0 product).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m) {
    float* c = C + m * ldc;
    for (int64_t n = 0; n < N; ++n) c[n] = beta == 0.0f ? 0.0f : beta * c[n];
  }
}

void check_strides(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                   int64_t ldc) {
  assert(lda >= (ta ? M : K) && ldb >= (tb ? K : N) && ldc >= N);
  (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)lda, (void)ldb, (void)ldc;
}

}  // namespace

void gemm_bf16_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  check_strides(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (K <= 0) return scale_c(M, N, beta, C, ldc);
  // op(B) rounded once, (K, N) row-major, so the inner loop runs over contiguous n.
  std::vector<float> b(static_cast<size_t>(K * N));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n)
      b[static_cast<size_t>(k * N + n)] = round_bf16(trans_b ? B[n * ldb + k] : B[k * ldb + n]);
  std::vector<float> acc_buf(static_cast<size_t>(N));
  float* __restrict acc = acc_buf.data();
  for (int64_t m = 0; m < M; ++m) {
    std::fill(acc, acc + N, 0.0f);
    // Each acc[n] is summed over k in order: the sequential dot product of row m and column n
    // (vectorised across n only, which keeps that order).
    for (int64_t k = 0; k < K; ++k) {
      const float a = round_bf16(trans_a ? A[k * lda + m] : A[m * lda + k]);
      const float* __restrict bk = b.data() + k * N;
      for (int64_t n = 0; n < N; ++n) acc[n] += a * bk[n];
    }
    float* c = C + m * ldc;
    for (int64_t n = 0; n < N; ++n) c[n] = beta == 0.0f ? acc[n] : acc[n] + beta * c[n];
  }
}

bool gemm_bf16_fast() {
#if defined(__x86_64__) || defined(__i386__)
  // active_isa_kind() throws for a bad BRISK_ISA; the static is then retried on the next call.
  static const bool fast = active_isa_kind() >= Isa::Avx512 && cpu_has_avx512_bf16();
  return fast;
#else
  return false;
#endif
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  check_strides(trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (K <= 0) return scale_c(M, N, beta, C, ldc);
#if defined(__x86_64__) || defined(__i386__)
  if (gemm_bf16_fast())
    return gemm_bf16_avx512bf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
#endif
  gemm_bf16_ref(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace brisk::kernels
