#include "train/llama_train.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "train/grad_ops.h"

namespace brisk::train {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::F32:
      return "fp32";
    case Precision::BF16:
      return "bf16";
    case Precision::F16:
      return "fp16";
  }
  return "?";
}

Precision parse_precision(const std::string& s) {
  if (s == "fp32" || s == "f32") return Precision::F32;
  if (s == "bf16") return Precision::BF16;
  if (s == "fp16" || s == "f16") return Precision::F16;
  fail("unknown precision '", s, "' (fp32, bf16 or fp16)");
}

const char* mat_tensor_name(Mat m) {
  static const char* const kNames[kNumMats] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                               "ffn_gate", "ffn_up", "ffn_down"};
  return kNames[static_cast<int>(m)];
}

namespace {

// One saved activation tensor in the step's storage precision.
template <class T>
class Saved {
 public:
  void put(const T* x, size_t n, Precision p) {
    n_ = n;
    half_ = std::is_same_v<T, float> && p != Precision::F32;
    if (!half_) {
      f_.assign(x, x + n);
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      h_.resize(n);
      type_ = p == Precision::BF16 ? DType::BF16 : DType::F16;
      kernels::quant_kernels(type_).from_float(x, h_.data(), static_cast<int64_t>(n));
    }
  }
  // The values, decoded into tmp when stored in half precision.
  const T* get(std::vector<T>& tmp) const {
    if (!half_) return f_.data();
    tmp.resize(n_);
    if constexpr (std::is_same_v<T, float>)
      kernels::quant_kernels(type_).to_float(h_.data(), tmp.data(), static_cast<int64_t>(n_));
    return tmp.data();
  }
  size_t bytes() const { return half_ ? n_ * 2 : n_ * sizeof(T); }

 private:
  std::vector<T> f_;
  std::vector<uint16_t> h_;
  size_t n_ = 0;
  bool half_ = false;
  DType type_ = DType::F32;
};

// Rounds x through the half storage type in place (the residual-stream gradient in half modes).
void round_through(float* x, size_t n, Precision p, std::vector<uint16_t>& tmp) {
  if (p == Precision::F32) return;
  const DType t = p == Precision::BF16 ? DType::BF16 : DType::F16;
  tmp.resize(n);
  kernels::quant_kernels(t).from_float(x, tmp.data(), static_cast<int64_t>(n));
  kernels::quant_kernels(t).to_float(tmp.data(), x, static_cast<int64_t>(n));
}
void round_through(double*, size_t, Precision, std::vector<uint16_t>&) {}

}  // namespace

template <class T>
struct LlamaTrainer<T>::Impl {
  struct LayerActs {
    Saved<T> x_in, r1, q, k, v, o, lse, x_mid, r2, g, u;
    size_t bytes() const {
      return x_in.bytes() + r1.bytes() + q.bytes() + k.bytes() + v.bytes() + o.bytes() +
             lse.bytes() + x_mid.bytes() + r2.bytes() + g.bytes() + u.bytes();
    }
  };
  std::vector<LayerActs> acts;  // per layer (checkpointing: only x_in is filled)
  LayerActs recompute;          // checkpointing: the layer being backpropagated; loss only: all
  // Work buffers (f32/T), reused across layers and steps.
  std::vector<T> x, h, q, k, v, o, lse, r, g, u, a, logits, dx, dh, dq, dk, dv, dO, da, dg, du,
      kd_grad;
  std::vector<T> t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11;  // decode scratch for Saved::get
  std::vector<int64_t> pos;
  std::vector<uint16_t> round_tmp;
};

template <class T>
LlamaTrainer<T>::LlamaTrainer(const ModelShape& shape, int n_threads)
    : shape_(shape),
      layout_(ParamLayout::llama(shape)),
      pool_(std::make_unique<ThreadPool>(std::max(1, n_threads))),
      impl_(std::make_unique<Impl>()) {}

template <class T>
LlamaTrainer<T>::~LlamaTrainer() {
  release_matmul_pool(pool_.get());
}

namespace {

template <class T>
struct Ctx {
  const ModelShape& s;
  const ParamLayout& lay;
  const T* P;
  T* G;  // null: no parameter gradients
  LinearHook<T>* hook;
  ThreadPool& pool;
  int64_t N;
  std::span<const int64_t> seq_start;
  const int64_t* pos;
  bool train_base;

