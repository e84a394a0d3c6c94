#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "core/error.h"
#include "core/profile.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"

namespace brisk::model {

// ---- InferenceState -------------------------------------------------------------------------

InferenceState::InferenceState(const HParams& hp, int64_t n_ctx) : n_ctx_(n_ctx) {
  check(n_ctx >= 0 && n_ctx <= (int64_t{1} << 24), "context size ", n_ctx, " is out of range");
  const size_t per_layer = static_cast<size_t>(n_ctx * hp.kv_dim());
  k_.assign(static_cast<size_t>(hp.n_layer), std::vector<float>(per_layer));
  v_.assign(static_cast<size_t>(hp.n_layer), std::vector<float>(per_layer));
}

// ---- loading --------------------------------------------------------------------------------

namespace {

struct Loader {
  const io::ModelFile& f;
  const ArchSpec& a;
  uint64_t n_params = 0, bytes = 0;

  const gguf::TensorInfo* find(TensorRole role, int layer) const {
    return f.find_tensor(tensor_name(a, role, layer));
  }
  const gguf::TensorInfo& require(TensorRole role, int layer) const {
    const gguf::TensorInfo* t = find(role, layer);
    if (!t) fail(f.path, ": missing tensor '", tensor_name(a, role, layer), "'");
    return *t;
  }
  void count(const gguf::TensorInfo& t) {
    n_params += static_cast<uint64_t>(t.n_elements());
    bytes += t.nbytes;
  }
  ops::WeightView matrix(const gguf::TensorInfo& t, int64_t n_in, int64_t n_out) {
    if (t.shape.size() != 2 || t.shape[0] != n_in || t.shape[1] != n_out)
      fail(f.path, ": tensor '", t.name, "' has shape ", shape_str(t), ", expected [", n_in, ", ",
           n_out, "]");
    if (!kernels::has_quant_kernels(t.type) || !dtype_layout(t.type).storage)
      fail(f.path, ": tensor '", t.name, "' has unsupported type ", dtype_name(t.type));
    count(t);
    return ops::WeightView{t.type, n_in, n_out, t.data, t.name.c_str()};
  }
  ops::WeightView matrix(TensorRole role, int layer, int64_t n_in, int64_t n_out) {
    return matrix(require(role, layer), n_in, n_out);
  }
  // A layer matrix stored dense (N) or factorised (N.lr_a, N.lr_b; quant/lowrank.h). For a
  // factorised one, lr gets the factors and the returned dense view has no data.
  ops::WeightView layer_matrix(TensorRole role, int layer, int64_t n_in, int64_t n_out,
                               LowRankPair& lr) {
    const std::string name = tensor_name(a, role, layer);
    const std::string na = name + kLowRankASuffix, nb = name + kLowRankBSuffix;
    const gguf::TensorInfo* ta = f.find_tensor(na);
    const gguf::TensorInfo* tb = f.find_tensor(nb);
    if (!ta && !tb) return matrix(require(role, layer), n_in, n_out);
    if (f.find_tensor(name))
      fail(f.path, ": matrix '", name, "' is stored both dense and factorised ('", ta ? na : nb,
           "')");
    if (!ta || !tb)
      fail(f.path, ": factorised matrix '", name, "' has '", ta ? na : nb, "' but not '",
           ta ? nb : na, "'");
    if (ta->shape.size() != 2 || tb->shape.size() != 2 || ta->shape[1] < 1 ||
        ta->shape[1] != tb->shape[0])
      fail(f.path, ": factorised matrix '", name, "': '", na, "' ", shape_str(*ta), " and '", nb,
           "' ", shape_str(*tb), " do not make a [", n_in, ", ", n_out,
           "] matrix (want [n_in, r] and [r, n_out])");
    const int64_t r = ta->shape[1];
    lr.a = matrix(*ta, n_in, r);
    lr.b = matrix(*tb, r, n_out);
    return ops::WeightView{lr.a.type, n_in, n_out, nullptr, ta->name.c_str()};
  }
  std::vector<float> vec(const gguf::TensorInfo& t, int64_t n) {
    if (t.n_elements() != n || t.shape[0] != n)
      fail(f.path, ": tensor '", t.name, "' has shape ", shape_str(t), ", expected [", n, "]");
    if (!kernels::has_quant_kernels(t.type))
      fail(f.path, ": tensor '", t.name, "' has unsupported type ", dtype_name(t.type));
    count(t);
    std::vector<float> out(static_cast<size_t>(n));
    kernels::quant_kernels(t.type).to_float(t.data, out.data(), n);
    return out;
  }
  std::vector<float> vec(TensorRole role, int layer, int64_t n) {
    return vec(require(role, layer), n);
  }
  static std::string shape_str(const gguf::TensorInfo& t) {
    std::string s = "[";
    for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
    return s + "]";
  }
};

ops::RopeConfig make_rope(const HParams& hp, const ArchSpec& a) {
  ops::RopeConfig r;
  r.n_dims = static_cast<int>(hp.rope_dims);
  r.head_dim = static_cast<int>(hp.head_dim);
  r.base = hp.rope_base;
  r.layout = a.rope_layout;
  switch (hp.rope_scaling) {
    case RopeScalingType::None:
      break;
    case RopeScalingType::Linear:
      r.freq_scale = 1.0f / hp.rope_factor;
      break;
    case RopeScalingType::Yarn:
      r.freq_scale = 1.0f / hp.rope_factor;
      r.ext_factor = 1.0f;
      r.attn_factor = hp.rope_attn_factor;
      r.beta_fast = hp.yarn_beta_fast;
      r.beta_slow = hp.yarn_beta_slow;
      r.n_ctx_orig = static_cast<int>(hp.rope_ctx_orig);
      break;
    case RopeScalingType::Llama3:
      r.freq_factors =
          ops::llama3_freq_factors(r.n_dims, r.base, hp.rope_factor, hp.llama3_low_freq,
                                   hp.llama3_high_freq, static_cast<int>(hp.rope_ctx_orig));
      break;
  }
  return r;
}

}  // namespace

std::unique_ptr<Model> Model::load(io::ModelFile file) {
  const std::string path = file.path;
  try {
    return load_checked(std::move(file));
  } catch (const Error& e) {
    // Metadata accessors know the key but not the file: make every load error name both.
    const std::string msg = e.what();
    if (msg.rfind(path, 0) == 0) throw;
    fail(path, ": ", msg);
  }
}

std::unique_ptr<Model> Model::load_checked(io::ModelFile file) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  const io::ModelFile& f = m->file_;
  const gguf::Value* av = f.find("general.architecture");
  if (!av) fail(f.path, ": missing metadata 'general.architecture' (is this a model file?)");
  if (const gguf::Value* t = f.find("general.type");
      t && t->type == gguf::ValueType::STRING && t->str == "adapter")
    fail(f.path,
         ": this is a LoRA adapter, not a model (apply it with --lora, or merge it with `brisk "
         "lora merge`)");
  const std::string& arch_name = av->as_string("general.architecture");
  m->arch_ = find_arch(arch_name);
  if (!m->arch_)
    fail(f.path, ": unsupported architecture '", arch_name, "' (supported: ", supported_arch_list(),
         ")");
  const ArchSpec& a = *m->arch_;
  HParams& hp = m->hp_;
  hp = read_hparams(f, arch_name);

