// The forward and backward of every op of the llama architecture, for training.
//
// Each op has a forward that may save what its backward needs, and a backward that *accumulates*
// (+=) into parameter gradients and writes (=) or accumulates input gradients as its comment
// says. All ops are templates over the scalar type T, instantiated for float (training) and double
// (finite-difference gradient checks, tests/unit/test_grad_ops.cpp). Matrix products go to BLAS
// (OpenBLAS sgemm/dgemm, row-major); the rest runs on brisk's ThreadPool.
//
// Shapes: N tokens of a packed batch (train/batch.h: sequences back to back), D model width,
// H query heads and G key/value heads of width hd, F FFN width, V vocabulary.
#pragma once
#include <cstdint>
#include <span>

#include "core/thread_pool.h"

namespace brisk::train {

// y (N, O) = x (N, I) . w (O, I)^T  (+ y when accumulate).
template <class T>
void matmul_fwd(const T* x, const T* w, T* y, int64_t N, int64_t I, int64_t O,
                bool accumulate = false);
// dx (N, I) = dy (N, O) . w (O, I)  (+= when accumulate_dx); dw (O, I) += dy^T . x.
// Either of dx / dw may be null (frozen weight, or no gradient wanted for the input).
template <class T>
void matmul_bwd(const T* x, const T* w, const T* dy, T* dx, T* dw, int64_t N, int64_t I, int64_t O,
                bool accumulate_dx = false);

// y = x / rms(x) * w per row; saves r = 1 / sqrt(mean(x^2) + eps) (N).
template <class T>
void rmsnorm_fwd(const T* x, const T* w, T* y, T* r, int64_t N, int64_t D, double eps,
                 ThreadPool& pool);
// dx (N, D) = (accumulated into when accumulate_dx); dw (D) += sum over rows.
template <class T>
void rmsnorm_bwd(const T* x, const T* w, const T* r, const T* dy, T* dx, T* dw, int64_t N,
                 int64_t D, bool accumulate_dx, ThreadPool& pool);

// Rotary embedding, adjacent pairs (x[2i], x[2i+1]) as brisk's llama inference (ops/rope.h).
// x (N, n_heads, hd) in place; pos (N) the position of each token in its sequence.
// inverse = true applies the transpose rotation (the backward of the forward).
template <class T>
void rope_apply(T* x, const int64_t* pos, int64_t N, int64_t n_heads, int64_t hd, double base,
                bool inverse, ThreadPool& pool);

// Causal attention within each sequence of the packed batch, GQA (H % G == 0).
// q (N, H, hd), k, v (N, G, hd) -> o (N, H, hd); lse (N, H) saved log-sum-exp of the scaled
// scores. seq_start (n_seq + 1) as in train::Batch.
template <class T>
void attention_fwd(const T* q, const T* k, const T* v, T* o, T* lse,
                   std::span<const int64_t> seq_start, int64_t H, int64_t G, int64_t hd,
                   ThreadPool& pool);
// Recomputes the probabilities from q, k and lse (FlashAttention-style, nothing (T, T) is kept).
// dq, dk, dv are written (=).
template <class T>
void attention_bwd(const T* q, const T* k, const T* v, const T* o, const T* lse, const T* dout,
                   T* dq, T* dk, T* dv, std::span<const int64_t> seq_start, int64_t H, int64_t G,
                   int64_t hd, ThreadPool& pool);

// a (N, F) = silu(g) * u.
template <class T>
void swiglu_fwd(const T* g, const T* u, T* a, int64_t n, ThreadPool& pool);
// dg, du (N, F) written (=) from da.
template <class T>
void swiglu_bwd(const T* g, const T* u, const T* da, T* dg, T* du, int64_t n, ThreadPool& pool);

// Mean cross-entropy over the positions whose target is not Batch::kIgnore. logits (N, V) are
// replaced by d(loss * scale)/d(logits) when grad is true. Returns the summed (not mean) loss in
// double and the number of counted positions through n_counted; the gradient divides by
// `denominator` (the count over the whole accumulated global batch).
template <class T>
double cross_entropy(T* logits, const int32_t* targets, int64_t N, int64_t V, bool grad,
                     double scale, double denominator, int64_t* n_counted, ThreadPool& pool);

// The probabilities at temperature tau of a teacher's logits (N, V) -> p (N, V), in place.
template <class T>
void softmax_rows(T* x, int64_t N, int64_t V, double tau, ThreadPool& pool);

// Distillation: sum over counted rows of tau^2 * KL(p_teacher || softmax(logits / tau)), with the
// gradient (times scale / denominator) added (+=) into dlogits when dlogits is set. Rows with
// target kIgnore are skipped.
template <class T>
double kl_to_teacher(const T* logits, const T* p_teacher, const int32_t* targets, T* dlogits,
                     int64_t N, int64_t V, double tau, double scale, double denominator,
                     ThreadPool& pool);

// Matrix products split over `pool` (single-threaded BLAS per block); nullptr: OpenBLAS alone.
// Process-wide: each LlamaTrainer sets its own pool at the start of a step.
void set_matmul_pool(ThreadPool* pool);
void release_matmul_pool(ThreadPool* pool);  // unset if it is the current one
// bf16 arithmetic for the float matrix products (operands rounded to bf16, f32 sums) where the
// CPU has AVX512-BF16; returns whether it is on. Process-wide, set by each step.
bool set_bf16_compute(bool on);

}  // namespace brisk::train
