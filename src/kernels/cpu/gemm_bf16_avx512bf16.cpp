// AVX512-BF16 kernel of gemm_bf16 (gemm_bf16.h). Compiled with -mavx512bf16 (CMakeLists.txt:
// the *_avx512bf16.cpp suffix); entered only after gemm_bf16_fast() checked the CPU.
//
// Structure (BLIS-style blocking):
//   for each block of kNc columns of C (jc)
//     for each block of kKc values of K (pc)        C += partial sum of this K block
//       for each block of kMc rows (ic)
//         pack op(A)[ic.., pc..] (mc, kc) to bf16: panels of kMr = 12 rows
//         for each B panel of kNr = 32 columns (jp)
//           (first row block only) pack op(B)[pc.., jc + jp..] (kc, 32) to bf16
//           for each A panel: the micro-kernel on a 12 x 32 tile of C
// The micro-kernel keeps the tile in 24 zmm accumulators; per pair of k it loads the B panel's
// 32 columns (2 zmm of bf16 pairs), broadcasts each row's A pair and issues 24 vdpbf16ps (2
// products per f32 lane each): 96% of the instruction's peak with its operands in cache. The B
// panel (kc/2 x 32 x 4 bytes = 16 KiB at kc=256) stays in L1 while the A panels stream from L2.
// Memory latency is hidden by prefetching: the C tile at the start of each micro-kernel call,
// and the f32 source of the next B panel / next A block a few lines between calls, so packing
// reads cache. On Zen 4 the whole runs at 80-90% of the vdpbf16ps peak at the trainer's shapes
// (packing, 0.3 cycles per element, is most of the rest), about 2x OpenBLAS sgemm.
//
// Packed layout: a "pair" is a 32-bit word holding two bf16 values of consecutive k (k even in
// the low half), the operand layout vdpbf16ps multiplies lane-wise. A panel of w lanes (12 for A,
// 32 for B) stores, for each pair index p = 0 .. ceil(kc/2) - 1, its w lanes' pairs
// contiguously. Lanes past the matrix edge (M, N) and the odd k past an odd K are zero in both
// operands, so they add 0 * 0 and need no special case in the micro-kernel; only the C store is
// masked.
//
// Conversion is vcvtne2ps2bf16 (round to nearest even, the same rounding as f32_to_bf16).
// Packing reads the source either along k (rows of a k-major operand: 2 rows make 16 pairs) or
// across k (a row holds 32 consecutive k of one lane: convert, then a 16 x 16 transpose of the
// 32-bit pairs); each transposition case of A and B is one of those two.
#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's intrinsics headers start shuffles from a self-initialised "undefined" vector.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>

#include "kernels/cpu/gemm_bf16.h"