  Loader ld{f, a};
  const gguf::TensorInfo& embd = ld.require(TensorRole::TokenEmbd, -1);
  if (embd.shape.size() != 2)
    fail(f.path, ": tensor 'token_embd.weight' must be 2-D, has ", embd.shape.size(), " dims");
  if (hp.n_vocab != 0 && hp.n_vocab != embd.shape[1])
    fail(f.path, ": vocab_size ", hp.n_vocab, " disagrees with token_embd rows ", embd.shape[1]);
  hp.n_vocab = embd.shape[1];
  m->tok_embd_ = ld.matrix(embd, hp.n_embd, hp.n_vocab);
  m->output_norm_ = ld.vec(TensorRole::OutputNorm, -1, hp.n_embd);
  if (const gguf::TensorInfo* out = ld.find(TensorRole::Output, -1))
    m->output_ = ld.matrix(*out, hp.n_embd, hp.n_vocab);
  else
    m->output_ = m->tok_embd_;  // tied embeddings

  m->rope_ = make_rope(hp, a);
  if (const gguf::TensorInfo* rf = ld.find(TensorRole::RopeFreqs, -1))
    m->rope_.freq_factors = ld.vec(*rf, hp.rope_dims / 2);

  m->layers_.resize(static_cast<size_t>(hp.n_layer));
  for (int l = 0; l < hp.n_layer; ++l) {
    LayerWeights& w = m->layers_[static_cast<size_t>(l)];
    w.attn_norm = ld.vec(TensorRole::AttnNorm, l, hp.n_embd);
    w.wq = ld.layer_matrix(TensorRole::AttnQ, l, hp.n_embd, hp.q_dim(), w.lr_q);
    w.wk = ld.layer_matrix(TensorRole::AttnK, l, hp.n_embd, hp.kv_dim(), w.lr_k);
    w.wv = ld.layer_matrix(TensorRole::AttnV, l, hp.n_embd, hp.kv_dim(), w.lr_v);
    w.wo = ld.layer_matrix(TensorRole::AttnOut, l, hp.q_dim(), hp.n_embd, w.lr_o);
    const TensorRole bias_roles[3] = {TensorRole::AttnQBias, TensorRole::AttnKBias,
                                      TensorRole::AttnVBias};
    std::vector<float>* biases[3] = {&w.bq, &w.bk, &w.bv};
    const int64_t bias_n[3] = {hp.q_dim(), hp.kv_dim(), hp.kv_dim()};
    for (int i = 0; i < 3; ++i) {
      const gguf::TensorInfo* b =
          a.qkv_bias ? &ld.require(bias_roles[i], l) : ld.find(bias_roles[i], l);
      if (b) *biases[i] = ld.vec(*b, bias_n[i]);
    }
    w.ffn_norm = ld.vec(TensorRole::FfnNorm, l, hp.n_embd);
    w.gate = ld.layer_matrix(TensorRole::FfnGate, l, hp.n_embd, hp.n_ff, w.lr_gate);
    w.up = ld.layer_matrix(TensorRole::FfnUp, l, hp.n_embd, hp.n_ff, w.lr_up);
    w.down = ld.layer_matrix(TensorRole::FfnDown, l, hp.n_ff, hp.n_embd, w.lr_down);
  }
  m->n_params_ = ld.n_params;
  m->weight_bytes_ = ld.bytes;
  m->pack_weights();
  return m;
}

