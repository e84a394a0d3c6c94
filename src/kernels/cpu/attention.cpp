// Scalar reference attention tile kernel, the partial merge, and the choice between variants.
//
// The scalar kernel follows the same algorithm as the vector one (attention_simd.h): key tiles of
// kAttnKeyTile, base-2 online softmax, partials (m, l, o). It keeps rows in memory order instead
// of in lanes and works for any head_dim in [1, kAttnMaxHeadDim], so the vector variants hand it
// the head sizes they do not take.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/attention_isa.h"

namespace brisk::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;

// Pointers to the d floats of keys j0 .. j0 + nk - 1 of one head; f16 rows are converted into
// buf ([nk][d]), q8_0 rows dequantised there.
void rows_of(const KvView& kv, int64_t j0, int64_t nk, int64_t head_off, int d, float* buf,
             const float** rows) {
  for (int64_t j = 0; j < nk; ++j) {
    const int64_t blk = (j0 + j) / kv.block_tokens, off = (j0 + j) % kv.block_tokens;
    const int64_t phys = kv.block_table ? kv.block_table[blk] : blk;
    const int64_t e = phys * kv.block_stride + off * kv.token_stride + head_off;
    if (kv.type == DType::F32) {
      rows[j] = static_cast<const float*>(kv.base) + e;
    } else if (kv.type == DType::F16) {
      const uint16_t* src = static_cast<const uint16_t*>(kv.base) + e;
      for (int i = 0; i < d; ++i) buf[j * d + i] = f16_to_f32(src[i]);
      rows[j] = buf + j * d;
    } else {
      kv_q8_0_row(kv.base, e, d, buf + j * d);
      rows[j] = buf + j * d;
    }
  }
}

// Work area: qs [rows][d] (scaled queries), o [rows][d], m, l [rows], s [kAttnKeyTile],
// kbuf, vbuf [kAttnKeyTile][d]; a subset of the vector kernels' area.
void attention_tile_scalar(const AttnTile& a, const KvView& kk, const KvView& vk, float* work) {
  const int d = a.head_dim, g = a.group;
  const int64_t rows = a.n_q * g;
  float* qs = work;
  float* o = qs + rows * d;
  float* m = o + rows * d;
  float* l = m + rows;
  float* s = l + rows;
  float* kbuf = s + kAttnKeyTile;
  float* vbuf = kbuf + kAttnKeyTile * d;
  const float qscale = a.scale * kLog2e;
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = a.q + (r / g) * a.q_stride + (r % g) * d;
    for (int i = 0; i < d; ++i) qs[r * d + i] = src[i] * qscale;
    m[r] = -kInf;
    l[r] = 0.0f;
  }
  std::fill(o, o + rows * d, 0.0f);

  const int64_t p_first = a.pos, p_last = a.pos + a.n_q - 1;
  const bool windowed = a.window > 0;
  const int64_t lo = std::max(a.key_begin, windowed ? p_first - a.window + 1 : 0);
  const int64_t hi = std::min(a.key_end, p_last + 1);
  const int64_t head_off = static_cast<int64_t>(a.kv_head) * d;
  const float* krow[kAttnKeyTile];
  const float* vrow[kAttnKeyTile];
  for (int64_t j0 = lo; j0 < hi; j0 += kAttnKeyTile) {
    const int64_t nk = std::min<int64_t>(kAttnKeyTile, hi - j0);
    rows_of(kk, j0, nk, head_off, d, kbuf, krow);
    rows_of(vk, j0, nk, head_off, d, vbuf, vrow);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t p = a.pos + r / g;
      const float* qr = qs + r * d;
      float mx = -kInf;
      for (int64_t j = 0; j < nk; ++j) {
        const int64_t key = j0 + j;
        if (key > p || (windowed && p - key >= a.window)) {
          s[j] = -kInf;
          continue;
        }
        float dot = 0.0f;
        for (int i = 0; i < d; ++i) dot += qr[i] * krow[j][i];
        s[j] = dot;
        mx = std::max(mx, dot);
      }
      const float m_new = std::max(m[r], mx);
      if (m_new == -kInf) continue;  // no visible key for this row yet
      const float alpha = std::exp2(m[r] - m_new);
      float* orow = o + r * d;
      for (int i = 0; i < d; ++i) orow[i] *= alpha;
      float sum = 0.0f;
      for (int64_t j = 0; j < nk; ++j) {
        const float pj = std::exp2(s[j] - m_new);  // exactly 0 for masked keys
        if (pj == 0.0f) continue;
        sum += pj;
        for (int i = 0; i < d; ++i) orow[i] += pj * vrow[j][i];
      }
      l[r] = l[r] * alpha + sum;
      m[r] = m_new;
    }
  }

  for (int64_t r = 0; r < rows; ++r) {
    float* dst = a.out + (r / g) * a.out_stride + (r % g) * d;
    const float inv = a.m_out ? 1.0f : (l[r] > 0.0f ? 1.0f / l[r] : 0.0f);
    for (int i = 0; i < d; ++i) dst[i] = o[r * d + i] * inv;
    if (a.m_out) {
      a.m_out[r] = m[r];
      a.l_out[r] = l[r];
    }
  }
}