namespace brisk::kernels {
namespace {

constexpr int kMr = 12;        // rows of the register tile
constexpr int kNr = 32;        // columns of the register tile (2 zmm of f32)
constexpr int64_t kKc = 256;   // K block (even, so only the last block can have an odd length)
constexpr int64_t kMc = 144;   // rows per packed A block (a multiple of kMr)
constexpr int64_t kNc = 1024;  // columns per packed B block (a multiple of kNr)
// (Measured on Zen 4: K blocks of 256-512 and row blocks of 96-240 are all within noise of each
// other; 1024 columns keeps the buffer at 600 KiB, a larger block saved < 1% of A repacking.)

// uint32 words of the packed blocks: B (kc/2 pairs x nc lanes), then A (kc/2 pairs x mc lanes).
constexpr size_t kPackedB = static_cast<size_t>(kKc / 2 * kNc);
constexpr size_t kPackedA = static_cast<size_t>(kKc / 2 * kMc);

// One buffer per thread, 64-byte aligned, allocated at the first call on that thread.
uint32_t* pack_buffer() {
  struct Buffer {
    uint32_t* p = nullptr;
    ~Buffer() { ::operator delete[](p, std::align_val_t(64)); }
  };
  thread_local Buffer buf;
  if (!buf.p)
    buf.p = static_cast<uint32_t*>(
        ::operator new[]((kPackedB + kPackedA) * sizeof(uint32_t), std::align_val_t(64)));
  return buf.p;
}

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

inline __m512i as_i(__m512bh v) {
  return reinterpret_cast<__m512i>(v);
}
inline __m512bh as_bh(__m512i v) {
  return reinterpret_cast<__m512bh>(v);
}

// 16 lanes of an even-k row and the following odd-k row -> 16 pairs (lane j: even_j | odd_j << 16).
inline __m512i pair_rows(__m512 even, __m512 odd) {
  // vcvtne2ps2bf16 puts the second operand's 16 values in words 0..15, the first's in 16..31;
  // the permutation interleaves them: word 2j = even_j, word 2j + 1 = odd_j.
  alignas(64) static const uint16_t kInterleave[32] = {0,  16, 1,  17, 2,  18, 3,  19, 4,  20, 5,
                                                       21, 6,  22, 7,  23, 8,  24, 9,  25, 10, 26,
                                                       11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i words = as_i(_mm512_cvtne2ps_pbh(odd, even));
  return _mm512_permutexvar_epi16(_mm512_load_si512(kInterleave), words);
}

// In-place transpose of a 16 x 16 matrix of 32-bit words (r[i] is row i).
inline void transpose16(__m512i r[16]) {
  __m512i a[16], b[16];  // all in registers once the loops are unrolled
#pragma GCC unroll 16
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);      // per 128-bit lane L: r_i,r_i+1 at 4L,4L+1
    a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);  // ... at 4L+2, 4L+3
  }
#pragma GCC unroll 16
  for (int g = 0; g < 16; g += 4) {
    // b[g + c], lane L: column 4L + c of rows g .. g+3.
    b[g + 0] = _mm512_unpacklo_epi64(a[g], a[g + 2]);
    b[g + 1] = _mm512_unpackhi_epi64(a[g], a[g + 2]);
    b[g + 2] = _mm512_unpacklo_epi64(a[g + 1], a[g + 3]);
    b[g + 3] = _mm512_unpackhi_epi64(a[g + 1], a[g + 3]);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    // Column 4L + c gathers lane L of b[c], b[4 + c], b[8 + c], b[12 + c] (rows 0-3, ..., 12-15).
    const __m512i u0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x44);  // b[c].L0 L1, b[4+c].L0 L1
    const __m512i u1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xEE);  // ... L2 L3
    const __m512i u2 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x44);
    const __m512i u3 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xEE);
    r[c] = _mm512_shuffle_i32x4(u0, u2, 0x88);
    r[4 + c] = _mm512_shuffle_i32x4(u0, u2, 0xDD);
    r[8 + c] = _mm512_shuffle_i32x4(u1, u3, 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(u1, u3, 0xDD);
  }
}

// Packs a k-major block (element (k, j) at src[k * ld + j], k < kc, j < width) into panels of L
// lanes: ceil(width / L) panels of np = ceil(kc / 2) pairs x L words, panel q at dst + q * np * L.
// Row pair by row pair across all panels, so the source is read as two sequential streams.
template <int L>
void pack_along_k(const float* src, int64_t ld, int64_t kc, int64_t width, uint32_t* dst) {
  const int64_t np = (kc + 1) / 2;
  for (int64_t p = 0; p < np; ++p) {
    const float* even = src + 2 * p * ld;
    const bool has_odd = 2 * p + 1 < kc;  // else the odd k of the pair is zero
    for (int64_t j0 = 0; j0 < width; j0 += L) {
      uint32_t* d = dst + (j0 / L * np + p) * L;
      for (int h = 0; h < L; h += 16) {
        const int64_t j = j0 + h;
        const __mmask16 m = lanes(std::min<int64_t>(L - h, width - j));
        __m512 e = _mm512_setzero_ps(), o = _mm512_setzero_ps();
        if (m) {
          e = _mm512_maskz_loadu_ps(m, even + j);
          if (has_odd) o = _mm512_maskz_loadu_ps(m, even + ld + j);
        }
        _mm512_mask_storeu_epi32(d + h, lanes(L - h), pair_rows(e, o));
      }
    }
  }
}

// 16 lanes of pack_across_k: w <= 16 source rows (lanes), np pairs of `store` lanes at dst,
// dst_stride words apart. 32 values of k at a time per lane, transposed 16 x 16 in registers.
void pack_across_k16(const float* src, int64_t ld, int64_t kc, int w, uint32_t* dst,
                     int64_t dst_stride, __mmask16 store) {
  for (int64_t k0 = 0; k0 < kc; k0 += 32) {
    const int64_t kn = std::min<int64_t>(32, kc - k0);
    const __mmask16 m0 = lanes(kn), m1 = lanes(kn - 16);
    __m512i r[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      if (j < w) {
        const float* s = src + j * ld + k0;
        // 16 rows of short segments: the hardware prefetchers barely start on each.
        if (k0 + 64 < kc) _mm_prefetch(reinterpret_cast<const char*>(s + 64), _MM_HINT_T0);
        if (k0 + 80 < kc) _mm_prefetch(reinterpret_cast<const char*>(s + 80), _MM_HINT_T0);
        // Words 0..31 are k0 .. k0+31 in order: lane i is the pair (k0 + 2i, k0 + 2i + 1).
        r[j] = as_i(
            _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, s + 16), _mm512_maskz_loadu_ps(m0, s)));
      } else {
        r[j] = _mm512_setzero_si512();
      }
    }
    transpose16(r);  // r[i] lane j: pair i of lane j
    const int np = static_cast<int>((kn + 1) / 2);
    uint32_t* d = dst + k0 / 2 * dst_stride;
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      if (i < np) _mm512_mask_storeu_epi32(d + i * dst_stride, store, r[i]);
  }
}

