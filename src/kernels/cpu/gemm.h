// Packed (row-interleaved) weight matrices and the int8 GEMM / GEMV kernels over them.
//
// Why: a plain row-major quantised matrix makes every dot product re-read and re-broadcast the
// activation block and end in a horizontal sum per row. Interleaving kRows rows block by block
// (16 rows for AVX-512) turns one SIMD lane into one output row: an activation word of 4 int8
// values is broadcast once and multiplied (vpdpbusd) against 4 consecutive weights of all 16 rows
// at once, per-block scales of 16 rows convert in one instruction, and no horizontal sum is left.
// The same layout serves decoding (1 token: weights streamed once, memory bound) and prompts (a
// register tile of several tokens reuses each unpacked weight vector).
//
// Layout of a packed matrix: ceil(n_out / rows) groups of `rows` rows, group_bytes each, rows past
// n_out zero. Inside a group, per block of the storage type (32 or 256 weights): the rows' scales
// and then their codes, transposed in 4-byte words (word r of a 64-byte vector belongs to row r).
// Every format has the same bytes per weight as the file format it comes from; only the order
// changes. Formats are private to the ISA file that defines them (see gemm_avx512.cpp).
//
// Activations are quantised once per call to the weight type's dot type with the standard
// quantisers (Q8_0 blocks for Q4_0/Q8_0, Q8_K blocks for the k-quants: the same codes as the
// per-row vec_dot path, so both paths round activations identically), then `prep` adds per-row
// side data (float scales, offset corrections) that the kernel would otherwise recompute for
// every group.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cpu/isa.h"

namespace brisk::kernels {

struct GemmArgs {
  const uint8_t* w = nullptr;    // first packed group
  int64_t n_groups = 0;          // groups to compute
  int64_t n_in = 0;              // elements per row (a multiple of the type's block size)
  const uint8_t* act = nullptr;  // T rows of activation blocks (act_type), act_stride bytes apart
  size_t act_stride = 0;
  const uint8_t* side = nullptr;  // T rows of prep() output, side_stride bytes apart
  size_t side_stride = 0;
  int64_t T = 0;         // tokens
  float* out = nullptr;  // out[t * ldo + r] for the rows r of these groups, starting at row 0
  int64_t ldo = 0;
  int64_t n_rows = 0;       // rows to write (<= n_groups * rows: the last group may be partial)
  bool accumulate = false;  // out += result (a fused residual add) instead of out = result
};

struct PackedGemm {
  DType type;      // weight storage type
  DType act_type;  // activation block type (Q8_0 or Q8_K)
  int rows;        // rows interleaved per group
  // Bytes of one group for rows of n_in elements.
  size_t (*group_bytes)(int64_t n_in);
  // Packs rows [0, n_valid) of `src` (n_valid rows of n_in elements in `type`, row-major) into one
  // group at dst; rows n_valid..rows-1 become zero weights.
  void (*pack)(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst);
  // Bytes of side data per activation row and its computation from one row of act blocks.
  size_t (*side_bytes)(int64_t n_in);
  void (*prep)(const uint8_t* act_row, int64_t n_in, uint8_t* side_row);
  void (*gemm)(const GemmArgs& a);
};

// The active ISA's packed kernel for a storage type, or nullptr (the caller keeps the row path).
// BRISK_PACKED=0 in the environment disables packing (for comparisons).
const PackedGemm* packed_gemm(DType t);
// A specific variant's kernel (tests, benchmarks); nullptr if absent or unsupported here.
const PackedGemm* packed_gemm_for(DType t, Isa isa);

#if defined(__x86_64__) || defined(__i386__)
// Entry points of gemm_avx2.cpp / gemm_avxvnni.cpp / gemm_avx512.cpp; only called after the CPU
// was checked.
const PackedGemm* packed_gemm_avx2(DType t);
const PackedGemm* packed_gemm_avxvnni(DType t);
const PackedGemm* packed_gemm_avx512(DType t);
const PackedGemm* packed_gemm_avx512vnni(DType t);
#endif

}  // namespace brisk::kernels
