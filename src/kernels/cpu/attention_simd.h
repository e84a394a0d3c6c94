// Internal: the vector attention tile kernel, shared by attention_avx2.cpp and attention_avx512.cpp
// as a template on a lane type (V8: 8 floats in a ymm register, V16: 16 floats in a zmm).
// Include this header only from those files. As in quant_isa_helpers.h, everything here has
// internal linkage and calls nothing with external linkage (no std:: functions): each ISA file gets
// its own private copy, so no AVX code can be picked by the linker for a caller on another CPU.
//
// Layout of one work item (see attention.h), rows r = t * group + g padded to rp (a multiple of
// the lane count), d = head_dim:
//   qt    [d][rp]      the tile's queries, transposed and multiplied by scale * log2(e)
//   s     [nk][rp]     scores of one key tile (nk <= kAttnKeyTile), then its probabilities
//   m, l  [rp]         running max (base 2) and running sum per row; alpha [rp] the tile rescale
//   o     [rows][d]    unnormalised output rows
// With rows in the lanes, the score of key j for 16 (or 8) rows is one vector: q.k is an outer
// product loop (broadcast k[j][i], multiply by qt[i][rows]), and the online softmax (max over
// keys, exp2, sums) is element-wise across vectors with no horizontal reductions at all.
// P.V broadcasts p[j][r] against row j of V, MR rows x ND vectors of head_dim at a time.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/attention.h"

#define BRISK_ATTN_UNROLL _Pragma("GCC unroll 16")

