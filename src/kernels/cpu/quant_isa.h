// Internal: entry points of the per-ISA kernel files. Each overwrites the members of one traits
// row (the scalar row of the same type) that its ISA implements and leaves the rest alone.
// Only the dispatcher calls these, and only after cpu_supports() confirmed the ISA: the files are
// compiled with that ISA enabled, so even this function may contain its instructions.
#pragma once
#include "kernels/cpu/quant.h"

namespace brisk::kernels {

#if defined(__x86_64__) || defined(__i386__)
#define BRISK_X86_KERNELS 1
void apply_avx2_kernels(QuantKernels& row);
void apply_avx2_extra_kernels(QuantKernels& row);  // quant_extra_avx2.cpp: the remaining types
void apply_avx512_kernels(QuantKernels& row, bool vnni);
void apply_avx512_extra_kernels(QuantKernels& row, bool vnni);  // quant_extra_avx512.cpp
#endif

}  // namespace brisk::kernels