void Model::pack_weights() {
  // One buffer holding every packed matrix in the order a forward pass reads them (per layer
  // Q, K, V, O, gate/up, down; then the output matrix): each op's weights start where the previous
  // op's ended, so decoding is one long sequential read. The row-major views stay valid (they
  // point into the file) for the row path and for get_row.
  // A factorised matrix (no dense data) is packed as its two factors, A then B; gate and up are
  // packed as one matrix only when both are dense.
  auto fused = [](const LayerWeights& w) {
    return w.lr_gate.rank() == 0 && w.lr_up.rank() == 0 ? ops::gate_up_packed_size(w.gate, w.up)
                                                        : size_t{0};
  };
  auto size_of = [](const ops::WeightView& v, const LowRankPair& lr) {
    return lr.rank() > 0 ? ops::packed_size(lr.a) + ops::packed_size(lr.b) : ops::packed_size(v);
  };
  size_t total = 0;
  auto add = [&](size_t n) { total += n; };
  for (LayerWeights& w : layers_) {
    add(size_of(w.wq, w.lr_q) + size_of(w.wk, w.lr_k) + size_of(w.wv, w.lr_v) +
        size_of(w.wo, w.lr_o));
    const size_t gu = fused(w);
    add(gu ? gu : size_of(w.gate, w.lr_gate) + size_of(w.up, w.lr_up));
    add(size_of(w.down, w.lr_down));
  }
  add(ops::packed_size(output_));
  if (total == 0) return;
  packed_ = HugeBuffer(total);
  // Repacking reads every matrix once; spread it over the machine's cores.
  const unsigned hc = std::thread::hardware_concurrency();
  ThreadPool pool(static_cast<int>(std::clamp(hc, 1u, 64u)));
  uint8_t* dst = packed_.data();
  auto pack = [&](ops::WeightView& v) {
    const size_t n = ops::packed_size(v);
    if (n == 0) return;
    ops::pack_weight_into(v, dst, pool);
    dst += n;
  };
  auto pack_mat = [&](ops::WeightView& v, LowRankPair& lr) {
    if (lr.rank() > 0) {
      pack(lr.a);
      pack(lr.b);
    } else {
      pack(v);
    }
  };
  for (LayerWeights& w : layers_) {
    pack_mat(w.wq, w.lr_q);
    pack_mat(w.wk, w.lr_k);
    pack_mat(w.wv, w.lr_v);
    pack_mat(w.wo, w.lr_o);
    if (const size_t gu = fused(w)) {
      w.gate_up = ops::pack_gate_up_into(w.gate, w.up, dst, pool);
      dst += gu;
    } else {
      pack_mat(w.gate, w.lr_gate);
      pack_mat(w.up, w.lr_up);
    }
    pack_mat(w.down, w.lr_down);
  }
  pack(output_);
}

