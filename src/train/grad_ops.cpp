#include "train/grad_ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/gemm_bf16.h"
#include "train/batch.h"

namespace brisk::train {
namespace {

// bf16 arithmetic for the float products (set per step by the trainer in bf16 mode).
bool g_bf16 = false;

// Row-major GEMM: C (M, N) = op(A) . op(B) + beta * C. In bf16 mode, on CPUs with AVX512-BF16,
// both operands are rounded to bf16 and the products summed in f32 (vdpbf16ps: twice the f32 FMA
// rate); elsewhere f32 sgemm.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (g_bf16) {
    kernels::gemm_bf16(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// (sequence, head) work items of the packed batch: tasks (n_seq * n_heads).
struct SeqHead {
  int64_t begin, end, head;
};
std::vector<SeqHead> seq_heads(std::span<const int64_t> seq_start, int64_t n_heads) {
  std::vector<SeqHead> items;
  for (size_t s = 0; s + 1 < seq_start.size(); ++s)
    for (int64_t h = 0; h < n_heads; ++h) items.push_back({seq_start[s], seq_start[s + 1], h});
  // Longest sequences first: better balance of the guided chunks.
  std::stable_sort(items.begin(), items.end(), [](const SeqHead& a, const SeqHead& b) {
    return a.end - a.begin > b.end - b.begin;
  });
  return items;
}

// The products are split over brisk's pool in fixed column blocks of the output (a function of
// the shape only), each block one single-threaded BLAS call with the whole reduction: every
// output element is computed the same way whatever the thread count or timing, and OpenBLAS's
// own threads (which spin and yield against brisk's pool on small machines) stay unused.
ThreadPool* g_pool = nullptr;
constexpr int64_t kColBlock = 64;

template <class F>
void for_col_blocks(int64_t cols, F&& f) {
  const int64_t nb = (cols + kColBlock - 1) / kColBlock;
  if (!g_pool || g_pool->size() == 1 || nb == 1) {
    f(int64_t{0}, cols);
    return;
  }
  // Blocks of kColBlock columns, grouped so each task is at least ~256 columns.
  const int64_t per = std::max<int64_t>(1, std::min<int64_t>(4, nb / g_pool->size()));
  const int64_t ntask = (nb + per - 1) / per;
  g_pool->parallel_for(ntask, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t c0 = t * per * kColBlock, c1 = std::min(cols, (t + 1) * per * kColBlock);
      f(c0, c1);
    }
  });
}

}  // namespace

bool set_bf16_compute(bool on) {
  g_bf16 = on && kernels::gemm_bf16_fast();
  return g_bf16;
}

void set_matmul_pool(ThreadPool* pool) {
  if (pool && g_pool != pool) openblas_set_num_threads(1);
  g_pool = pool;
}
void release_matmul_pool(ThreadPool* pool) {
  if (g_pool == pool) g_pool = nullptr;
}

template <class T>
void matmul_fwd(const T* x, const T* w, T* y, int64_t N, int64_t I, int64_t O, bool accumulate) {
  if (N == 0 || O == 0) return;
  for_col_blocks(O, [&](int64_t o0, int64_t o1) {
    gemm(false, true, N, o1 - o0, I, x, I, w + o0 * I, I, accumulate ? T(1) : T(0), y + o0, O);
  });
}

template <class T>
void matmul_bwd(const T* x, const T* w, const T* dy, T* dx, T* dw, int64_t N, int64_t I, int64_t O,
                bool accumulate_dx) {
  if (N == 0) return;
  if (dx)
    for_col_blocks(I, [&](int64_t i0, int64_t i1) {
      gemm(false, false, N, i1 - i0, O, dy, O, w + i0, I, accumulate_dx ? T(1) : T(0), dx + i0, I);
    });
  if (dw)
    for_col_blocks(I, [&](int64_t i0, int64_t i1) {
      gemm(true, false, O, i1 - i0, N, dy, O, x + i0, I, T(1), dw + i0, I);
    });
}

