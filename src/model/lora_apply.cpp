// LoRA adapters applied without merging: Model::add_lora stacks adapters per matrix, lora_apply
// computes their products next to the base ones.
//
// Why stacked pairs: y += sum_i f_i B_i (A_i x) equals (x [A_1; A_2; ...]^T) [f_1 B_1 | f_2 B_2 |
// ...]^T, so however many adapters are attached, each adapted matrix costs two small f32 products
// per forward pass: x A^T (T, rank) and then (T, rank) B^T added to the base output. Both run on
// the packed f32 GEMM (kernels/cpu/gemm.h) through ops::linear_multi, which also fuses the RMSNorm
// of the inputs shared with the base products. Cost per token: rank * (n_in + n_out) multiply-adds
// per matrix, about 2 * rank / min(n_in, n_out) of the base product's, read from f32 weights.
#include <algorithm>
#include <cmath>
#include <thread>

#include "core/error.h"
#include "model/model.h"

namespace brisk::model {

namespace {

float* sized(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

LoraPair* pair_for(std::vector<LayerLora>& layers, LoraPair& output, const LoraSlot& s) {
  if (s.role == TensorRole::Output) return &output;
  LayerLora& l = layers[static_cast<size_t>(s.layer)];
  switch (s.role) {
    case TensorRole::AttnQ:
      return &l.q;
    case TensorRole::AttnK:
      return &l.k;
    case TensorRole::AttnV:
      return &l.v;
    case TensorRole::AttnOut:
      return &l.o;
    case TensorRole::FfnGate:
      return &l.gate;
    case TensorRole::FfnUp:
      return &l.up;
    case TensorRole::FfnDown:
      return &l.down;
    default:
      fail("LoRA: tensor role ", static_cast<int>(s.role), " cannot be adapted");
  }
}

// Appends target t (factor f folded into B) to the stacked pair p of a (n_out, n_in) matrix.
void stack(LoraPair& p, const LoraTarget& t, float f) {
  const int64_t r0 = p.rank, r = t.rank, R = r0 + r;
  p.a.insert(p.a.end(), t.a.begin(), t.a.end());  // (R, n_in): the new rows below the old
  std::vector<float> b(static_cast<size_t>(t.n_out * R));
  for (int64_t o = 0; o < t.n_out; ++o) {
    float* row = b.data() + o * R;
    for (int64_t j = 0; j < r0; ++j) row[j] = p.b[static_cast<size_t>(o * r0 + j)];
    for (int64_t j = 0; j < r; ++j) row[r0 + j] = f * t.b[static_cast<size_t>(o * r + j)];
  }
  p.b = std::move(b);
  p.rank = R;
  p.wa = ops::WeightView{DType::F32, t.n_in, R, p.a.data(), "lora_a"};
  p.wb = ops::WeightView{DType::F32, R, t.n_out, p.b.data(), "lora_b"};
}

}  // namespace

void Model::add_lora(const LoraAdapter& adapter, float scale) {
  const std::string src = adapter.path.empty() ? std::string("adapter") : adapter.path;
  if (!std::isfinite(scale)) fail(src, ": the LoRA scale must be finite");
  check_lora_fits(adapter, file_, *arch_, hp_.n_layer);
  if (lora_layers_.empty()) lora_layers_.resize(static_cast<size_t>(hp_.n_layer));
  for (const LoraTarget& t : adapter.targets) {
    const LoraSlot s = *lora_slot(*arch_, t.name, hp_.n_layer);  // checked above
    stack(*pair_for(lora_layers_, lora_output_, s), t, adapter.factor(t, scale));
  }
  ++n_lora_;

  // Repack every pair into one buffer (the views above point at the row-major vectors until then;
  // they stay in use where the ISA has no packed f32 kernel).
  std::vector<ops::WeightView*> views;
  auto collect = [&](LoraPair& p) {
    if (p.rank == 0) return;
    views.push_back(&p.wa);
    views.push_back(&p.wb);
  };
  for (LayerLora& l : lora_layers_)
    for (LoraPair* p : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) collect(*p);
  collect(lora_output_);
  size_t total = 0;
  for (ops::WeightView* v : views) {
    v->packed = nullptr;
    v->packed_data = nullptr;
    total += ops::packed_size(*v);
  }
  lora_packed_ = HugeBuffer();
  if (total == 0) return;
  lora_packed_ = HugeBuffer(total);
  const unsigned hc = std::thread::hardware_concurrency();
  ThreadPool pool(static_cast<int>(std::clamp(hc, 1u, 16u)));
  uint8_t* dst = lora_packed_.data();
  for (ops::WeightView* v : views) {
    const size_t n = ops::packed_size(*v);
    if (n == 0) continue;
    ops::pack_weight_into(*v, dst, pool);
    dst += n;
  }
}

void lora_apply(const float* x, int64_t T, const ops::RmsNorm& norm, std::span<const LoraOut> outs,
                InferenceState& st, ThreadPool& pool) {
  constexpr size_t kMax = 8;
  check(outs.size() <= kMax, "lora_apply: too many outputs");
  int64_t total = 0;
  for (const LoraOut& o : outs) total += T * o.pair->rank;
  if (total == 0) return;
  // u_i = norm(x) A_i^T (T, rank_i), all pairs in one pass over the pool.
  float* u = sized(st.lora_u, total);
  ops::LinearTarget first[kMax];
  size_t n = 0;
  int64_t off = 0;
  for (const LoraOut& o : outs) {
    if (o.pair->rank == 0) continue;
    first[n++] = ops::LinearTarget{&o.pair->wa, nullptr, u + off};
    off += T * o.pair->rank;
  }
  ops::linear_multi(x, T, norm, std::span(first, n), st.lin, pool);
  // out (+)= u_i B_i^T (T, n_out).
  off = 0;
  for (const LoraOut& o : outs) {
    if (o.pair->rank == 0) continue;
    const ops::LinearTarget second{&o.pair->wb, nullptr, o.out, o.accumulate};
    ops::linear_multi(u + off, T, ops::RmsNorm{}, std::span(&second, 1), st.lin, pool);
    off += T * o.pair->rank;
  }
}

}  // namespace brisk::model