uint64_t Model::bytes_per_token() const {
  auto mat = [](const ops::WeightView& w) {
    return static_cast<uint64_t>(row_bytes(w.type, w.n_in)) * static_cast<uint64_t>(w.n_out);
  };
  auto f32 = [](const std::vector<float>& v) { return v.size() * sizeof(float); };
  uint64_t b = mat(output_) + f32(output_norm_);
  // A tied embedding is read whole by the output matmul; an untied one only at the token's row.
  if (output_.data != tok_embd_.data) b += row_bytes(tok_embd_.type, tok_embd_.n_in);
  auto lmat = [&](const ops::WeightView& v, const LowRankPair& lr) {
    return lr.rank() > 0 ? mat(lr.a) + mat(lr.b) : mat(v);
  };
  for (const LayerWeights& w : layers_) {
    b += lmat(w.wq, w.lr_q) + lmat(w.wk, w.lr_k) + lmat(w.wv, w.lr_v) + lmat(w.wo, w.lr_o) +
         lmat(w.gate, w.lr_gate) + lmat(w.up, w.lr_up) + lmat(w.down, w.lr_down);
    b += f32(w.attn_norm) + f32(w.ffn_norm) + f32(w.bq) + f32(w.bk) + f32(w.bv);
  }
  // Attached adapters: their f32 A and B are read once per step too.
  auto pair = [](const LoraPair& p) { return (p.a.size() + p.b.size()) * sizeof(float); };
  for (const LayerLora& l : lora_layers_)
    for (const LoraPair* p : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) b += pair(*p);
  b += pair(lora_output_);
  return b;
}

// ---- forward --------------------------------------------------------------------------------

namespace {
template <class T>
T* sized(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}
}  // namespace