template <class T>
void rmsnorm_fwd(const T* x, const T* w, T* y, T* r, int64_t N, int64_t D, double eps,
                 ThreadPool& pool) {
  pool.parallel_for(N, [&](int64_t b, int64_t e, int) {
    for (int64_t n = b; n < e; ++n) {
      const T* xr = x + n * D;
      double ss = 0;
      for (int64_t d = 0; d < D; ++d) ss += static_cast<double>(xr[d]) * xr[d];
      const T rr = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
      r[n] = rr;
      T* yr = y + n * D;
      for (int64_t d = 0; d < D; ++d) yr[d] = xr[d] * rr * w[d];
    }
  });
}

template <class T>
void rmsnorm_bwd(const T* x, const T* w, const T* r, const T* dy, T* dx, T* dw, int64_t N,
                 int64_t D, bool accumulate_dx, ThreadPool& pool) {
  // y = x r w with r = (mean x^2 + eps)^-1/2:
  //   dx = r (dy . w) - x r^3 / D * sum_d(dy w x);  dw += sum_n dy x r.
  pool.parallel_for(N, [&](int64_t b, int64_t e, int) {
    for (int64_t n = b; n < e; ++n) {
      const T* xr = x + n * D;
      const T* g = dy + n * D;
      T* o = dx + n * D;
      T s = 0;
      for (int64_t d = 0; d < D; ++d) s += g[d] * w[d] * xr[d];
      const T rr = r[n];
      const T c = s * rr * rr * rr / static_cast<T>(D);
      if (accumulate_dx)
        for (int64_t d = 0; d < D; ++d) o[d] += rr * g[d] * w[d] - xr[d] * c;
      else
        for (int64_t d = 0; d < D; ++d) o[d] = rr * g[d] * w[d] - xr[d] * c;
    }
  });
  if (!dw) return;
  // Columns in blocks (no two threads write one dw entry); rows summed in order (deterministic).
  constexpr int64_t kCols = 64;
  pool.parallel_for((D + kCols - 1) / kCols, [&](int64_t b, int64_t e, int) {
    for (int64_t cb = b; cb < e; ++cb) {
      const int64_t d0 = cb * kCols, d1 = std::min(D, d0 + kCols);
      T acc[kCols] = {};
      for (int64_t n = 0; n < N; ++n) {
        const T* xr = x + n * D;
        const T* g = dy + n * D;
        const T rr = r[n];
        for (int64_t d = d0; d < d1; ++d) acc[d - d0] += g[d] * xr[d] * rr;
      }
      for (int64_t d = d0; d < d1; ++d) dw[d] += acc[d - d0];
    }
  });
}

// cos/sin of (position, pair) for positions [0, n_pos): computed once per (base, hd, n_pos) and
// kept (a training run uses one shape), so RoPE is a table lookup instead of sincos per token.
template <class T>
const std::vector<T>& rope_table(int64_t n_pos, int64_t hd, double base) {
  struct Table {
    int64_t n_pos = -1, hd = -1;
    double base = 0;
    std::vector<T> cs;  // (n_pos, hd/2, 2): cos, sin
  };
  static thread_local Table t;
  if (t.n_pos < n_pos || t.hd != hd || t.base != base) {
    const int64_t half = hd / 2;
    t.cs.resize(static_cast<size_t>(n_pos * half * 2));
    for (int64_t i = 0; i < half; ++i) {
      const double f = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
      for (int64_t p = 0; p < n_pos; ++p) {
        const double a = static_cast<double>(p) * f;
        t.cs[static_cast<size_t>((p * half + i) * 2)] = static_cast<T>(std::cos(a));
        t.cs[static_cast<size_t>((p * half + i) * 2 + 1)] = static_cast<T>(std::sin(a));
      }
    }
    t.n_pos = n_pos;
    t.hd = hd;
    t.base = base;
  }
  return t.cs;
}