// Packs a lane-major block (element (k, j) at src[j * ld + k], k < kc, j < width) into the same
// panels as pack_along_k.
template <int L>
void pack_across_k(const float* src, int64_t ld, int64_t kc, int64_t width, uint32_t* dst) {
  const int64_t np = (kc + 1) / 2;
  for (int64_t j0 = 0; j0 < width; j0 += L)
    for (int h = 0; h < L; h += 16) {
      const int64_t w = std::min<int64_t>(std::min(16, L - h), width - j0 - h);
      uint32_t* d = dst + j0 / L * np * L + h;
      if (w > 0) {
        pack_across_k16(src + (j0 + h) * ld, ld, kc, static_cast<int>(w), d, L, lanes(L - h));
      } else {
        for (int64_t p = 0; p < np; ++p) _mm512_storeu_si512(d + p * L, _mm512_setzero_si512());
      }
    }
}

// How the micro-kernel combines its tile with C.
enum class Store { kSet, kScaleAdd, kAdd };  // C = acc; C = acc + beta * C; C += acc

// C tile (R <= kMr rows, columns under masks m0 | m1 << 16) from np pairs of an A panel (np x kMr
// words) and a B panel (np x kNr words).
template <int R>
void micro_kernel(int64_t np, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc,
                  __mmask16 m0, __mmask16 m1, Store mode, float beta) {
  __m512 acc[R][2];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    // The tile of C is written (and read, unless kSet) after the loop: fetching it now hides
    // the cache misses of large C matrices behind the loop (~10% of the time otherwise).
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    if (m1) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
  }
  for (int64_t p = 0; p < np; ++p, ap += kMr, bp += kNr) {
    const __m512bh b0 = as_bh(_mm512_load_si512(bp)), b1 = as_bh(_mm512_load_si512(bp + 16));
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512bh a = as_bh(_mm512_set1_epi32(static_cast<int>(ap[r])));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
    }
  }
  const __m512 vb = _mm512_set1_ps(beta);
  // Full tiles store unmasked: Zen 4 runs masked 512-bit stores several times slower.
  const bool full = (m0 & m1) == 0xFFFF;
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (mode != Store::kSet) {
      const __m512 c0 = _mm512_maskz_loadu_ps(m0, cr), c1 = _mm512_maskz_loadu_ps(m1, cr + 16);
      if (mode == Store::kAdd) {
        v0 = _mm512_add_ps(c0, v0);
        v1 = _mm512_add_ps(c1, v1);
      } else {
        v0 = _mm512_fmadd_ps(vb, c0, v0);
        v1 = _mm512_fmadd_ps(vb, c1, v1);
      }
    }
    if (full) {
      _mm512_storeu_ps(cr, v0);
      _mm512_storeu_ps(cr + 16, v1);
    } else {
      _mm512_mask_storeu_ps(cr, m0, v0);
      _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
  }
}

using MicroKernel = void (*)(int64_t, const uint32_t*, const uint32_t*, float*, int64_t, __mmask16,
                             __mmask16, Store, float);
constexpr MicroKernel kKernels[kMr + 1] = {
    nullptr,          micro_kernel<1>,  micro_kernel<2>, micro_kernel<3>, micro_kernel<4>,
    micro_kernel<5>,  micro_kernel<6>,  micro_kernel<7>, micro_kernel<8>, micro_kernel<9>,
    micro_kernel<10>, micro_kernel<11>, micro_kernel<12>};

// A rectangle of the f32 source: `rows` rows of `len` floats, `ld` floats apart.
struct Region {
  const float* p = nullptr;
  int64_t ld = 0, rows = 0, len = 0;
};