void attention_block(BlockContext& c, const LayerWeights& w, int64_t layer) {
  const HParams& hp = c.model.hparams();
  InferenceState& st = c.st;
  const int64_t T = c.T;
  float* x = st.x.data();
  float* q = sized(st.q, T * hp.q_dim());
  float* k = sized(st.kc, T * hp.kv_dim());
  float* v = sized(st.vc, T * hp.kv_dim());
  float* att = sized(st.attn, T * hp.q_dim());

  // RMSNorm fused with the activation conversion; Q, K and V in one pass over the pool.
  // Factorised matrices (brisk lowrank) join the same pass through linear_lowrank.
  {
    profile::Scope ps(profile::Op::Qkv);
    const ops::RmsNorm norm{w.attn_norm.data(), hp.rms_eps};
    if (w.lr_q.rank() > 0 || w.lr_k.rank() > 0 || w.lr_v.rank() > 0) {
      const MatOut qkv[3] = {{&w.wq, &w.lr_q, w.bq.empty() ? nullptr : w.bq.data(), q},
                             {&w.wk, &w.lr_k, w.bk.empty() ? nullptr : w.bk.data(), k},
                             {&w.wv, &w.lr_v, w.bv.empty() ? nullptr : w.bv.data(), v}};
      linear_lowrank(x, T, norm, qkv, st, c.pool);
    } else {
      const ops::LinearTarget qkv[3] = {{&w.wq, w.bq.empty() ? nullptr : w.bq.data(), q},
                                        {&w.wk, w.bk.empty() ? nullptr : w.bk.data(), k},
                                        {&w.wv, w.bv.empty() ? nullptr : w.bv.data(), v}};
      ops::linear_multi(x, T, norm, qkv, st.lin, c.pool);
    }
  }
  const LayerLora* lora = c.model.lora(layer);
  if (lora) {
    profile::Scope ps(profile::Op::Lora);
    const LoraOut outs[3] = {{&lora->q, q}, {&lora->k, k}, {&lora->v, v}};
    lora_apply(x, T, ops::RmsNorm{w.attn_norm.data(), hp.rms_eps}, outs, st, c.pool);
  }

  // RoPE per token with the angles computed once per forward pass (st.cos / st.sin), then append
  // K/V at their positions. Tokens are independent: split them over the pool for prompts.
  const ops::RopeConfig& rope = c.model.rope();
  const int64_t half = rope.n_dims / 2;
  const kernels::VecOps& vo = kernels::vec_ops();
  const bool adjacent = rope.layout == ops::RopeLayout::Adjacent;
  const int64_t kv_dim = hp.kv_dim();
  float* kcache = c.paged ? nullptr : st.k(layer);
  float* vcache = c.paged ? nullptr : st.v(layer);
  auto rope_tokens = [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      const float* cs = st.cos.data() + t * half;
      const float* sn = st.sin.data() + t * half;
      vo.rope(q + t * hp.q_dim(), static_cast<int>(hp.n_head), rope.head_dim, rope.n_dims, adjacent,
              cs, sn);
      vo.rope(k + t * kv_dim, static_cast<int>(hp.n_head_kv), rope.head_dim, rope.n_dims, adjacent,
              cs, sn);
      const int64_t p = st.tok_pos[static_cast<size_t>(t)];
      if (c.paged) {
        const BatchSeq& sq = c.seqs[static_cast<size_t>(st.tok_seq[static_cast<size_t>(t)])];
        c.paged->write(layer, sq.block_table, p, k + t * kv_dim, v + t * kv_dim);
      } else {
        std::copy(k + t * kv_dim, k + (t + 1) * kv_dim, kcache + p * kv_dim);
        std::copy(v + t * kv_dim, v + (t + 1) * kv_dim, vcache + p * kv_dim);
      }
    }
  };
  {
    profile::Scope ps(profile::Op::Rope);
    if (T == 1)
      rope_tokens(0, 1, 0);
    else
      c.pool.parallel_for(T, rope_tokens);
  }

  ops::AttentionShape s;
  s.n_head = static_cast<int>(hp.n_head);
  s.n_head_kv = static_cast<int>(hp.n_head_kv);
  s.head_dim = static_cast<int>(hp.head_dim);
  s.sliding_window = static_cast<int>(hp.sliding_window);
  s.scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim));
  {
    profile::Scope ps(profile::Op::Attention);
    // Each sequence over its own keys, all in one pass over the pool: a sequence's result is the
    // same whatever else is in the batch.
    if (c.paged) {
      st.attn_seqs.clear();
      for (const BatchSeq& sq : c.seqs) {
        const int64_t off = sq.begin * hp.q_dim();
        st.attn_seqs.push_back(ops::AttnSeq{q + off, att + off, sq.n, sq.pos0,
                                            c.paged->k_view(layer, sq.block_table.data()),
                                            c.paged->v_view(layer, sq.block_table.data())});
      }
      ops::attention_batch(st.attn_seqs, s, st.attn_scratch, st.attn_items, c.pool);
    } else {
      // One sequence; the contiguous f32 cache is one block of n_ctx tokens.
      const BatchSeq& sq = c.seqs[0];
      const ops::KvView kview = ops::contiguous_kv(kcache, st.n_ctx(), kv_dim);
      const ops::KvView vview = ops::contiguous_kv(vcache, st.n_ctx(), kv_dim);
      ops::attention(q, sq.n, sq.pos0, kview, vview, s, att, st.attn_scratch, c.pool);
    }
  }
  {
    profile::Scope ps(profile::Op::AttnOut);
    if (w.lr_o.rank() > 0) {
      const MatOut o{&w.wo, &w.lr_o, nullptr, x, true};
      linear_lowrank(att, T, ops::RmsNorm{}, std::span(&o, 1), st, c.pool);
    } else {
      ops::linear_add(att, T, w.wo, x, st.lin, c.pool);  // x += att Wo^T
    }
  }
  if (lora) {
    profile::Scope ps(profile::Op::Lora);
    const LoraOut out{&lora->o, x};
    lora_apply(att, T, ops::RmsNorm{}, std::span(&out, 1), st, c.pool);
  }
}

