#include "train/lora_hook.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "train/grad_ops.h"
#include "train/rng.h"

namespace brisk::train {
namespace {

double unit(uint64_t x) {
  return static_cast<double>(splitmix64(x) >> 11) / 9007199254740992.0;
}

}  // namespace

std::vector<Mat> parse_lora_targets(const std::string& s) {
  if (s == "all") return {Mat::Q, Mat::K, Mat::V, Mat::O, Mat::Gate, Mat::Up, Mat::Down};
  std::vector<Mat> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    bool found = false;
    for (int m = 0; m < kNumMats; ++m)
      if (item == mat_tensor_name(static_cast<Mat>(m))) {
        out.push_back(static_cast<Mat>(m));
        found = true;
      }
    check(found, "unknown LoRA target '", item,
          "' (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down, or all)");
  }
  check(!out.empty(), "no LoRA targets given");
  return out;
}

LoraHook::LoraHook(const LlamaTrainer<float>& model, const float* base, const LoraConfig& c)
    : c_(c) {
  check(c.rank > 0 && c.alpha > 0 && c.dropout >= 0 && c.dropout < 1,
        "lora: need rank > 0, alpha > 0 and 0 <= dropout < 1");
  check(c.base_type == DType::F32 || dtype_layout(c.base_type).storage, "lora: base type ",
        dtype_name(c.base_type), " is not a storage type");
  scale_ = static_cast<float>(c.alpha / static_cast<double>(c.rank));
  const ModelShape& s = model.shape();
  const ParamLayout& lay = model.layout();
  base_.resize(static_cast<size_t>(s.layers * kNumMats));
  size_t off = 0;
  for (int64_t l = 0; l < s.layers; ++l) {
    const ParamLayout::Layer& L = lay.layer(l);
    const size_t idx[kNumMats] = {L.wq, L.wk, L.wv, L.wo, L.gate, L.up, L.down};
    for (int m = 0; m < kNumMats; ++m) {
      const ParamInfo& p = lay.params()[idx[m]];
      Base& b = base_[static_cast<size_t>(l * kNumMats + m)];
      b.in = p.cols;
      b.out = p.rows;
      b.w_off = p.offset;
      b.type = c.base_type;
      check(p.cols % dtype_layout(b.type).block_size == 0, "lora: ", p.name, " rows of ", p.cols,
            " are not a multiple of the ", dtype_name(b.type), " block size");
      const size_t rb = row_bytes(b.type, p.cols);
      b.bytes.resize(rb * static_cast<size_t>(p.rows));
      const kernels::QuantKernels& k = kernels::quant_kernels(b.type);
      for (int64_t r = 0; r < p.rows; ++r)
        k.from_float(base + p.offset + static_cast<size_t>(r * p.cols),
                     b.bytes.data() + static_cast<size_t>(r) * rb, p.cols);
      for (Mat t : c.targets)
        if (static_cast<int>(t) == m) {
          b.target = static_cast<int>(targets_.size());
          targets_.push_back(
              {l, t, p.cols, p.rows, off, off + static_cast<size_t>(c.rank * p.cols)});
          off += static_cast<size_t>(c.rank * (p.cols + p.rows));
        }
    }
  }
  // A ~ N(0, 1 / in) (a small random projection), B = 0: the adapted model starts equal to the
  // base.
  params_.assign(off, 0.0f);
  grads_.assign(off, 0.0f);
  for (const Target& t : targets_) {
    const double sd = 1.0 / std::sqrt(static_cast<double>(t.in));
    for (size_t i = 0; i < static_cast<size_t>(c.rank * t.in); ++i) {
      const uint64_t key = c.seed * 0x9e37ull + t.a_off + i;
      const double u1 = unit(key * 2 + 1) + 1e-300, u2 = unit(key * 2 + 2);
      params_[t.a_off + i] =
          static_cast<float>(sd * std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * M_PI * u2));
    }
  }
}

std::vector<DecayRange> LoraHook::decay_ranges() const {
  return {{0, params_.size(), true}};
}

size_t LoraHook::base_bytes() const {
  size_t n = 0;
  for (const Base& b : base_) n += b.bytes.size();
  return n;
}

const float* LoraHook::base_f32(const Base& b, std::vector<float>& scratch) const {
  if (b.type == DType::F32) return reinterpret_cast<const float*>(b.bytes.data());
  scratch.resize(static_cast<size_t>(b.in * b.out));
  const size_t rb = row_bytes(b.type, b.in);
  const kernels::QuantKernels& k = kernels::quant_kernels(b.type);
  for (int64_t r = 0; r < b.out; ++r)
    k.to_float(b.bytes.data() + static_cast<size_t>(r) * rb,
               scratch.data() + static_cast<size_t>(r * b.in), b.in);
  return scratch.data();
}

