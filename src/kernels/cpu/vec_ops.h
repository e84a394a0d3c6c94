// Element-wise and row kernels of the forward pass (norms, activations, residual adds, RoPE),
// per ISA like the quant kernels: a scalar reference (vec_ops.cpp) and vector variants
// (vec_ops_avx2.cpp, vec_ops_avx512.cpp), chosen once from the active ISA (isa.h).
// The vector variants differ from the scalar one only in float rounding (exp, summation order).
#pragma once
#include <cstdint>

#include "kernels/cpu/isa.h"

namespace brisk::kernels {

struct VecOps {
  // Sum of x[i]^2 over n floats, accumulated in double (as ggml's rms_norm does).
  double (*sum_sq)(const float* x, int64_t n);
  // out[i] = (x[i] * scale) * w[i] (the rms_norm scaling step, in that order).
  void (*scale_mul)(const float* x, float scale, const float* w, float* out, int64_t n);
  // out[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u (SwiGLU). out may alias g or u.
  void (*silu_mul)(const float* g, const float* u, float* out, int64_t n);
  // y[i] += x[i]
  void (*add)(float* y, const float* x, int64_t n);
  // Rotates pairs of each of n_heads heads (head_dim apart) of x in place by the angles whose
  // cos/sin are given for the half = n_dims / 2 pairs: pair i is (2i, 2i + 1) when adjacent, else
  // (i, i + half) (NeoX). Dims past n_dims are untouched.
  void (*rope)(float* x, int n_heads, int head_dim, int n_dims, bool adjacent, const float* cos,
               const float* sin);
  // Sum (mod 2^64) of n words: the bandwidth probe's read loop, as wide as the ISA's loads so that
  // the probe measures the memory system, not the loop. The range is read as `streams` equal
  // parts advanced 256 bytes at a time in turn: several concurrent sequential streams keep more
  // reads in flight than one (the hardware prefetchers run ahead on each), which is what the
  // decode kernels do too; the remainder is read at the end.
  uint64_t (*sum_words)(const uint64_t* p, int64_t n, int streams);
  // Compute-peak probes: `iters` rounds of 12 independent chains of the ISA's widest int8
  // multiply-accumulate (vpdpbusd / vpmaddubsw) or f32 FMA; return the multiply-accumulates done
  // (a checksum goes to *sink so the work cannot be dropped). Timed by the caller.
  uint64_t (*int8_peak)(int64_t iters, int64_t* sink);
  uint64_t (*f32_peak)(int64_t iters, int64_t* sink);
};

const VecOps& vec_ops();             // the active ISA's row
const VecOps* vec_ops_for(Isa isa);  // nullptr if not compiled or unsupported here

#if defined(__x86_64__) || defined(__i386__)
// Entry points of the ISA files; each fills the members it implements over the scalar row.
void apply_vec_ops_avx2(VecOps& ops);
void apply_vec_ops_avx512(VecOps& ops);
void apply_vec_ops_avx512_vnni(VecOps& ops);
#endif

}  // namespace brisk::kernels
