// Each bench_*.cpp of the bench_kernels target registers its benchmarks here; bench_main.cpp
// calls them (registration runs cpuid, so it is done from main rather than static initialisers).
#pragma once

void register_quant_benchmarks();
void register_attention_benchmarks();
void register_gemm_benchmarks();
void register_gemm_bf16_benchmarks();
void register_vec_benchmarks();