uint64_t LoraHook::mask_key(int64_t layer, Mat m) const {
  return splitmix64(c_.seed ^ splitmix64(key_ ^ splitmix64(static_cast<uint64_t>(
                                                    layer * kNumMats + static_cast<int>(m)))));
}

const float* LoraHook::dropped(const float* x, int64_t N, int64_t in, int64_t layer, Mat m,
                               std::vector<float>& xd) const {
  if (c_.dropout <= 0) return x;
  xd.resize(static_cast<size_t>(N * in));
  const uint64_t base = mask_key(layer, m);
  const float keep = static_cast<float>(1.0 / (1.0 - c_.dropout));
  for (int64_t i = 0; i < N * in; ++i)
    xd[static_cast<size_t>(i)] =
        unit(base + static_cast<uint64_t>(i)) < c_.dropout ? 0.0f : x[i] * keep;
  return xd.data();
}

void LoraHook::forward(int64_t layer, Mat m, const float* x, float* y, int64_t N) {
  const Base& b = base_[static_cast<size_t>(layer * kNumMats + static_cast<int>(m))];
  matmul_fwd(x, base_f32(b, w_scratch_), y, N, b.in, b.out);
  if (b.target < 0) return;
  const Target& t = targets_[static_cast<size_t>(b.target)];
  const float* xd = dropped(x, N, b.in, layer, m, xd_);
  xa_.resize(static_cast<size_t>(N * c_.rank));
  matmul_fwd(xd, params_.data() + t.a_off, xa_.data(), N, b.in, c_.rank);  // (N, r)
  for (float& v : xa_) v *= scale_;
  matmul_fwd(xa_.data(), params_.data() + t.b_off, y, N, c_.rank, b.out, true);
}

void LoraHook::backward(int64_t layer, Mat m, const float* x, const float* dy, float* dx, int64_t N,
                        bool accumulate_dx) {
  const Base& b = base_[static_cast<size_t>(layer * kNumMats + static_cast<int>(m))];
  matmul_bwd(x, base_f32(b, w_scratch_), dy, dx, static_cast<float*>(nullptr), N, b.in, b.out,
             accumulate_dx);
  if (b.target < 0) return;
  const Target& t = targets_[static_cast<size_t>(b.target)];
  const float* xd = dropped(x, N, b.in, layer, m, xd_);
  // Recompute xa = s * drop(x) A^T (N, r), then dB += dy^T xa, d(xa) = dy B.
  xa_.resize(static_cast<size_t>(N * c_.rank));
  matmul_fwd(xd, params_.data() + t.a_off, xa_.data(), N, b.in, c_.rank);
  for (float& v : xa_) v *= scale_;
  dxa_.resize(static_cast<size_t>(N * c_.rank));
  matmul_bwd(xa_.data(), params_.data() + t.b_off, dy, dxa_.data(), grads_.data() + t.b_off, N,
             c_.rank, b.out);
  for (float& v : dxa_) v *= scale_;
  // d(drop(x)) = d(xa) A, dA += d(xa)^T drop(x). The dropout mask scales the input gradient.
  if (c_.dropout <= 0) {
    matmul_bwd(xd, params_.data() + t.a_off, dxa_.data(), dx, grads_.data() + t.a_off, N, b.in,
               c_.rank, true);
    return;
  }
  std::vector<float> dxd(static_cast<size_t>(N * b.in));
  matmul_bwd(xd, params_.data() + t.a_off, dxa_.data(), dxd.data(), grads_.data() + t.a_off, N,
             b.in, c_.rank, false);
  const float keep = static_cast<float>(1.0 / (1.0 - c_.dropout));
  const uint64_t key = mask_key(layer, m);
  for (int64_t i = 0; i < N * b.in; ++i)
    if (unit(key + static_cast<uint64_t>(i)) >= c_.dropout)
      dx[i] += dxd[static_cast<size_t>(i)] * keep;
}

void LoraHook::merge_into(float* full) const {
  std::vector<float> scratch;
  for (const Base& b : base_) {
    const float* w = base_f32(b, scratch);
    float* dst = full + b.w_off;
    std::memcpy(dst, w, sizeof(float) * static_cast<size_t>(b.in * b.out));
    if (b.target < 0) continue;
    const Target& t = targets_[static_cast<size_t>(b.target)];
    const float* A = params_.data() + t.a_off;  // (r, in)
    const float* B = params_.data() + t.b_off;  // (out, r)
    for (int64_t o = 0; o < b.out; ++o)
      for (int64_t k = 0; k < c_.rank; ++k) {
        const float bk = scale_ * B[o * c_.rank + k];
        const float* a = A + k * b.in;
        float* row = dst + o * b.in;
        for (int64_t i = 0; i < b.in; ++i) row[i] += bk * a[i];
      }
  }
}

}  // namespace brisk::train