// Prefetches the cache lines of the region to be packed next, a few between micro-kernel calls:
// packing then reads from cache instead of waiting on memory (it was ~15% of the time on large
// operands; the micro-kernel itself hardly touches memory, so the fetches overlap with it).
class Prefetcher {
 public:
  // Spreads the region's lines over about `calls` calls of step().
  void start(const Region& r, int64_t calls) {
    r_ = r;
    row_ = off_ = 0;
    const int64_t lines = r.rows * ((r.len + 15) / 16);
    per_call_ = calls > 0 ? (lines + calls - 1) / calls : 0;
  }
  void step() {
    for (int64_t i = 0; i < per_call_ && row_ < r_.rows; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(r_.p + row_ * r_.ld + off_), _MM_HINT_T1);
      off_ += 16;
      if (off_ >= r_.len) {
        off_ = 0;
        ++row_;
      }
    }
  }

 private:
  Region r_;
  int64_t row_ = 0, off_ = 0, per_call_ = 0;
};

}  // namespace

void gemm_bf16_avx512bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc) {
  uint32_t* const bpack = pack_buffer();
  uint32_t* const apack = bpack + kPackedB;
  // Source of op(A) rows i .. i + h - 1 x k = k0 .. k0 + kc - 1, and of op(B) columns j .. j + w
  // - 1.
  auto a_region = [&](int64_t i, int64_t k0, int64_t h, int64_t kc) {
    return trans_a ? Region{A + k0 * lda + i, lda, kc, h} : Region{A + i * lda + k0, lda, h, kc};
  };
  auto b_region = [&](int64_t j, int64_t k0, int64_t w, int64_t kc) {
    return trans_b ? Region{B + j * ldb + k0, ldb, w, kc} : Region{B + k0 * ldb + j, ldb, kc, w};
  };
  Prefetcher pf_a, pf_b;
  for (int64_t jc = 0; jc < N; jc += kNc) {
    const int64_t nc = std::min(kNc, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKc) {
      const int64_t kc = std::min(kKc, K - pc), np = (kc + 1) / 2;
      const int64_t next_kc = std::min(kKc, K - pc - kKc);  // <= 0 in the last K block
      const Store mode = pc > 0 ? Store::kAdd : beta == 0.0f ? Store::kSet : Store::kScaleAdd;
      for (int64_t ic = 0; ic < M; ic += kMc) {
        const int64_t mc = std::min(kMc, M - ic), tiles = (mc + kMr - 1) / kMr;
        const bool last_ic = ic + kMc >= M;
        // A panels (np pairs x 12 lanes): lanes are the rows ic .. ic + mc - 1.
        if (trans_a)  // op(A)(m, k) = A[k * lda + m]
          pack_along_k<kMr>(A + pc * lda + ic, lda, kc, mc, apack);
        else  // op(A)(m, k) = A[m * lda + k]
          pack_across_k<kMr>(A + ic * lda + pc, lda, kc, mc, apack);
        // While this block computes: the next A block, in loop order.
        Region next_a;
        if (!last_ic)
          next_a = a_region(ic + kMc, pc, std::min(kMc, M - ic - kMc), kc);
        else if (next_kc > 0)
          next_a = a_region(0, pc + kKc, std::min(kMc, M), next_kc);
        pf_a.start(next_a, (nc + kNr - 1) / kNr * tiles);
        for (int64_t jp = 0; jp < nc; jp += kNr) {
          const int64_t nr = std::min<int64_t>(kNr, nc - jp);
          uint32_t* const bp = bpack + jp * np;
          if (ic == 0) {
            // B panels (np pairs x 32 lanes), packed during the first row block: lanes are the
            // columns jc + jp .. jc + jp + nr - 1.
            if (trans_b)  // op(B)(k, n) = B[n * ldb + k]
              pack_across_k<kNr>(B + (jc + jp) * ldb + pc, ldb, kc, nr, bp);
            else  // op(B)(k, n) = B[k * ldb + n]
              pack_along_k<kNr>(B + pc * ldb + jc + jp, ldb, kc, nr, bp);
          }
          // While this column of tiles computes: the next B panel to pack.
          Region next_b;
          if (ic == 0 && jp + kNr < nc)
            next_b = b_region(jc + jp + kNr, pc, std::min<int64_t>(kNr, nc - jp - kNr), kc);
          else if (last_ic && jp + kNr >= nc && next_kc > 0)
            next_b = b_region(jc, pc + kKc, std::min<int64_t>(kNr, nc), next_kc);
          pf_b.start(next_b, tiles);
          const __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
          for (int64_t ip = 0; ip < mc; ip += kMr) {
            pf_a.step();
            pf_b.step();
            const int h = static_cast<int>(std::min<int64_t>(kMr, mc - ip));
            kKernels[h](np, apack + ip * np, bp, C + (ic + ip) * ldc + jc + jp, ldc, m0, m1, mode,
                        beta);
          }
        }
      }
    }
  }
}

}  // namespace brisk::kernels
#endif
