// The value grid of one quantisation block with its scales held fixed, for quantisers that choose
// codes themselves (GPTQ, later AWQ): the scales (and mins) of a block are set once, e.g. by the
// type's from_float, and then every element may take exactly the values
//   step * l + offset,  l an integer in [lo, hi]
// where step and offset come from the block's stored (f16 / 6-bit / int8) scale fields, decoded as
// the dequantiser decodes them, so that step * l + offset is bit-for-bit what to_float returns for
// code l. One block is the type's own: 32 elements for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and 256 for
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. Other types throw brisk::Error.
//
// Where a block's step is 0 (a zero scale: every code decodes to the same value) set_codes writes
// the code that the type's from_float writes for an all-zero block, so bytes stay canonical.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace brisk::quant {

struct ElementGrid {
  float step = 0;      // value of one code step (may be negative or zero)
  float offset = 0;    // value of code 0
  int lo = 0, hi = 0;  // allowed integer codes l, inclusive
  float value(int l) const { return step * static_cast<float>(l) + offset; }
};

// True for the types this module handles (legacy 32-element and k-quant weight types).
bool has_block_grid(DType t);
// Elements per block of t (32 or 256); throws brisk::Error for an unsupported type.
int64_t grid_block_size(DType t);

// Grid of element i (0 <= i < block size) of `block`, one block of type t.
ElementGrid element_grid(DType t, const void* block, int64_t i);

// Nearest code to x on grid g: round((x - offset) / step) clamped to [lo, hi], ties to even; NaN
// gives lo. Where step == 0 every code has the same value and this returns the code nearest 0.
int nearest_code(const ElementGrid& g, float x);

// Codes l of all elements of `block` (block size of them), in element order.
void get_codes(DType t, const void* block, int* l);

// Keeps the block's scale fields and rewrites every code: element i gets the grid value nearest
// to x[i] (clamped to [lo, hi]; ties to even). x holds block size floats.
void set_codes(DType t, void* block, const float* x);

}  // namespace brisk::quant