namespace brisk::kernels {
namespace {

inline int64_t attn_min(int64_t a, int64_t b) {
  return a < b ? a : b;
}
inline int64_t attn_max(int64_t a, int64_t b) {
  return a > b ? a : b;
}

constexpr float kAttnInf = __builtin_inff();

// The keys [lo, hi) a tile reads: those of its range that some row may see (causal, window).
inline int64_t attn_key_lo(const AttnTile& a) {
  return attn_max(a.key_begin, a.window > 0 ? a.pos - a.window + 1 : 0);
}
inline int64_t attn_key_hi(const AttnTile& a) {
  return attn_min(a.key_end, a.pos + a.n_q);
}

// A prefetch into L2 the compiler must keep: GCC deletes loops whose only effect is
// __builtin_prefetch / _mm_prefetch (it sees no side effect), which silently removed every
// prefetch loop with a run-time trip count. L2, not L1: a decoding tile's converted K/V, scores
// and queries (~50 KiB) already overflow L1, and lines prefetched there a tile ahead were evicted
// before use (16 sequences x 160 keys from memory, 2 threads: prefetcht0 351 us, prefetcht1 211).
inline void attn_prefetch(const char* p) {
  asm volatile("prefetcht1 %0" : : "m"(*p));
}
constexpr float kLog2e = 1.4426950408889634f;
constexpr int64_t kPackRows = 16;  // tiles with more rows copy their f32 K/V tiles (see rows_of)

// Taylor coefficient k of 2^f = e^(f ln 2): ln(2)^k / k!. On |f| <= 1/2 the degree-7 polynomial's
// truncation error is below 6e-9 relative, well under the float rounding of its evaluation.
constexpr float exp2_coef(int k) {
  double c = 1.0;
  for (int i = 1; i <= k; ++i) c *= 0.6931471805599453 / i;
  return static_cast<float>(c);
}

#ifdef __AVX2__
// 8 float lanes in a ymm register (AVX2 + FMA + F16C).
struct V8 {
  using R = __m256;
  static constexpr int L = 8;
#ifdef __AVX512F__
  // Compiled in the AVX-512 file (32 vector registers), where it only serves q.k and the softmax
  // of tiles of up to 8 rows (one row vector).
  static constexpr int kNvMax = 2, kMr = 4, kNd = 4;
  static constexpr int kj(int) {
    return 8;
  }
#else
  // 16 registers: q.k keeps kj * nv accumulators + nv query vectors + 1 broadcast.
  static constexpr int kNvMax = 2, kMr = 4, kNd = 2;
  static constexpr int kj(int nv) {
    return nv == 1 ? 8 : 4;
  }
#endif
  static R zero() {
    return _mm256_setzero_ps();
  }
  static R set1(float x) {
    return _mm256_set1_ps(x);
  }
  static R load(const float* p) {
    return _mm256_loadu_ps(p);
  }
  static void store(float* p, R v) {
    _mm256_storeu_ps(p, v);
  }
  static R load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  // base[idx[k]] for each lane k.
  static R gather(const float* base, const int32_t* idx) {
    return _mm256_i32gather_ps(base, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), 4);
  }
  static R add(R a, R b) {
    return _mm256_add_ps(a, b);
  }
  static R sub(R a, R b) {
    return _mm256_sub_ps(a, b);
  }
  static R mul(R a, R b) {
    return _mm256_mul_ps(a, b);
  }
  static R max(R a, R b) {
    return _mm256_max_ps(a, b);
  }
  static R fma(R a, R b, R c) {
    return _mm256_fmadd_ps(a, b, c);
  }
  // s where key j is visible to the row at position pos (j <= pos and pos - j < win), else -inf.
  static R mask(R s, R j, R pos, R win) {
    const R vis = _mm256_and_ps(_mm256_cmp_ps(j, pos, _CMP_LE_OQ),
                                _mm256_cmp_ps(_mm256_sub_ps(pos, j), win, _CMP_LT_OQ));
    return _mm256_blendv_ps(set1(-kAttnInf), s, vis);
  }
  // m, with -inf (a row that has seen no visible key yet) replaced by 0.
  static R finite_or_zero(R m) {
    return _mm256_blendv_ps(m, zero(), _mm256_cmp_ps(m, set1(-kAttnInf), _CMP_EQ_OQ));
  }
  // 2^x: x = n + f with n = round(x), |f| <= 1/2; 2^f by the Taylor polynomial, 2^n built in the
  // exponent field. 0 for x < -126 (incl. -inf), so masked scores contribute exactly nothing.
  static R exp2(R x) {
    const R xc = _mm256_min_ps(x, set1(127.0f));
    const R n = _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const R f = sub(xc, n);
    R p = set1(exp2_coef(7));
    p = fma(p, f, set1(exp2_coef(6)));
    p = fma(p, f, set1(exp2_coef(5)));
    p = fma(p, f, set1(exp2_coef(4)));
    p = fma(p, f, set1(exp2_coef(3)));
    p = fma(p, f, set1(exp2_coef(2)));
    p = fma(p, f, set1(exp2_coef(1)));
    p = fma(p, f, set1(1.0f));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const R y = mul(p, _mm256_castsi256_ps(e));
    return _mm256_and_ps(y, _mm256_cmp_ps(x, set1(-126.0f), _CMP_GE_OQ));
  }
};
#endif

#ifdef __AVX512F__
// 16 float lanes in a zmm register (AVX-512 F; 32 registers).
struct V16 {
  using R = __m512;
  static constexpr int L = 16;
  static constexpr int kNvMax = 4, kMr = 4, kNd = 4;
  static constexpr int kj(int nv) { return nv >= 3 ? 4 : 8; }
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float x) { return _mm512_set1_ps(x); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static R load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static R gather(const float* base, const int32_t* idx) {
    return _mm512_i32gather_ps(_mm512_loadu_si512(idx), base, 4);
  }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R mask(R s, R j, R pos, R win) {
    const __mmask16 vis = _mm512_cmp_ps_mask(j, pos, _CMP_LE_OQ) &
                          _mm512_cmp_ps_mask(_mm512_sub_ps(pos, j), win, _CMP_LT_OQ);
    return _mm512_mask_blend_ps(vis, set1(-kAttnInf), s);
  }
  static R finite_or_zero(R m) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m, set1(-kAttnInf), _CMP_EQ_OQ), m, zero());
  }
  static R exp2(R x) {
    const R xc = _mm512_min_ps(x, set1(127.0f));
    const R n = _mm512_roundscale_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const R f = sub(xc, n);
    R p = set1(exp2_coef(7));
    p = fma(p, f, set1(exp2_coef(6)));
    p = fma(p, f, set1(exp2_coef(5)));
    p = fma(p, f, set1(exp2_coef(4)));
    p = fma(p, f, set1(exp2_coef(3)));
    p = fma(p, f, set1(exp2_coef(2)));
    p = fma(p, f, set1(exp2_coef(1)));
    p = fma(p, f, set1(1.0f));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    const R y = mul(p, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, set1(-126.0f), _CMP_GE_OQ), y);
  }
};
#endif

