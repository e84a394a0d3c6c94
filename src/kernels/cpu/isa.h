// Instruction-set variants of the CPU kernels and the one-time choice between them.
//
// Each variant is a separately compiled file (quant_avx2.cpp, quant_avx512.cpp) whose code may only
// run after cpu_supports() said yes, so nothing here executes them from a static initialiser.
// The active variant is the best one the CPU (and OS, for the AVX-512 register state) supports,
// unless BRISK_ISA=scalar|avx2|avxvnni|avx512|avx512vnni forces one. Forcing a variant that is not
// compiled in or that the CPU lacks throws brisk::Error at the first kernel lookup rather than
// falling back: a forced variant exists for tests and comparisons, which must not silently run
// different code.
#pragma once

namespace brisk::kernels {

// Ordered by preference (the best supported one is the default). Every variant above Scalar
// includes Avx2, and Avx512Vnni includes Avx512; AvxVnni and the AVX-512 variants are otherwise
// independent (client CPUs have AVX-VNNI without AVX-512; older AVX-512 servers lack AVX-VNNI), so
// "isa >= Isa::Avx512" means "has AVX-512" and "isa >= Isa::Avx2" means "has AVX2".
enum class Isa : int {
  Scalar = 0,
  Avx2 = 1,        // AVX2 + FMA + F16C
  AvxVnni = 2,     // Avx2 + AVX-VNNI (VEX-encoded 256-bit vpdpbusd, e.g. Alder Lake)
  Avx512 = 3,      // Avx2 + AVX-512 F/BW/VL
  Avx512Vnni = 4,  // Avx512 + AVX512-VNNI (vpdpbusd)
};
inline constexpr int kIsaCount = 5;

const char* isa_name(Isa isa);  // "scalar", "avx2", "avxvnni", "avx512", "avx512vnni"
bool isa_compiled(Isa isa);     // false for x86 variants on other architectures
bool cpu_supports(Isa isa);     // compiled, and the CPU and OS support it (detected once)
Isa best_isa();                 // the most capable variant cpu_supports()
// The variant quant_kernels() uses: BRISK_ISA if set, else best_isa(). Resolved once; throws
// brisk::Error for an unknown name or an unsupported forced variant (again on every call).
Isa active_isa_kind();
const char* active_isa();  // isa_name(active_isa_kind())

// AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16) on top of cpu_supports(Isa::Avx512). Not a variant of
// its own: only the bf16 training GEMM (gemm_bf16.h) uses it, under an AVX-512 active ISA.
bool cpu_has_avx512_bf16();

}  // namespace brisk::kernels
