// The packed GEMM kernels for plain float weights (F16, BF16, F32), written over the same vector
// traits as gemm_impl.h, and the table of every packed kernel of one ISA variant. Include only from
// the ISA files (internal linkage; see quant_isa_helpers.h).
//
// Layout: a group is R rows; for each input element k the R rows' weights are stored together
// (R halves, bfloat16s or floats), so one load (and conversion) gives element k of every row and
// each token adds weight x broadcast activation with one FMA per vector: an outer-product GEMM,
// register-tiled over tokens like the int8 kernels. Activations are f32 (side data): F16 weights
// take activations rounded to f16 (the reference's dot type), BF16 and F32 weights exact f32.
#pragma once
#include "kernels/cpu/gemm_impl.h"

namespace brisk::kernels {
namespace {

inline size_t float_side_bytes(int64_t n_in) {
  return static_cast<size_t>(n_in) * sizeof(float);
}

// The activation row (n_in elements of `act`: f16 or f32) as f32 side data.
template <DType kAct>
void float_prep(const uint8_t* act_row, int64_t n_in, uint8_t* side) {
  if constexpr (kAct == DType::F16) {
    float* out = reinterpret_cast<float*>(side);
    for (int64_t i = 0; i < n_in; ++i) {
      uint16_t h;
      std::memcpy(&h, act_row + 2 * i, 2);
      out[i] = _cvtsh_ss(h);
    }
  } else {
    std::memcpy(side, act_row, static_cast<size_t>(n_in) * sizeof(float));
  }
}

template <class V, DType kType>
struct GFloat {
  static constexpr int R = V::kRows, kStreams = 2;
  static constexpr size_t kEl = kType == DType::F32 ? 4 : 2;
  static constexpr size_t kStep = R * kEl;  // bytes per input element of a group
  static size_t group_bytes(int64_t n_in) { return static_cast<size_t>(n_in) * kStep; }
  static void pack(const uint8_t* src, int64_t n_in, int64_t n_valid, uint8_t* dst) {
    const size_t rs = static_cast<size_t>(n_in) * kEl;
    for (int64_t k = 0; k < n_in; ++k)
      for (int r = 0; r < R; ++r) {
        uint8_t* d = dst + static_cast<size_t>(k) * kStep + kEl * r;
        if (r < n_valid)
          std::memcpy(d, src + static_cast<size_t>(r) * rs + kEl * k, kEl);
        else
          std::memset(d, 0, kEl);
      }
  }
  static typename V::F weights(const uint8_t* p) {
    if constexpr (kType == DType::F16) {
      return V::f16(p);
    } else if constexpr (kType == DType::BF16) {
      return V::bf16(p);
    } else {
      return V::loadf(reinterpret_cast<const float*>(p));
    }
  }
  template <int NT, int G>
  static void tile(const Tile& tl) {
    using F = typename V::F;
    const GemmArgs& a = *tl.a;
    F acc[G][NT];
    zero_tile<V>(acc);
    const float* x =
        reinterpret_cast<const float*>(a.side + static_cast<size_t>(tl.t0) * a.side_stride);
    const size_t xs = a.side_stride / sizeof(float);
    const uint8_t* w = tl.w;
    for (int64_t k = 0; k < a.n_in; ++k, w += kStep) {
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const F wv = weights(w + g * tl.gstride);
#pragma GCC unroll 16
        for (int t = 0; t < NT; ++t) acc[g][t] = V::fmadd(wv, V::set1f(x[t * xs + k]), acc[g][t]);
      }
    }
    store_tile<V>(tl, acc);
  }
};

// The table of one ISA variant's packed kernels.
template <class V>
struct GemmTable {
  PackedGemm q4_0{DType::Q4_0,       DType::Q8_0,     V::kRows,     group_bytes_fn<GQ4_0<V>>,
                  pack_fn<GQ4_0<V>>, q8_0_side_bytes, q8_0_prep<8>, drive<V, GQ4_0<V>>};
  PackedGemm q8_0{DType::Q8_0,
                  DType::Q8_0,
                  V::kRows,
                  group_bytes_fn<GQ8_0<V>>,
                  pack_fn<GQ8_0<V>>,
                  q8_0_side_bytes,
                  q8_0_prep<GQ8_0<V>::kOffset>,
                  drive<V, GQ8_0<V>>};
  PackedGemm q4_k{DType::Q4_K,
                  DType::Q8_K,
                  V::kRows,
                  group_bytes_fn<GQK4<V, false>>,
                  pack_fn<GQK4<V, false>>,
                  q4_k_side_bytes,
                  q4_k_prep,
                  drive<V, GQK4<V, false>>};
  PackedGemm q5_k{DType::Q5_K,
                  DType::Q8_K,
                  V::kRows,
                  group_bytes_fn<GQK4<V, true>>,
                  pack_fn<GQK4<V, true>>,
                  q4_k_side_bytes,
                  q4_k_prep,
                  drive<V, GQK4<V, true>>};
  PackedGemm q6_k{DType::Q6_K,       DType::Q8_K,     V::kRows,  group_bytes_fn<GQ6_K<V>>,
                  pack_fn<GQ6_K<V>>, q6_k_side_bytes, q6_k_prep, drive<V, GQ6_K<V>>};

  PackedGemm f16{DType::F16,
                 DType::F16,
                 V::kRows,
                 group_bytes_fn<GFloat<V, DType::F16>>,
                 pack_fn<GFloat<V, DType::F16>>,
                 float_side_bytes,
                 float_prep<DType::F16>,
                 drive<V, GFloat<V, DType::F16>>};
  PackedGemm bf16{DType::BF16,
                  DType::F32,
                  V::kRows,
                  group_bytes_fn<GFloat<V, DType::BF16>>,
                  pack_fn<GFloat<V, DType::BF16>>,
                  float_side_bytes,
                  float_prep<DType::F32>,
                  drive<V, GFloat<V, DType::BF16>>};
  PackedGemm f32{DType::F32,
                 DType::F32,
                 V::kRows,
                 group_bytes_fn<GFloat<V, DType::F32>>,
                 pack_fn<GFloat<V, DType::F32>>,
                 float_side_bytes,
                 float_prep<DType::F32>,
                 drive<V, GFloat<V, DType::F32>>};

  const PackedGemm* find(DType t) const {
    switch (t) {
      case DType::Q4_0:
        return &q4_0;
      case DType::Q8_0:
        return &q8_0;
      case DType::Q4_K:
        return &q4_k;
      case DType::Q5_K:
        return &q5_k;
      case DType::Q6_K:
        return &q6_k;
      case DType::F16:
        return &f16;
      case DType::BF16:
        return &bf16;
      case DType::F32:
        return &f32;
      default:
        return nullptr;
    }
  }
};

}  // namespace
}  // namespace brisk::kernels