// V: the lane type of q.k and the softmax (rows in lanes); W: the lane type of p.v, the K/V
// conversion and the output (head_dim in lanes). They differ when a few rows would leave most of
// a wide vector idle while head_dim still fills it.
template <class V, class W = V>
struct AttnKernel {
  using R = typename V::R;
  using WR = typename W::R;
  static constexpr int L = V::L;

  // Pointers to the head_dim floats of keys j0 .. j0 + nk - 1 of one head (element offset
  // head_off in each token row). F16 and Q8_0 rows are converted into buf ([nk][d]) first.
  // With pack, f32 rows are copied too: rows a power-of-two stride apart (token_stride =
  // n_head_kv * head_dim floats, e.g. 1 KiB) all fall into a few L1 sets and evict each other
  // while a tile is re-read for every group of rows; the copy costs little next to that re-use.
  static void rows_of(const KvView& kv, int64_t j0, int64_t nk, int64_t head_off, int d, bool pack,
                      float* buf, const float** rows) {
    int64_t blk = j0 / kv.block_tokens, off = j0 % kv.block_tokens;
    for (int64_t j = 0; j < nk; ++j) {
      const int64_t phys = kv.block_table ? kv.block_table[blk] : blk;
      const int64_t e = phys * kv.block_stride + off * kv.token_stride + head_off;
      if (kv.type == DType::F32) {
        const float* src = static_cast<const float*>(kv.base) + e;
        if (pack) {
          float* dst = buf + j * d;
          for (int i = 0; i < d; i += W::L) W::store(dst + i, W::load(src + i));
          rows[j] = dst;
        } else {
          rows[j] = src;
        }
      } else if (kv.type == DType::F16) {
        const uint16_t* src = static_cast<const uint16_t*>(kv.base) + e;
        float* dst = buf + j * d;
        for (int i = 0; i < d; i += W::L) W::store(dst + i, W::load_f16(src + i));
        rows[j] = dst;
      } else {
        kv_q8_0_row(kv.base, e, d, buf + j * d);
        rows[j] = buf + j * d;
      }
      if (++off == kv.block_tokens) {
        off = 0;
        ++blk;
      }
    }
  }