  const T* w(size_t idx) const { return P + lay.params()[idx].offset; }
  T* gw(size_t idx) const { return G ? G + lay.params()[idx].offset : nullptr; }
  T* gbase(size_t idx) const { return train_base ? gw(idx) : nullptr; }
  size_t mat_idx(int64_t l, Mat m) const {
    const ParamLayout::Layer& L = lay.layer(l);
    switch (m) {
      case Mat::Q:
        return L.wq;
      case Mat::K:
        return L.wk;
      case Mat::V:
        return L.wv;
      case Mat::O:
        return L.wo;
      case Mat::Gate:
        return L.gate;
      case Mat::Up:
        return L.up;
      case Mat::Down:
        return L.down;
    }
    return 0;
  }
  void lin_fwd(int64_t l, Mat m, const T* x, T* y) const {
    const ParamInfo& p = lay.params()[mat_idx(l, m)];
    if (hook)
      hook->forward(l, m, x, y, N);
    else
      matmul_fwd(x, P + p.offset, y, N, p.cols, p.rows);
  }
  void lin_bwd(int64_t l, Mat m, const T* x, const T* dy, T* dx, bool acc) const {
    const ParamInfo& p = lay.params()[mat_idx(l, m)];
    if (hook)
      hook->backward(l, m, x, dy, dx, N, acc);
    else
      matmul_bwd(x, P + p.offset, dy, dx, gw(mat_idx(l, m)), N, p.cols, p.rows, acc);
  }
};

// One layer forward: x (N, D) in place from x_in to x_out, saving into `sv`.
template <class T, class Acts, class W>
void layer_forward(const Ctx<T>& c, int64_t l, W& w, Acts& sv, Precision prec) {
  const ModelShape& s = c.s;
  const int64_t N = c.N, D = s.dim, hd = s.head_dim(), H = s.heads, G = s.kv_heads, F = s.ffn;
  const ParamLayout::Layer& L = c.lay.layer(l);
  const size_t nD = static_cast<size_t>(N * D);
  w.h.resize(nD);
  w.r.resize(static_cast<size_t>(N));
  w.q.resize(static_cast<size_t>(N * H * hd));
  w.k.resize(static_cast<size_t>(N * G * hd));
  w.v.resize(static_cast<size_t>(N * G * hd));
  w.o.resize(static_cast<size_t>(N * H * hd));
  w.lse.resize(static_cast<size_t>(N * H));
  w.g.resize(static_cast<size_t>(N * F));
  w.u.resize(static_cast<size_t>(N * F));
  w.a.resize(static_cast<size_t>(N * F));

  sv.x_in.put(w.x.data(), nD, prec);
  // Attention half. The stored x_in may be rounded (half modes): the layer computes from the
  // stored value so that the checkpointed recomputation sees exactly the same input.
  const T* xin = sv.x_in.get(w.t1);
  if (xin != w.x.data()) std::copy(xin, xin + nD, w.x.data());
  rmsnorm_fwd(w.x.data(), c.w(L.attn_norm), w.h.data(), w.r.data(), N, D, s.norm_eps, c.pool);
  sv.r1.put(w.r.data(), static_cast<size_t>(N), Precision::F32);
  c.lin_fwd(l, Mat::Q, w.h.data(), w.q.data());
  c.lin_fwd(l, Mat::K, w.h.data(), w.k.data());
  c.lin_fwd(l, Mat::V, w.h.data(), w.v.data());
  rope_apply(w.q.data(), c.pos, N, H, hd, s.rope_base, false, c.pool);
  rope_apply(w.k.data(), c.pos, N, G, hd, s.rope_base, false, c.pool);
  sv.q.put(w.q.data(), w.q.size(), prec);
  sv.k.put(w.k.data(), w.k.size(), prec);
  sv.v.put(w.v.data(), w.v.size(), prec);
  // Attention reads the stored (possibly rounded) q, k, v, as its backward will.
  const T* q = sv.q.get(w.t2);
  const T* k = sv.k.get(w.t3);
  const T* v = sv.v.get(w.t4);
  attention_fwd(q, k, v, w.o.data(), w.lse.data(), c.seq_start, H, G, hd, c.pool);
  sv.o.put(w.o.data(), w.o.size(), prec);
  sv.lse.put(w.lse.data(), w.lse.size(), Precision::F32);
  const T* o = sv.o.get(w.t5);
  // x_mid = x_in + o Wo^T
  if (c.hook) {
    w.h.resize(nD);
    c.lin_fwd(l, Mat::O, o, w.h.data());
    for (size_t i = 0; i < nD; ++i) w.x[i] += w.h[i];
  } else {
    const ParamInfo& po = c.lay.params()[L.wo];
    matmul_fwd(o, c.P + po.offset, w.x.data(), N, po.cols, po.rows, true);
  }
  sv.x_mid.put(w.x.data(), nD, prec);
  const T* xmid = sv.x_mid.get(w.t6);
  if (xmid != w.x.data()) std::copy(xmid, xmid + nD, w.x.data());
  // FFN half.
  rmsnorm_fwd(w.x.data(), c.w(L.ffn_norm), w.h.data(), w.r.data(), N, D, s.norm_eps, c.pool);
  sv.r2.put(w.r.data(), static_cast<size_t>(N), Precision::F32);
  c.lin_fwd(l, Mat::Gate, w.h.data(), w.g.data());
  c.lin_fwd(l, Mat::Up, w.h.data(), w.u.data());
  sv.g.put(w.g.data(), w.g.size(), prec);
  sv.u.put(w.u.data(), w.u.size(), prec);
  const T* g = sv.g.get(w.t7);
  const T* u = sv.u.get(w.t8);
  swiglu_fwd(g, u, w.a.data(), N * F, c.pool);
  if (c.hook) {
    c.lin_fwd(l, Mat::Down, w.a.data(), w.h.data());
    for (size_t i = 0; i < nD; ++i) w.x[i] += w.h[i];
  } else {
    const ParamInfo& pd = c.lay.params()[L.down];
    matmul_fwd(w.a.data(), c.P + pd.offset, w.x.data(), N, pd.cols, pd.rows, true);
  }
}

// One layer backward: w.dx (N, D) holds d loss / d x_out on entry, d loss / d x_in on return.
template <class T, class Acts, class W>
void layer_backward(const Ctx<T>& c, int64_t l, W& w, const Acts& sv) {
  const ModelShape& s = c.s;
  const int64_t N = c.N, D = s.dim, hd = s.head_dim(), H = s.heads, G = s.kv_heads, F = s.ffn;
  const ParamLayout::Layer& L = c.lay.layer(l);
  const size_t nD = static_cast<size_t>(N * D);
  w.dh.resize(nD);
  w.da.resize(static_cast<size_t>(N * F));
  w.dg.resize(static_cast<size_t>(N * F));
  w.du.resize(static_cast<size_t>(N * F));
  w.dO.resize(static_cast<size_t>(N * H * hd));
  w.dq.resize(static_cast<size_t>(N * H * hd));
  w.dk.resize(static_cast<size_t>(N * G * hd));
  w.dv.resize(static_cast<size_t>(N * G * hd));
  w.h.resize(nD);
  w.a.resize(static_cast<size_t>(N * F));

  // FFN: x_out = x_mid + down(swiglu(gate(h2), up(h2))), h2 = rmsnorm(x_mid).
  const T* g = sv.g.get(w.t7);
  const T* u = sv.u.get(w.t8);
  swiglu_fwd(g, u, w.a.data(), N * F, c.pool);
  c.lin_bwd(l, Mat::Down, w.a.data(), w.dx.data(), w.da.data(), false);
  swiglu_bwd(g, u, w.da.data(), w.dg.data(), w.du.data(), N * F, c.pool);
  const T* xmid = sv.x_mid.get(w.t6);
  const T* r2 = sv.r2.get(w.t9);
  // h2 recomputed from x_mid and r2.
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d)
      w.h[static_cast<size_t>(n * D + d)] = xmid[n * D + d] * r2[n] * c.w(L.ffn_norm)[d];
  c.lin_bwd(l, Mat::Gate, w.h.data(), w.dg.data(), w.dh.data(), false);
  c.lin_bwd(l, Mat::Up, w.h.data(), w.du.data(), w.dh.data(), true);
  rmsnorm_bwd(xmid, c.w(L.ffn_norm), r2, w.dh.data(), w.dx.data(), c.gbase(L.ffn_norm), N, D, true,
              c.pool);