void swiglu_ffn_block(BlockContext& c, const LayerWeights& w, int64_t layer) {
  const HParams& hp = c.model.hparams();
  InferenceState& st = c.st;
  const int64_t T = c.T;
  float* x = st.x.data();
  float* g = sized(st.gate, T * hp.n_ff);
  const ops::RmsNorm norm{w.ffn_norm.data(), hp.rms_eps};
  // Adapters on gate / up change the products before the activation: their deltas (T, n_ff) go
  // to st.lora_d first and swiglu_hidden adds them to its tiles.
  const LayerLora* lora = c.model.lora(layer);
  const float *gate_add = nullptr, *up_add = nullptr;
  if (lora && (lora->gate.rank > 0 || lora->up.rank > 0)) {
    profile::Scope ps(profile::Op::Lora);
    float* d = sized(st.lora_d, 2 * T * hp.n_ff);
    if (lora->gate.rank > 0) gate_add = d;
    if (lora->up.rank > 0) up_add = d + T * hp.n_ff;
    const LoraOut outs[2] = {{&lora->gate, d, false}, {&lora->up, d + T * hp.n_ff, false}};
    lora_apply(x, T, norm, outs, st, c.pool);
  }
  // RMSNorm, gate and up projections and silu(gate) * up in one pass; then the down projection.
  {
    profile::Scope ps(profile::Op::FfnUp);
    if (w.lr_gate.rank() > 0 || w.lr_up.rank() > 0) {
      // A factorised gate or up: unfused, gate into g and up into st.up, then g = silu(g) * up.
      float* u = sized(st.up, T * hp.n_ff);
      const MatOut gu[2] = {{&w.gate, &w.lr_gate, nullptr, g}, {&w.up, &w.lr_up, nullptr, u}};
      linear_lowrank(x, T, norm, gu, st, c.pool);
      const kernels::VecOps& vo = kernels::vec_ops();
      if (gate_add) vo.add(g, gate_add, T * hp.n_ff);
      if (up_add) vo.add(u, up_add, T * hp.n_ff);
      vo.silu_mul(g, u, g, T * hp.n_ff);
    } else {
      ops::swiglu_hidden(x, T, norm, w.gate, w.up, w.gate_up, g, st.lin, c.pool, gate_add, up_add);
    }
  }
  {
    profile::Scope ps(profile::Op::FfnDown);
    if (w.lr_down.rank() > 0) {
      const MatOut d{&w.down, &w.lr_down, nullptr, x, true};
      linear_lowrank(g, T, ops::RmsNorm{}, std::span(&d, 1), st, c.pool);
    } else {
      ops::linear_add(g, T, w.down, x, st.lin, c.pool);  // x += g Wdown^T
    }
  }
  if (lora) {
    profile::Scope ps(profile::Op::Lora);
    const LoraOut out{&lora->down, x};
    lora_apply(g, T, ops::RmsNorm{}, std::span(&out, 1), st, c.pool);
  }
}

void Model::forward(std::span<const int32_t> tokens, InferenceState& st, std::vector<float>& logits,
                    bool all_logits, ThreadPool& pool) const {
  const int64_t T = static_cast<int64_t>(tokens.size());
  check(T > 0, "forward: empty batch");
  const int64_t pos0 = st.n_past;
  if (pos0 + T > st.n_ctx())
    fail("context full: ", pos0, " + ", T, " tokens exceed the context size ", st.n_ctx());
  const BatchSeq seq{0, T, pos0, {}, true};
  // Only the rows whose logits are wanted go through the final norm and the output matmul.
  const int64_t row0 = all_logits ? 0 : T - 1;
  const int64_t rows[2] = {row0, T - 1};  // a contiguous range [row0, T)
  run(tokens, std::span(&seq, 1), nullptr, st, std::span<const int64_t>(rows, 2), logits, pool);
  st.n_past = pos0 + T;
}

