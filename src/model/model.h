// A loaded decoder-only transformer: hyperparameters, the architecture's spec, and weight views
// into the model file (no copies for matrices; norms and biases are converted to f32 once).
//
// forward() runs a batch of T tokens of one sequence at positions [state.n_past, +T), appends
// their K/V to the state's cache, and returns logits. Prefilling a prompt at once and feeding it
// token by token give the same logits (tested).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/huge_buffer.h"
#include "core/thread_pool.h"
#include "io/model_file.h"
#include "model/arch.h"
#include "model/hparams.h"
#include "model/lora.h"
#include "model/paged_kv.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "ops/rope.h"

namespace brisk::model {

// A layer matrix W (n_out, n_in) stored factorised by `brisk lowrank` (quant/lowrank.h has the
// GGUF convention): W ~= B A with A (rank, n_in) in `a` and B (n_out, rank) in `b`; the layer
// computes y = (x A^T) B^T. rank() == 0: the matrix is dense. In the file a factorised `N` is
// absent and stored as N + kLowRankASuffix (ggml [n_in, r]) and N + kLowRankBSuffix ([r, n_out]).
inline constexpr const char* kLowRankASuffix = ".lr_a";
inline constexpr const char* kLowRankBSuffix = ".lr_b";
struct LowRankPair {
  ops::WeightView a, b;
  int64_t rank() const { return a.data ? a.n_out : 0; }
};

// A factorised matrix keeps its dense view's shape (and the factors' type) with data == nullptr,
// so that code reading shapes still works; only the products go through lr_*.
struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // (n_embd)
  ops::WeightView wq, wk, wv, wo;          // (q_dim, n_embd), (kv_dim, n_embd) x2, (n_embd, q_dim)
  std::vector<float> bq, bk, bv;           // empty when the architecture has no QKV bias
  ops::WeightView gate, up, down;          // (n_ff, n_embd) x2, (n_embd, n_ff)
  ops::WeightView gate_up;  // gate and up packed as one matrix (ops::pack_gate_up_into), or unset;
                            // never set when gate or up is factorised
  LowRankPair lr_q, lr_k, lr_v, lr_o, lr_gate, lr_up, lr_down;  // rank 0 unless factorised
  bool has_lowrank() const {
    for (const LowRankPair* p : {&lr_q, &lr_k, &lr_v, &lr_o, &lr_gate, &lr_up, &lr_down})
      if (p->rank() > 0) return true;
    return false;
  }
};

// The LoRA adapters attached to one matrix W (n_out, n_in), stacked into one low-rank pair: A
// (rank, n_in) holds every adapter's A rows, B (n_out, rank) their B columns with each adapter's
// factor s * alpha / r folded in, so any number of adapters costs one pair of products:
// y += (x A^T) B^T. rank 0: no adapter on this matrix.
struct LoraPair {
  int64_t rank = 0;
  std::vector<float> a, b;
  ops::WeightView wa, wb;  // f32 views of a and b (packed where the ISA has an f32 kernel)
};
struct LayerLora {
  LoraPair q, k, v, o, gate, up, down;
};

// Per-sequence state: the KV cache (f32, (n_ctx, kv_dim) per layer) and reusable activation
// buffers, so the decode loop does not allocate. With n_ctx == 0 it holds no cache: scratch for
// forward_batch, whose K/V live in a PagedKvCache.
class InferenceState {
 public:
  InferenceState(const HParams& hp, int64_t n_ctx);
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_past = 0;  // positions [0, n_past) are in the cache
  void clear() { n_past = 0; }
  float* k(int64_t layer) { return k_[static_cast<size_t>(layer)].data(); }
  float* v(int64_t layer) { return v_[static_cast<size_t>(layer)].data(); }

  // Scratch, sized on demand for a batch of T tokens.
  std::vector<float> x, h, q, kc, vc, attn, o, gate, up, cos, sin;
  std::vector<float> attn_scratch;
  std::vector<int64_t> tok_pos;  // per batch token: its position
  std::vector<int32_t> tok_seq;  // per batch token: its sequence (index into the batch's seqs)
  std::vector<int64_t> out_rows;
  std::vector<ops::AttnSeq> attn_seqs;  // forward_batch: the sequences' attention arguments
  std::vector<int64_t>
      attn_items;  // [first, last] pairs of rows whose logits forward_batch returns
  std::vector<float> lora_u, lora_d;  // LoRA: x A^T (T, total rank) and pre-activation deltas
  std::vector<float> lowrank_u;       // factorised matrices: x A^T (T, total rank)
  ops::LinearScratch lin;

 private:
  int64_t n_ctx_;
  std::vector<std::vector<float>> k_, v_;
};

// One sequence's part of a batch for Model::forward_batch: batch tokens [begin, begin + n) are its
// positions [pos0, pos0 + n); its K/V (positions [0, pos0 + n) after the write) live in the
// blocks of block_table. With logits set, its last token's logits are returned.
struct BatchSeq {
  int64_t begin = 0, n = 0, pos0 = 0;
  std::span<const int32_t> block_table;
  bool logits = true;
};

class Model {
 public:
  // Validates architecture, hyperparameters, tensor presence, types and shapes; throws
  // brisk::Error naming the file and the tensor or key at fault.
  static std::unique_ptr<Model> load(io::ModelFile file);