  // Attention: x_mid = x_in + wo(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = rmsnorm(x_in).
  const T* o = sv.o.get(w.t5);
  c.lin_bwd(l, Mat::O, o, w.dx.data(), w.dO.data(), false);
  const T* q = sv.q.get(w.t2);
  const T* k = sv.k.get(w.t3);
  const T* v = sv.v.get(w.t4);
  const T* lse = sv.lse.get(w.t10);
  attention_bwd(q, k, v, o, lse, w.dO.data(), w.dq.data(), w.dk.data(), w.dv.data(), c.seq_start, H,
                G, hd, c.pool);
  rope_apply(w.dq.data(), c.pos, N, H, hd, s.rope_base, true, c.pool);
  rope_apply(w.dk.data(), c.pos, N, G, hd, s.rope_base, true, c.pool);
  const T* xin = sv.x_in.get(w.t1);
  const T* r1 = sv.r1.get(w.t11);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d)
      w.h[static_cast<size_t>(n * D + d)] = xin[n * D + d] * r1[n] * c.w(L.attn_norm)[d];
  c.lin_bwd(l, Mat::Q, w.h.data(), w.dq.data(), w.dh.data(), false);
  c.lin_bwd(l, Mat::K, w.h.data(), w.dk.data(), w.dh.data(), true);
  c.lin_bwd(l, Mat::V, w.h.data(), w.dv.data(), w.dh.data(), true);
  rmsnorm_bwd(xin, c.w(L.attn_norm), r1, w.dh.data(), w.dx.data(), c.gbase(L.attn_norm), N, D, true,
              c.pool);
}

}  // namespace