bool vector_head_dim(int head_dim) {
  return head_dim > 0 && head_dim % 16 == 0 && head_dim <= kAttnMaxHeadDim;
}

}  // namespace

size_t attention_work_floats(int64_t rows, int head_dim) {
  // The vector kernels' layout (attention_simd.h), rows padded to 16; it covers the scalar one.
  const int64_t rp = (rows + 15) / 16 * 16, d = head_dim;
  return static_cast<size_t>(2 * d * rp + kAttnKeyTile * rp + 4 * rp + 2 * kAttnKeyTile * d);
}

Isa attention_tile_isa(Isa isa, int head_dim) {
  return vector_head_dim(head_dim) ? isa : Isa::Scalar;
}

AttnTileFn attention_tile_fn_for(Isa isa, int head_dim) {
  if (!cpu_supports(isa)) return nullptr;
  switch (attention_tile_isa(isa, head_dim)) {
#ifdef BRISK_X86_ATTENTION
    case Isa::Avx2:
    case Isa::AvxVnni:
      return attention_tile_avx2;
    case Isa::Avx512:
    case Isa::Avx512Vnni:
      return attention_tile_avx512;
#endif
    default:
      return attention_tile_scalar;
  }
}

AttnTileFn attention_tile_fn(int head_dim) {
  return attention_tile_fn_for(active_isa_kind(), head_dim);
}

void attention_merge(int n_parts, const float* o, const float* m, const float* l, int64_t rows,
                     int group, int head_dim, float* out, int64_t out_stride) {
  const int64_t d = head_dim;
  for (int64_t r = 0; r < rows; ++r) {
    float mx = -kInf;
    for (int c = 0; c < n_parts; ++c) mx = std::max(mx, m[c * rows + r]);
    float* dst = out + (r / group) * out_stride + (r % group) * d;
    std::fill(dst, dst + d, 0.0f);
    if (mx == -kInf) continue;  // no part saw a key for this row
    // Each part's sum and output were taken relative to its own max; bring them to mx.
    float total = 0.0f;
    for (int c = 0; c < n_parts; ++c) total += l[c * rows + r] * std::exp2(m[c * rows + r] - mx);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    for (int c = 0; c < n_parts; ++c) {
      const float w = std::exp2(m[c * rows + r] - mx) * inv;
      if (w == 0.0f) continue;
      const float* src = o + (c * rows + r) * d;
      for (int64_t i = 0; i < d; ++i) dst[i] += w * src[i];
    }
  }
}

bool attention_exp2(Isa isa, const float* x, float* y, int64_t n) {
  if (!cpu_supports(isa)) return false;
  switch (isa) {
#ifdef BRISK_X86_ATTENTION
    case Isa::Avx2:
    case Isa::AvxVnni:
      attention_exp2_avx2(x, y, n);
      return true;
    case Isa::Avx512:
    case Isa::Avx512Vnni:
      attention_exp2_avx512(x, y, n);
      return true;
#endif
    default:
      for (int64_t i = 0; i < n; ++i) y[i] = std::exp2(x[i]);
      return true;
  }
}

}  // namespace brisk::kernels