  const HParams& hparams() const { return hp_; }
  const ArchSpec& arch() const { return *arch_; }
  const io::ModelFile& file() const { return file_; }
  int64_t n_vocab() const { return hp_.n_vocab; }
  const LayerWeights& layer(int64_t i) const { return layers_[static_cast<size_t>(i)]; }
  const ops::RopeConfig& rope() const { return rope_; }
  uint64_t n_params() const { return n_params_; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  // Bytes of weights one decode step reads: every layer matrix, the output matrix, one embedding
  // row (the whole matrix when it is tied to the output), and the f32 norms and biases. The
  // numerator of the memory roofline for generation.
  uint64_t bytes_per_token() const;

  // Attaches a LoRA adapter, applied in every forward pass without merging:
  // y = W x + scale * alpha / r * B (A x) for each adapted matrix. Adapters stack (call again).
  // Checks the adapter against this model first (architecture, tensor names, shapes) and throws
  // brisk::Error naming the adapter file and tensor. Not safe during a forward pass. Without any
  // adapter the forward pass is exactly the plain one.
  void add_lora(const LoraAdapter& adapter, float scale = 1.0f);
  int n_lora() const { return n_lora_; }
  // The adapters on layer i, or nullptr when no adapter is attached.
  const LayerLora* lora(int64_t i) const {
    return lora_layers_.empty() ? nullptr : &lora_layers_[static_cast<size_t>(i)];
  }

  // logits: (T, n_vocab) if all_logits, else (1, n_vocab) for the last token.
  void forward(std::span<const int32_t> tokens, InferenceState& st, std::vector<float>& logits,
               bool all_logits, ThreadPool& pool) const;

  // One pass over a batch of sequences at different positions (continuous batching): the matrix
  // products run over all tokens at once (one int8 GEMM per weight), attention per sequence over
  // its paged K/V. st is scratch only (n_ctx may be 0). logits: (number of seqs with logits,
  // n_vocab), in seqs order. The result for a sequence does not depend on the rest of the batch.
  void forward_batch(std::span<const int32_t> tokens, std::span<const BatchSeq> seqs,
                     PagedKvCache& kv, InferenceState& st, std::vector<float>& logits,
                     ThreadPool& pool) const;

 private:
  Model() = default;
  static std::unique_ptr<Model> load_checked(io::ModelFile file);
  // Repacks every matrix the active ISA has a packed GEMM kernel for (kernels/cpu/gemm.h) into one
  // buffer, in the order a forward pass reads them.
  void pack_weights();
  // The shared body of forward and forward_batch: embeddings, layers, then logits of out_rows.
  void run(std::span<const int32_t> tokens, std::span<const BatchSeq> seqs, PagedKvCache* paged,
           InferenceState& st, std::span<const int64_t> out_rows, std::vector<float>& logits,
           ThreadPool& pool) const;
  io::ModelFile file_;
  HParams hp_;
  const ArchSpec* arch_ = nullptr;
  ops::RopeConfig rope_;
  ops::WeightView tok_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  uint64_t n_params_ = 0, weight_bytes_ = 0;
  HugeBuffer packed_;  // repacked copies of the matrices in forward order (views point into it)
  // Attached LoRA adapters, stacked per matrix (add_lora); lora_packed_ holds their packed f32
  // copies.
  std::vector<LayerLora> lora_layers_;
  LoraPair lora_output_;
  int n_lora_ = 0;
  HugeBuffer lora_packed_;
};

// What an architecture's block function sees: the residual stream x (T, n_embd) to update in
// place, the layer's weights, the state (cache + scratch) and the pool.
struct BlockContext {
  const Model& model;
  InferenceState& st;
  ThreadPool& pool;
  int64_t T;
  std::span<const BatchSeq> seqs;  // the sequences the T tokens belong to (st.tok_pos/tok_seq)
  PagedKvCache* paged;             // nullptr: one sequence in st's contiguous cache
};

// Shared layers used by the architecture files.
void attention_block(BlockContext& c, const LayerWeights& w, int64_t layer);
// Both add the layer's LoRA adapters (model.lora(layer)) to their products when any are attached.
void swiglu_ffn_block(BlockContext& c, const LayerWeights& w, int64_t layer);

// One LoRA product of lora_apply: out (T, n_out) = (x A^T) B^T, or += with accumulate.
struct LoraOut {
  const LoraPair* pair;
  float* out;
  bool accumulate = true;
};
// x is (T, n_in), shared by every pair (normalised first when norm.weight is set); pairs of rank 0
// are skipped. The small products run in f32 on the packed f32 kernels, scratch in st.lora_u.
void lora_apply(const float* x, int64_t T, const ops::RmsNorm& norm, std::span<const LoraOut> outs,
                InferenceState& st, ThreadPool& pool);

// One product of a layer matrix that may be factorised (lowrank_apply.cpp): out (T, n_out) =
// x W^T (+ bias), or += with accumulate; lr->rank() > 0 means W ~= B A.
struct MatOut {
  const ops::WeightView* w;
  const LowRankPair* lr;
  const float* bias;
  float* out;
  bool accumulate = false;
};
// x is (T, n_in), shared by every product (normalised first when norm.weight is set). Dense
// matrices and the factorised ones' first products x A^T (T, rank, scratch in st.lowrank_u) run as
// one linear_multi work list; then each factorised matrix's (x A^T) B^T.
void linear_lowrank(const float* x, int64_t T, const ops::RmsNorm& norm,
                    std::span<const MatOut> outs, InferenceState& st, ThreadPool& pool);

}  // namespace brisk::model