  // The K and V rows of the kAttnKeyTile keys after the current tile, prefetched into L2 a few
  // keys at a time while q.k of the current tile runs (issue_upto() from qk_rows), so the keys
  // are requested one tile ahead. Past the item's last key the stream continues into the next
  // work item's first keys (AttnTile::next), so that no item but a thread's first starts on
  // cold K/V. A paged cache scatters a sequence over blocks and one head's slice of a row is a
  // short run every token_stride elements, which the hardware prefetchers do not follow; all of a
  // tile's lines at once would overflow the miss queue and stall, hence the spreading.
  struct Prefetch {
    const char* k[kAttnKeyTile];
    const char* v[kAttnKeyTile];
    int64_t n = 0, done = 0, bytes = 0;
    // Bytes taken by e elements, so also the byte offset of element e (Q8_0: 34 bytes per 32
    // elements, e a multiple of 32).
    static int64_t bytes_of(const KvView& kv, int64_t e) {
      return kv.type == DType::F32 ? 4 * e : kv.type == DType::F16 ? 2 * e : e / 32 * 34;
    }
    static const char* addr(const KvView& kv, int64_t blk, int64_t off, int64_t head_off) {
      const int64_t phys = kv.block_table ? kv.block_table[blk] : blk;
      const int64_t e = phys * kv.block_stride + off * kv.token_stride + head_off;
      return static_cast<const char*>(kv.base) + bytes_of(kv, e);
    }
    // Appends keys [j0, j1) of one head (K and V rows of the same size), up to kAttnKeyTile in all.
    void add(const KvView& kk, const KvView& vk, int64_t j0, int64_t j1, int64_t head_off,
             int64_t row) {
      if (n == 0) bytes = row;
      if (row != bytes) return;  // another element type: not worth a second size
      j1 = attn_min(j1, j0 + kAttnKeyTile - n);
      int64_t bk = j0 / kk.block_tokens, ok = j0 % kk.block_tokens;
      int64_t bv = j0 / vk.block_tokens, ov = j0 % vk.block_tokens;
      for (int64_t j = j0; j < j1; ++j, ++n) {
        k[n] = addr(kk, bk, ok, head_off);
        v[n] = addr(vk, bv, ov, head_off);
        if (++ok == kk.block_tokens) ok = 0, ++bk;
        if (++ov == vk.block_tokens) ov = 0, ++bv;
      }
    }
    void issue_upto(int64_t upto) {
      for (; done < upto && done < n; ++done)
        for (const char* p : {k[done], v[done]}) {
          for (int64_t b = 0; b < bytes; b += 64) attn_prefetch(p + b);
          attn_prefetch(p + bytes - 1);  // an unaligned run's last line
        }
    }
  };

  // s[j][rv * L ..] for NV row vectors and KJ keys: qt and s point at the first row vector.
  template <int NV, int KJ>
  static void qk_block(const float* const* krow, const float* qt, int64_t rp, int d, float* s) {
    R acc[KJ][NV];
    BRISK_ATTN_UNROLL
    for (int kj = 0; kj < KJ; ++kj) {
      BRISK_ATTN_UNROLL
      for (int v = 0; v < NV; ++v) acc[kj][v] = V::zero();
    }
    for (int i = 0; i < d; ++i) {
      R qv[NV];
      BRISK_ATTN_UNROLL
      for (int v = 0; v < NV; ++v) qv[v] = V::load(qt + i * rp + v * L);
      BRISK_ATTN_UNROLL
      for (int kj = 0; kj < KJ; ++kj) {
        const R kb = V::set1(krow[kj][i]);
        BRISK_ATTN_UNROLL
        for (int v = 0; v < NV; ++v) acc[kj][v] = V::fma(kb, qv[v], acc[kj][v]);
      }
    }
    BRISK_ATTN_UNROLL
    for (int kj = 0; kj < KJ; ++kj) {
      BRISK_ATTN_UNROLL
      for (int v = 0; v < NV; ++v) V::store(s + kj * rp + v * L, acc[kj][v]);
    }
  }

  template <int NV>
  static void qk_rows(const float* const* krow, int64_t nk, const float* qt, int64_t rp, int d,
                      float* s, Prefetch* pf) {
    // Key blocks of kj keys (kj divides kAttnKeyTile), then 4, 2, 1 for the last tile's tail: a
    // one-key block is one chain of dependent fmas, latency-bound, so it is kept for 1 key.
    constexpr int KJ = V::kj(NV);
    static_assert(kAttnKeyTile % KJ == 0);
    int64_t j = 0;
    for (; j + KJ <= nk; j += KJ) {
      if (pf) pf->issue_upto(pf->n * (j + KJ) / nk);
      qk_block<NV, KJ>(krow + j, qt, rp, d, s + j * rp);
    }
    if (pf) pf->issue_upto(pf->n);
    if (j + 4 <= nk) {
      qk_block<NV, 4>(krow + j, qt, rp, d, s + j * rp);
      j += 4;
    }
    if (j + 2 <= nk) {
      qk_block<NV, 2>(krow + j, qt, rp, d, s + j * rp);
      j += 2;
    }
    if (j < nk) qk_block<NV, 1>(krow + j, qt, rp, d, s + j * rp);
  }