template <class T>
void rope_apply(T* x, const int64_t* pos, int64_t N, int64_t n_heads, int64_t hd, double base,
                bool inverse, ThreadPool& pool) {
  const int64_t half = hd / 2;
  int64_t max_pos = 0;
  for (int64_t n = 0; n < N; ++n) max_pos = std::max(max_pos, pos[n]);
  const std::vector<T>& tab = rope_table<T>(max_pos + 1, hd, base);
  const T sgn = inverse ? T(-1) : T(1);
  pool.parallel_for(N, [&](int64_t b, int64_t e, int) {
    for (int64_t n = b; n < e; ++n) {
      const T* cs = tab.data() + pos[n] * half * 2;
      for (int64_t h = 0; h < n_heads; ++h) {
        T* v = x + (n * n_heads + h) * hd;
        for (int64_t i = 0; i < half; ++i) {
          const T c = cs[2 * i], s = sgn * cs[2 * i + 1];
          const T x0 = v[2 * i], x1 = v[2 * i + 1];
          v[2 * i] = x0 * c - x1 * s;
          v[2 * i + 1] = x0 * s + x1 * c;
        }
      }
    }
  });
}

// Attention runs per (sequence, head) as dense BLAS products over the sequence's T tokens: the
// (T, T) score matrix of one head lives only in a task's scratch (T = 256: 256 KiB), the causal
// upper triangle is masked after the product. Q/K/V rows of one head are strided views
// (ld = H*hd or G*hd) into the packed (N, heads, hd) arrays.
template <class T>
void attention_fwd(const T* q, const T* k, const T* v, T* o, T* lse,
                   std::span<const int64_t> seq_start, int64_t H, int64_t G, int64_t hd,
                   ThreadPool& pool) {
  const std::vector<SeqHead> items = seq_heads(seq_start, H);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t group = H / G;
  pool.parallel_for(static_cast<int64_t>(items.size()), [&](int64_t b, int64_t e, int) {
    std::vector<T> S;
    for (int64_t it = b; it < e; ++it) {
      const SeqHead& sh = items[static_cast<size_t>(it)];
      const int64_t h = sh.head, g = h / group, n0 = sh.begin, Tn = sh.end - sh.begin;
      S.resize(static_cast<size_t>(Tn * Tn));
      // S (T, T) = Q_h (T, hd) . K_g (T, hd)^T
      gemm(false, true, Tn, Tn, hd, q + (n0 * H + h) * hd, H * hd, k + (n0 * G + g) * hd, G * hd,
           T(0), S.data(), Tn);
      for (int64_t i = 0; i < Tn; ++i) {
        T* row = S.data() + i * Tn;
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          row[j] *= scale;
          mx = std::max(mx, row[j]);
        }
        T sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        const T inv = T(1) / sum;
        for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
        for (int64_t j = i + 1; j < Tn; ++j) row[j] = 0;
        lse[(n0 + i) * H + h] = mx + std::log(sum);
      }
      // O_h (T, hd) = P (T, T) . V_g (T, hd)
      gemm(false, false, Tn, hd, Tn, S.data(), Tn, v + (n0 * G + g) * hd, G * hd, T(0),
           o + (n0 * H + h) * hd, H * hd);
    }
  });
}

