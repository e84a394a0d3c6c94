// Layer matrices stored factorised by `brisk lowrank` (quant/lowrank.h): W ~= B A computed as
// y = (x A^T) B^T. A (rank, n_in) and B (n_out, rank) are ordinary weight views (F16 or F32 as
// written, packed at load like every other matrix), so the two products run on the same GEMM
// kernels as a dense matrix. Cost per token: rank * (n_in + n_out) multiply-adds instead of
// n_in * n_out, read from factors of that many elements.
//
// The first products of every factorised matrix that shares an input join the dense matrices of
// that input in one linear_multi call (one normalisation + activation conversion, one work list):
// Q, K and V stay one pass over the pool whichever of them are factorised.
#include "core/error.h"
#include "model/model.h"

namespace brisk::model {

void linear_lowrank(const float* x, int64_t T, const ops::RmsNorm& norm,
                    std::span<const MatOut> outs, InferenceState& st, ThreadPool& pool) {
  constexpr size_t kMax = 8;
  check(!outs.empty() && outs.size() <= kMax, "linear_lowrank: bad number of outputs");
  int64_t total = 0;
  for (const MatOut& o : outs) total += T * o.lr->rank();
  if (total > 0 && st.lowrank_u.size() < static_cast<size_t>(total))
    st.lowrank_u.resize(static_cast<size_t>(total));
  float* u = st.lowrank_u.data();

  // First pass: dense products into their outputs, factorised ones' x A^T into u.
  ops::LinearTarget first[kMax];
  int64_t off = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    const MatOut& o = outs[i];
    if (o.lr->rank() == 0) {
      first[i] = ops::LinearTarget{o.w, o.bias, o.out, o.accumulate};
    } else {
      first[i] = ops::LinearTarget{&o.lr->a, nullptr, u + off};
      off += T * o.lr->rank();
    }
  }
  ops::linear_multi(x, T, norm, std::span(first, outs.size()), st.lin, pool);
  if (total == 0) return;

  // Second pass: out (+)= u B^T (+ bias), one matrix at a time (their inputs differ).
  off = 0;
  for (const MatOut& o : outs) {
    const int64_t r = o.lr->rank();
    if (r == 0) continue;
    const ops::LinearTarget second{&o.lr->b, o.bias, o.out, o.accumulate};
    ops::linear_multi(u + off, T, ops::RmsNorm{}, std::span(&second, 1), st.lin, pool);
    off += T * r;
  }
}

}  // namespace brisk::model