  // Scores of nk keys against all rp rows (already scaled: qt carries scale * log2(e)).
  // pf (may be null): the rows to prefetch, spread over the first pass over the keys.
  static void qk(const float* const* krow, int64_t nk, const float* qt, int64_t rp, int d, float* s,
                 Prefetch* pf) {
    const int64_t nvr = rp / L;
    int64_t rv = 0;
    for (; rv + V::kNvMax <= nvr; rv += V::kNvMax, pf = nullptr)
      qk_rows<V::kNvMax>(krow, nk, qt + rv * L, rp, d, s + rv * L, pf);
    const int64_t rest = nvr - rv;
    if (rest == 0) return;
    const float* q0 = qt + rv * L;
    float* s0 = s + rv * L;
    if constexpr (V::kNvMax == 4) {
      if (rest == 3) return qk_rows<3>(krow, nk, q0, rp, d, s0, pf);
      if (rest == 2) return qk_rows<2>(krow, nk, q0, rp, d, s0, pf);
    }
    if constexpr (V::kNvMax > 1) {
      if (rest == 1) return qk_rows<1>(krow, nk, q0, rp, d, s0, pf);
    }
  }

  // -inf for the keys j0 + j a row may not see (only called for tiles that need it).
  static void mask_tile(float* s, int64_t nk, int64_t j0, int64_t rp, const float* pos, float win) {
    const R w = V::set1(win);
    for (int64_t rv = 0; rv < rp; rv += L) {
      const R p = V::load(pos + rv);
      for (int64_t j = 0; j < nk; ++j) {
        float* sj = s + j * rp + rv;
        V::store(sj, V::mask(V::load(sj), V::set1(static_cast<float>(j0 + j)), p, w));
      }
    }
  }

  // Online softmax step: new running max, rescale factor alpha = 2^(m_old - m_new), scores
  // replaced by 2^(s - m_new), l = l * alpha + sum of the new probabilities.
  static void softmax_tile(float* s, int64_t nk, int64_t rp, float* m, float* l, float* alpha) {
    for (int64_t rv = 0; rv < rp; rv += L) {
      // Four independent max chains: one would wait out the max latency on every key.
      R mx0 = V::set1(-kAttnInf), mx1 = mx0, mx2 = mx0, mx3 = mx0;
      int64_t jm = 0;
      for (; jm + 4 <= nk; jm += 4) {
        mx0 = V::max(mx0, V::load(s + jm * rp + rv));
        mx1 = V::max(mx1, V::load(s + (jm + 1) * rp + rv));
        mx2 = V::max(mx2, V::load(s + (jm + 2) * rp + rv));
        mx3 = V::max(mx3, V::load(s + (jm + 3) * rp + rv));
      }
      for (; jm < nk; ++jm) mx0 = V::max(mx0, V::load(s + jm * rp + rv));
      const R mx = V::max(V::max(mx0, mx1), V::max(mx2, mx3));
      const R m_old = V::load(m + rv);
      const R m_new = V::max(m_old, mx);
      const R m_use = V::finite_or_zero(m_new);
      const R a = V::exp2(V::sub(m_old, m_use));
      R sum0 = V::zero(), sum1 = V::zero();
      int64_t j = 0;
      for (; j + 2 <= nk; j += 2) {
        float* s0 = s + j * rp + rv;
        const R p0 = V::exp2(V::sub(V::load(s0), m_use));
        const R p1 = V::exp2(V::sub(V::load(s0 + rp), m_use));
        V::store(s0, p0);
        V::store(s0 + rp, p1);
        sum0 = V::add(sum0, p0);
        sum1 = V::add(sum1, p1);
      }
      if (j < nk) {
        float* s0 = s + j * rp + rv;
        const R p0 = V::exp2(V::sub(V::load(s0), m_use));
        V::store(s0, p0);
        sum0 = V::add(sum0, p0);
      }
      V::store(l + rv, V::fma(V::load(l + rv), a, V::add(sum0, sum1)));
      V::store(m + rv, m_new);
      V::store(alpha + rv, a);
    }
  }