template <class T>
void attention_bwd(const T* q, const T* k, const T* v, const T* o, const T* lse, const T* dout,
                   T* dq, T* dk, T* dv, std::span<const int64_t> seq_start, int64_t H, int64_t G,
                   int64_t hd, ThreadPool& pool) {
  // One task per (sequence, K/V head): it owns dk/dv of that head in that sequence and dq of the
  // query heads that share it, so no two tasks write the same entry. Per query head:
  //   P = exp(scale * Q K^T - lse) (causal), dV += P^T dO, dP = dO V^T,
  //   dS = P * (dP - rowsum(dO * O)) * scale, dQ = dS K, dK += dS^T Q.
  const std::vector<SeqHead> items = seq_heads(seq_start, G);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t group = H / G;
  pool.parallel_for(static_cast<int64_t>(items.size()), [&](int64_t b, int64_t e, int) {
    std::vector<T> P, dP;
    for (int64_t it = b; it < e; ++it) {
      const SeqHead& sh = items[static_cast<size_t>(it)];
      const int64_t g = sh.head, n0 = sh.begin, Tn = sh.end - sh.begin;
      P.resize(static_cast<size_t>(Tn * Tn));
      dP.resize(static_cast<size_t>(Tn * Tn));
      const T* Kg = k + (n0 * G + g) * hd;
      const T* Vg = v + (n0 * G + g) * hd;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        const T* Qh = q + (n0 * H + h) * hd;
        const T* dOh = dout + (n0 * H + h) * hd;
        gemm(false, true, Tn, Tn, hd, Qh, H * hd, Kg, G * hd, T(0), P.data(), Tn);
        for (int64_t i = 0; i < Tn; ++i) {
          T* row = P.data() + i * Tn;
          const T li = lse[(n0 + i) * H + h];
          for (int64_t j = 0; j <= i; ++j) row[j] = std::exp(row[j] * scale - li);
          for (int64_t j = i + 1; j < Tn; ++j) row[j] = 0;
        }
        const T beta = h == g * group ? T(0) : T(1);  // the group's first head initialises dK/dV
        gemm(true, false, Tn, hd, Tn, P.data(), Tn, dOh, H * hd, beta, dv + (n0 * G + g) * hd,
             G * hd);
        gemm(false, true, Tn, Tn, hd, dOh, H * hd, Vg, G * hd, T(0), dP.data(), Tn);
        for (int64_t i = 0; i < Tn; ++i) {
          const T Di = dot(dOh + i * H * hd, o + ((n0 + i) * H + h) * hd, hd);
          T* pr = P.data() + i * Tn;
          const T* dpr = dP.data() + i * Tn;
          for (int64_t j = 0; j <= i; ++j) pr[j] = pr[j] * (dpr[j] - Di) * scale;  // now dS
        }
        gemm(false, false, Tn, hd, Tn, P.data(), Tn, Kg, G * hd, T(0), dq + (n0 * H + h) * hd,
             H * hd);
        gemm(true, false, Tn, hd, Tn, P.data(), Tn, Qh, H * hd, beta, dk + (n0 * G + g) * hd,
             G * hd);
      }
    }
  });
}

template <class T>
void swiglu_fwd(const T* g, const T* u, T* a, int64_t n, ThreadPool& pool) {
  pool.parallel_for(
      n,
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) a[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
      },
      4096);
}

template <class T>
void swiglu_bwd(const T* g, const T* u, const T* da, T* dg, T* du, int64_t n, ThreadPool& pool) {
  pool.parallel_for(
      n,
      [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) {
          const T sg = T(1) / (T(1) + std::exp(-g[i]));
          const T silu = g[i] * sg;
          du[i] = da[i] * silu;
          dg[i] = da[i] * u[i] * sg * (T(1) + g[i] * (T(1) - sg));
        }
      },
      4096);
}

template <class T>
double cross_entropy(T* logits, const int32_t* targets, int64_t N, int64_t V, bool grad,
                     double scale, double denominator, int64_t* n_counted, ThreadPool& pool) {
  std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
  const double gscale = scale / std::max(denominator, 1.0);
  pool.parallel_for(N, [&](int64_t b, int64_t e, int) {
    std::vector<T> ex;
    for (int64_t n = b; n < e; ++n) {
      T* z = logits + n * V;
      const int32_t t = targets[n];
      if (t == Batch::kIgnore) {
        if (grad) std::fill(z, z + V, T(0));
        continue;
      }
      T mx = z[0];
      for (int64_t i = 1; i < V; ++i) mx = std::max(mx, z[i]);
      // One exp per logit: kept in place (grad) or in scratch, summed in double.
      T* out = z;
      if (!grad) {
        ex.resize(static_cast<size_t>(V));
        out = ex.data();
      }
      const T zt = z[t];
      double sum = 0;
      for (int64_t i = 0; i < V; ++i) {
        out[i] = std::exp(z[i] - mx);
        sum += static_cast<double>(out[i]);
      }
      row_loss[static_cast<size_t>(n)] =
          static_cast<double>(mx) + std::log(sum) - static_cast<double>(zt);
      if (grad) {
        const T f = static_cast<T>(gscale / sum);
        for (int64_t i = 0; i < V; ++i) z[i] *= f;
        z[t] -= static_cast<T>(gscale);
      }
    }
  });
  double total = 0;
  int64_t cnt = 0;
  for (int64_t n = 0; n < N; ++n) {
    total += row_loss[static_cast<size_t>(n)];
    cnt += targets[n] != Batch::kIgnore;
  }
  if (n_counted) *n_counted = cnt;
  return total;
}