template <class T>
StepResult LlamaTrainer<T>::step(const Batch& b, const T* params, T* grads, const StepOptions& o) {
  const ModelShape& s = shape_;
  const int64_t N = b.n_tokens(), D = s.dim, V = s.vocab;
  check(N > 0, "train: empty batch");
  check(b.seq_start.size() >= 2 && b.seq_start.front() == 0 && b.seq_start.back() == N,
        "train: batch sequence offsets do not cover its ", N, " tokens");
  check(static_cast<int64_t>(b.targets.size()) == N, "train: batch has ", b.targets.size(),
        " targets for ", N, " tokens");
  check(std::is_same_v<T, float> || o.precision == Precision::F32,
        "train: half precision storage needs float compute");
  Impl& w = *impl_;
  set_matmul_pool(pool_.get());
  if constexpr (std::is_same_v<T, float>) set_bf16_compute(o.precision == Precision::BF16);
  // Positions restart at 0 in each sequence.
  w.pos.resize(static_cast<size_t>(N));
  for (size_t q = 0; q + 1 < b.seq_start.size(); ++q) {
    check(b.seq_start[q + 1] > b.seq_start[q], "train: empty sequence in batch");
    check(b.seq_start[q + 1] - b.seq_start[q] <= s.context, "train: sequence of ",
          b.seq_start[q + 1] - b.seq_start[q], " tokens exceeds the context ", s.context);
    for (int64_t i = b.seq_start[q]; i < b.seq_start[q + 1]; ++i)
      w.pos[static_cast<size_t>(i)] = i - b.seq_start[q];
  }
  for (int64_t i = 0; i < N; ++i) {
    check(b.tokens[static_cast<size_t>(i)] >= 0 && b.tokens[static_cast<size_t>(i)] < V,
          "train: token id ", b.tokens[static_cast<size_t>(i)], " outside the vocabulary of ", V);
    const int32_t t = b.targets[static_cast<size_t>(i)];
    check(t == Batch::kIgnore || (t >= 0 && t < V), "train: target id ", t,
          " outside the vocabulary of ", V);
  }
  Ctx<T> c{s,           layout_,      params,      o.grad ? grads : nullptr, hook_, *pool_, N,
           b.seq_start, w.pos.data(), o.train_base};
  const size_t nD = static_cast<size_t>(N * D);

  // Embedding.
  w.x.resize(nD);
  const T* E = params + layout_.params()[layout_.tok_embd()].offset;
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(&w.x[static_cast<size_t>(n * D)], E + static_cast<int64_t>(b.tokens[n]) * D,
                sizeof(T) * static_cast<size_t>(D));

  // Layers forward.
  w.acts.resize(static_cast<size_t>(s.layers));
  for (int64_t l = 0; l < s.layers; ++l) {
    auto& sv = w.acts[static_cast<size_t>(l)];
    if (!o.grad) {
      // Loss only (validation, calibration): no backward will read the activations, so every
      // layer reuses one scratch set and memory does not grow with the depth.
      sv = {};
      layer_forward(c, l, w, w.recompute, o.precision);
    } else if (o.checkpointing) {
      sv = {};
      typename Impl::LayerActs& tmp = w.recompute;
      layer_forward(c, l, w, tmp, o.precision);
      sv.x_in = tmp.x_in;
    } else {
      layer_forward(c, l, w, sv, o.precision);
    }
  }
  size_t bytes = 0;
  for (const auto& a : w.acts) bytes += a.bytes();
  if (o.checkpointing || !o.grad) bytes += w.recompute.bytes();

  // Final norm and logits (N, V).
  Saved<T> x_last, rf;
  x_last.put(w.x.data(), nD, o.precision);
  const T* xl = x_last.get(w.t1);
  w.h.resize(nD);
  w.r.resize(static_cast<size_t>(N));
  const ParamInfo& pon = layout_.params()[layout_.output_norm()];
  const ParamInfo& pout = layout_.params()[layout_.output()];
  rmsnorm_fwd(xl, params + pon.offset, w.h.data(), w.r.data(), N, D, s.norm_eps, *pool_);
  if (hook_) hook_->before_output(w.h.data(), N);
  rf.put(w.r.data(), static_cast<size_t>(N), Precision::F32);
  w.logits.resize(static_cast<size_t>(N * V));
  matmul_fwd(w.h.data(), params + pout.offset, w.logits.data(), N, D, V);
  bytes += x_last.bytes() + rf.bytes() + w.logits.size() * sizeof(T);
  act_bytes_ = bytes;

  StepResult res;
  const double denom = o.denominator > 0 ? o.denominator : static_cast<double>(b.n_loss_tokens());
  const double ce_w = o.teacher_probs ? 1.0 - o.kd_alpha : 1.0;
  if (o.teacher_probs) {
    w.kd_grad.assign(o.grad ? static_cast<size_t>(N * V) : 0, T(0));
    std::vector<T> tp;
    const T* tpp;
    if constexpr (std::is_same_v<T, float>) {
      tpp = o.teacher_probs;
    } else {
      tp.assign(o.teacher_probs, o.teacher_probs + N * V);
      tpp = tp.data();
    }
    res.kl_sum =
        kl_to_teacher(w.logits.data(), tpp, b.targets.data(), o.grad ? w.kd_grad.data() : nullptr,
                      N, V, o.kd_tau, o.loss_scale * o.kd_alpha, denom, *pool_);
  }
  res.loss_sum = cross_entropy(w.logits.data(), b.targets.data(), N, V, o.grad, o.loss_scale * ce_w,
                               denom, &res.n_counted, *pool_);
  if (!o.grad) return res;
  if (o.teacher_probs)
    for (size_t i = 0; i < w.logits.size(); ++i) w.logits[i] += w.kd_grad[i];

  // Backward: logits -> final norm -> layers -> embedding.
  w.dx.resize(nD);
  w.dh.resize(nD);
  T* gout = o.train_base ? grads + pout.offset : nullptr;
  matmul_bwd(w.h.data(), params + pout.offset, w.logits.data(), w.dh.data(), gout, N, D, V);
  rmsnorm_bwd(xl, params + pon.offset, rf.get(w.t11), w.dh.data(), w.dx.data(),
              o.train_base ? grads + pon.offset : nullptr, N, D, false, *pool_);
  round_through(w.dx.data(), nD, o.precision, w.round_tmp);
  for (int64_t l = s.layers - 1; l >= 0; --l) {
    if (o.checkpointing) {
      // Recompute the layer from its stored input (bit-identical to the forward above).
      const T* xin = w.acts[static_cast<size_t>(l)].x_in.get(w.t1);
      w.x.assign(xin, xin + nD);
      layer_forward(c, l, w, w.recompute, o.precision);
      layer_backward(c, l, w, w.recompute);
    } else {
      layer_backward(c, l, w, w.acts[static_cast<size_t>(l)]);
    }
    round_through(w.dx.data(), nD, o.precision, w.round_tmp);
  }
  if (o.train_base) {
    T* gE = grads + layout_.params()[layout_.tok_embd()].offset;
    for (int64_t n = 0; n < N; ++n) {
      T* row = gE + static_cast<int64_t>(b.tokens[n]) * D;
      const T* d = &w.dx[static_cast<size_t>(n * D)];
      for (int64_t i = 0; i < D; ++i) row[i] += d[i];
    }
  }
  return res;
}

template <class T>
void LlamaTrainer<T>::logits(const Batch& b, const T* params, std::vector<T>& out) {
  StepOptions o;
  o.grad = false;
  Batch bb = b;
  if (bb.targets.size() != bb.tokens.size()) bb.targets.assign(bb.tokens.size(), Batch::kIgnore);
  step(bb, params, nullptr, o);
  out = impl_->logits;
}

template class LlamaTrainer<float>;
template class LlamaTrainer<double>;

}  // namespace brisk::train
