// Mixed-precision matrix product for training: f32 in, f32 out, computed with both operands
// rounded to bf16 (round-to-nearest-even) and f32 accumulation.
//
// Why: with AVX512_BF16, vdpbf16ps multiplies 2 bf16 pairs per f32 lane per instruction, twice
// the multiply-accumulates of an f32 FMA; the trainer's bf16 mode trades the operands' mantissa
// bits (8 instead of 24) for that throughput. A bf16 x bf16 product is exact in f32, so the only
// rounding besides the operands' is the f32 summation (whose order is the kernel's).
//
// Same call shape as the row-major BLAS sgemm the trainer uses (alpha = 1):
//   C (M, N) = op(A) . op(B) + beta * C
//   op(A) (M, K) is A[m * lda + k], or A[k * lda + m] when trans_a (A stored (K, M));
//   op(B) (K, N) is B[k * ldb + n], or B[n * ldb + k] when trans_b (B stored (N, K)).
// beta == 0 writes C without reading it (C may hold NaN); K == 0 gives C = beta * C.
//
// gemm_bf16 uses the AVX512-BF16 kernel (gemm_bf16_avx512bf16.cpp: packed bf16 panels, 12 x 32
// register tiles) when the CPU has the instruction and the active ISA (BRISK_ISA, isa.h) is an
// AVX-512 one, else the scalar reference. Both are single-threaded and thread-safe (concurrent
// calls on disjoint C blocks); the fast kernel packs into one reusable thread-local buffer
// (~600 KiB per thread, allocated on first use) and allocates nothing else.
//
// Known differences of the fast kernel from the reference: summation order (it sums K in blocks
// of 256, adding each block's partial sum to C), and vdpbf16ps treats subnormal inputs and
// results (|x| < 2^-126) as zero.
#pragma once
#include <cstdint>

namespace brisk::kernels {

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// True when gemm_bf16 runs the AVX512-BF16 kernel here (decided once).
bool gemm_bf16_fast();

// Portable reference with the same semantics: each C element is the sequential f32 sum over k
// of bf16(op(A)(m, k)) * bf16(op(B)(k, n)), then C = sum + beta * C (C unread when beta == 0).
// Slow (plain loops, ~7 GFLOP/s on Zen 4 against ~100 for OpenBLAS sgemm; allocates a rounded
// copy of op(B) per call): the fallback and the tests' oracle. A caller with a faster f32 path
// should prefer it when !gemm_bf16_fast().
void gemm_bf16_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

#if defined(__x86_64__) || defined(__i386__)
// The AVX512-BF16 kernel; only gemm_bf16 calls it, after gemm_bf16_fast(), with M, N, K > 0.
void gemm_bf16_avx512bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc);
#endif

}  // namespace brisk::kernels