template <class T>
void softmax_rows(T* x, int64_t N, int64_t V, double tau, ThreadPool& pool) {
  const T inv_tau = static_cast<T>(1.0 / tau);
  pool.parallel_for(N, [&](int64_t b, int64_t e, int) {
    for (int64_t n = b; n < e; ++n) {
      T* z = x + n * V;
      T mx = z[0];
      for (int64_t i = 1; i < V; ++i) mx = std::max(mx, z[i]);
      double sum = 0;
      for (int64_t i = 0; i < V; ++i) {
        z[i] = std::exp((z[i] - mx) * inv_tau);
        sum += static_cast<double>(z[i]);
      }
      const T inv = static_cast<T>(1.0 / sum);
      for (int64_t i = 0; i < V; ++i) z[i] *= inv;
    }
  });
}

template <class T>
double kl_to_teacher(const T* logits, const T* p_teacher, const int32_t* targets, T* dlogits,
                     int64_t N, int64_t V, double tau, double scale, double denominator,
                     ThreadPool& pool) {
  // KL(p || q), q = softmax(z / tau): tau^2 * sum p (log p - log q); d/dz = tau (q - p).
  std::vector<double> row(static_cast<size_t>(N), 0.0);
  const double gs = scale / std::max(denominator, 1.0);
  pool.parallel_for(N, [&](int64_t b, int64_t e, int) {
    for (int64_t n = b; n < e; ++n) {
      if (targets[n] == Batch::kIgnore) continue;
      const T* z = logits + n * V;
      const T* p = p_teacher + n * V;
      double mx = static_cast<double>(z[0]);
      for (int64_t i = 1; i < V; ++i) mx = std::max(mx, static_cast<double>(z[i]));
      double sum = 0;
      for (int64_t i = 0; i < V; ++i) sum += std::exp((static_cast<double>(z[i]) - mx) / tau);
      const double lse = std::log(sum);  // log q_i = (z_i - mx) / tau - lse
      double kl = 0;
      for (int64_t i = 0; i < V; ++i) {
        const double pi = static_cast<double>(p[i]);
        const double logq = (static_cast<double>(z[i]) - mx) / tau - lse;
        if (pi > 0) kl += pi * (std::log(pi) - logq);
        if (dlogits) dlogits[n * V + i] += static_cast<T>(gs * tau * (std::exp(logq) - pi));
      }
      row[static_cast<size_t>(n)] = tau * tau * kl;
    }
  });
  double total = 0;
  for (double r : row) total += r;
  return total;
}

#define BRISK_TRAIN_OPS(T)                                                                         \
  template void matmul_fwd<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, bool);            \
  template void matmul_bwd<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t, int64_t,     \
                              bool);                                                               \
  template void rmsnorm_fwd<T>(const T*, const T*, T*, T*, int64_t, int64_t, double, ThreadPool&); \
  template void rmsnorm_bwd<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t,   \
                               bool, ThreadPool&);                                                 \
  template void rope_apply<T>(T*, const int64_t*, int64_t, int64_t, int64_t, double, bool,         \
                              ThreadPool&);                                                        \
  template void attention_fwd<T>(const T*, const T*, const T*, T*, T*, std::span<const int64_t>,   \
                                 int64_t, int64_t, int64_t, ThreadPool&);                          \
  template void attention_bwd<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*,   \
                                 T*, T*, std::span<const int64_t>, int64_t, int64_t, int64_t,      \
                                 ThreadPool&);                                                     \
  template void swiglu_fwd<T>(const T*, const T*, T*, int64_t, ThreadPool&);                       \
  template void swiglu_bwd<T>(const T*, const T*, const T*, T*, T*, int64_t, ThreadPool&);         \
  template double cross_entropy<T>(T*, const int32_t*, int64_t, int64_t, bool, double, double,     \
                                   int64_t*, ThreadPool&);                                         \
  template void softmax_rows<T>(T*, int64_t, int64_t, double, ThreadPool&);                        \
  template double kl_to_teacher<T>(const T*, const T*, const int32_t*, T*, int64_t, int64_t,       \
                                   double, double, double, ThreadPool&);
BRISK_TRAIN_OPS(float)
BRISK_TRAIN_OPS(double)
#undef BRISK_TRAIN_OPS

}  // namespace brisk::train