  // o[r][d0 ..] = o * alpha[r] + sum_j p[j][r] * v[j][d0 ..] for MR rows and ND vectors; p, alpha
  // and o point at the first row.
  template <int MR, int ND>
  static void pv_block(const float* const* vrow, int64_t nk, const float* p, int64_t rp,
                       const float* alpha, float* o, int d, int d0) {
    WR acc[MR][ND];
    BRISK_ATTN_UNROLL
    for (int mr = 0; mr < MR; ++mr) {
      const WR a = W::set1(alpha[mr]);
      BRISK_ATTN_UNROLL
      for (int v = 0; v < ND; ++v) acc[mr][v] = W::mul(W::load(o + mr * d + d0 + v * W::L), a);
    }
    for (int64_t j = 0; j < nk; ++j) {
      WR vv[ND];
      BRISK_ATTN_UNROLL
      for (int v = 0; v < ND; ++v) vv[v] = W::load(vrow[j] + d0 + v * W::L);
      BRISK_ATTN_UNROLL
      for (int mr = 0; mr < MR; ++mr) {
        const WR pb = W::set1(p[j * rp + mr]);
        BRISK_ATTN_UNROLL
        for (int v = 0; v < ND; ++v) acc[mr][v] = W::fma(pb, vv[v], acc[mr][v]);
      }
    }
    BRISK_ATTN_UNROLL
    for (int mr = 0; mr < MR; ++mr) {
      BRISK_ATTN_UNROLL
      for (int v = 0; v < ND; ++v) W::store(o + mr * d + d0 + v * W::L, acc[mr][v]);
    }
  }

  template <int MR>
  static void pv_rows(const float* const* vrow, int64_t nk, const float* p, int64_t rp,
                      const float* alpha, float* o, int d) {
    constexpr int kStep = W::kNd * W::L;
    int d0 = 0;
    for (; d0 + kStep <= d; d0 += kStep) pv_block<MR, W::kNd>(vrow, nk, p, rp, alpha, o, d, d0);
    for (; d0 < d; d0 += W::L) pv_block<MR, 1>(vrow, nk, p, rp, alpha, o, d, d0);
  }

  static void pv(const float* const* vrow, int64_t nk, const float* p, int64_t rp,
                 const float* alpha, float* o, int64_t rows, int d) {
    int64_t r = 0;
    for (; r + W::kMr <= rows; r += W::kMr)
      pv_rows<W::kMr>(vrow, nk, p + r, rp, alpha + r, o + r * d, d);
    for (; r < rows; ++r) pv_rows<1>(vrow, nk, p + r, rp, alpha + r, o + r * d, d);
  }