void Model::forward_batch(std::span<const int32_t> tokens, std::span<const BatchSeq> seqs,
                          PagedKvCache& kv, InferenceState& st, std::vector<float>& logits,
                          ThreadPool& pool) const {
  const int64_t T = static_cast<int64_t>(tokens.size());
  check(T > 0 && !seqs.empty(), "forward_batch: empty batch");
  int64_t next = 0;
  for (const BatchSeq& sq : seqs) {
    check(sq.begin == next && sq.n > 0 && sq.begin + sq.n <= T && sq.pos0 >= 0,
          "forward_batch: sequences must tile the batch in order");
    check(sq.pos0 + sq.n <= static_cast<int64_t>(sq.block_table.size()) * kv.block_size(),
          "forward_batch: positions [", sq.pos0, ", ", sq.pos0 + sq.n, ") beyond the block table");
    next += sq.n;
  }
  check(next == T, "forward_batch: sequences cover ", next, " of ", T, " tokens");
  // One [first, last] pair per sequence that wants logits: its last token.
  std::vector<int64_t>& rows = st.out_rows;
  rows.clear();
  for (const BatchSeq& sq : seqs)
    if (sq.logits) rows.insert(rows.end(), {sq.begin + sq.n - 1, sq.begin + sq.n - 1});
  run(tokens, seqs, &kv, st, rows, logits, pool);
}

void Model::run(std::span<const int32_t> tokens, std::span<const BatchSeq> seqs,
                PagedKvCache* paged, InferenceState& st, std::span<const int64_t> out_rows,
                std::vector<float>& logits, ThreadPool& pool) const {
  const int64_t T = static_cast<int64_t>(tokens.size());
  for (int32_t id : tokens)
    if (id < 0 || id >= hp_.n_vocab) fail("token id ", id, " out of range [0, ", hp_.n_vocab, ")");

  float* x = sized(st.x, T * hp_.n_embd);
  auto embed = [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t)
      ops::get_row(tok_embd_, tokens[static_cast<size_t>(t)], x + t * hp_.n_embd);
  };
  {
    profile::Scope ps(profile::Op::Embed);
    if (T == 1)
      embed(0, 1, 0);
    else
      pool.parallel_for(T, embed);
  }

  // Positions of the T tokens and their RoPE angles, shared by every layer.
  const int64_t half = rope_.n_dims / 2;
  float* cs = sized(st.cos, T * half);
  float* sn = sized(st.sin, T * half);
  int64_t* tp = sized(st.tok_pos, T);
  int32_t* ts = sized(st.tok_seq, T);
  for (size_t i = 0; i < seqs.size(); ++i)
    for (int64_t t = 0; t < seqs[i].n; ++t) {
      tp[seqs[i].begin + t] = seqs[i].pos0 + t;
      ts[seqs[i].begin + t] = static_cast<int32_t>(i);
    }
  for (int64_t t = 0; t < T; ++t) ops::rope_angles(rope_, tp[t], cs + t * half, sn + t * half);

  BlockContext c{*this, st, pool, T, seqs, paged};
  for (int l = 0; l < hp_.n_layer; ++l) arch_->block(c, l);

  // out_rows holds [first, last] pairs of batch rows whose logits are wanted; a single pair is
  // used in place, several are gathered into one contiguous block first.
  const float* src = x;
  int64_t n_out = 0;
  {
    profile::Scope ps(profile::Op::Output);
    if (out_rows.size() == 2) {
      src = x + out_rows[0] * hp_.n_embd;
      n_out = out_rows[1] - out_rows[0] + 1;
    } else {
      for (size_t i = 0; i < out_rows.size(); i += 2) n_out += out_rows[i + 1] - out_rows[i] + 1;
      float* g = sized(st.h, n_out * hp_.n_embd);
      int64_t r = 0;
      for (size_t i = 0; i < out_rows.size(); i += 2)
        for (int64_t t = out_rows[i]; t <= out_rows[i + 1]; ++t, ++r)
          std::copy(x + t * hp_.n_embd, x + (t + 1) * hp_.n_embd, g + r * hp_.n_embd);
      src = g;
    }
    logits.resize(static_cast<size_t>(n_out * hp_.n_vocab));
    if (n_out == 0) return;
    const ops::LinearTarget out{&output_, nullptr, logits.data()};
    ops::linear_multi(src, n_out, ops::RmsNorm{output_norm_.data(), hp_.rms_eps},
                      std::span(&out, 1), st.lin, pool);
  }
  if (lora_output_.rank > 0) {
    profile::Scope ps(profile::Op::Lora);
    const LoraOut lo{&lora_output_, logits.data()};
    lora_apply(src, n_out, ops::RmsNorm{output_norm_.data(), hp_.rms_eps}, std::span(&lo, 1), st,
               pool);
  }
}

}  // namespace brisk::model