  static void run(const AttnTile& a, const KvView& kk, const KvView& vk, float* work) {
    const int d = a.head_dim, g = a.group;
    const int64_t rows = a.n_q * g;
    const int64_t rp = (rows + L - 1) / L * L;
    float* qt = work;
    float* o = qt + d * rp;
    float* s = o + rp * d;
    float* m = s + kAttnKeyTile * rp;
    float* l = m + rp;
    float* alpha = l + rp;
    float* pos = alpha + rp;
    float* kbuf = pos + rp;
    float* vbuf = kbuf + kAttnKeyTile * d;

    const float qscale = a.scale * kLog2e;
    // qt[i][r] = q of row r, element i, times scale * log2(e); padding rows are 0. A column of
    // qt is one gather from the rows (element offsets qoff, which fit in int32: ops::attention
    // keeps n_q * q_stride far below 2^31).
    int32_t qoff[kAttnMaxRows];
    float* qmul = alpha;  // alpha is free until the first key tile
    for (int64_t r = 0; r < rp; ++r) {
      const int64_t rr = r < rows ? r : rows - 1;  // padding rows copy the last position
      pos[r] = static_cast<float>(a.pos + rr / g);
      m[r] = -kAttnInf;
      l[r] = 0.0f;
      qoff[r] = static_cast<int32_t>((rr / g) * a.q_stride + (rr % g) * d);
      qmul[r] = r < rows ? qscale : 0.0f;
    }
    for (int64_t rv = 0; rv < rp; rv += L) {
      const R mul = V::load(qmul + rv);
      for (int i = 0; i < d; ++i)
        V::store(qt + i * rp + rv, V::mul(V::gather(a.q + i, qoff + rv), mul));
    }
    for (int64_t i = 0; i < rows * d; i += W::L) W::store(o + i, W::zero());

    const int64_t p_first = a.pos, p_last = a.pos + a.n_q - 1;
    const bool windowed = a.window > 0;
    const int64_t lo = attn_key_lo(a), hi = attn_key_hi(a);
    const float win =
        windowed && a.window < kAttnMaxPositions ? static_cast<float>(a.window) : kAttnInf;
    const int64_t head_off = static_cast<int64_t>(a.kv_head) * d;
    // Decoding tiles (few rows) read each K/V row about once: no copy.
    const bool pack = rows > kPackRows;
    const float* krow[kAttnKeyTile];
    const float* vrow[kAttnKeyTile];
    const int64_t row_bytes = Prefetch::bytes_of(kk, d);
    Prefetch pf;
    for (int64_t j0 = lo; j0 < hi; j0 += kAttnKeyTile) {
      const int64_t nk = attn_min(kAttnKeyTile, hi - j0);
      pf.n = pf.done = 0;
      if (j0 + nk < hi) pf.add(kk, vk, j0 + nk, hi, head_off, row_bytes);
      if (a.next && pf.n < kAttnKeyTile)
        pf.add(*a.next_k, *a.next_v, attn_key_lo(*a.next), attn_key_hi(*a.next),
               static_cast<int64_t>(a.next->kv_head) * d, Prefetch::bytes_of(*a.next_k, d));
      rows_of(kk, j0, nk, head_off, d, pack, kbuf, krow);
      rows_of(vk, j0, nk, head_off, d, pack, vbuf, vrow);
      qk(krow, nk, qt, rp, d, s, pf.n > 0 ? &pf : nullptr);
      // A tile every row sees entirely (the common case inside a long prompt) needs no mask.
      const bool all_visible = j0 + nk - 1 <= p_first && (!windowed || p_last - j0 < a.window);
      if (!all_visible) mask_tile(s, nk, j0, rp, pos, win);
      softmax_tile(s, nk, rp, m, l, alpha);
      pv(vrow, nk, s, rp, alpha, o, rows, d);
    }

    for (int64_t r = 0; r < rows; ++r) {
      float* dst = a.out + (r / g) * a.out_stride + (r % g) * d;
      const float* src = o + r * d;
      const float inv = a.m_out ? 1.0f : (l[r] > 0.0f ? 1.0f / l[r] : 0.0f);
      const WR iv = W::set1(inv);
      for (int i = 0; i < d; i += W::L) W::store(dst + i, W::mul(W::load(src + i), iv));
      if (a.m_out) {
        a.m_out[r] = m[r];
        a.l_out[r] = l[r];
      }
    }
  }

  static void exp2_array(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + L <= n; i += L) V::store(y + i, V::exp2(V::load(x + i)));
    if (i < n) {
      float tx[L], ty[L];
      for (int k = 0; k < L; ++k) tx[k] = i + k < n ? x[i + k] : 0.0f;
      V::store(ty, V::exp2(V::load(tx)));
      for (int k = 0; i + k < n; ++k) y[i + k] = ty[k];
    }
  }
};

}  // namespace
}  // namespace brisk::kernels
