// Compression plumbing (issue 6): the calibration pass, the importance matrix, AWQ's scale search
// and folding, and model-level quantisation (files that load and give the in-memory logits).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/awq.h"
#include "quant/calib.h"
#include "quant/imatrix.h"
#include "quant/methods.h"
#include "quant/quantize_model.h"
#include "train/export.h"
#include "train/llama_train.h"

namespace brisk::quant {
namespace {

train::ModelShape shape(int64_t kv_heads) {
  train::ModelShape s;
  s.dim = 256;
  s.layers = 2;
  s.heads = 4;
  s.kv_heads = kv_heads;
  s.ffn = 512;
  s.vocab = 354;  // the built-in byte vocabulary
  s.context = 64;
  return s;
}

std::vector<int32_t> tokens(int64_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(g() % 354);
  return t;
}

// Records every site and keeps a copy of the inputs.
struct Recorder final : CalibProcessor {
  std::vector<CalibSite> sites;
  std::vector<std::vector<float>> xs;
  std::vector<int64_t> ns;
  void process(const CalibSite& s, const float* X, int64_t n, float*, CalibModel&) override {
    sites.push_back(s);
    xs.emplace_back(X, X + n * s.cols);
    ns.push_back(n);
  }
};

TEST(Calibration, VisitsEveryMatrixInOrderAndKeepsTheLoss) {
  const train::ModelShape s = shape(2);
  const train::ParamLayout lay = train::ParamLayout::llama(s);
  std::vector<float> p = train::init_params(lay, s, 7);
  const train::Batch b = calib_batch(tokens(150, 1), 64, 1000);
  ASSERT_EQ(b.n_seqs(), 3);  // 64 + 64 + 22
  EXPECT_EQ(b.n_tokens(), 150);
  Recorder r;
  const double loss = run_calibration(s, p, b, r, 2);
  ASSERT_EQ(r.sites.size(), static_cast<size_t>(s.layers * train::kNumMats + 1));
  EXPECT_TRUE(r.sites.back().output);
  EXPECT_EQ(r.sites.back().tensor, "token_embd.weight");  // tied embeddings
  EXPECT_EQ(r.sites.back().rows, s.vocab);
  EXPECT_EQ(r.sites[0].tensor, "blk.0.attn_q.weight");
  EXPECT_EQ(r.sites[6].tensor, "blk.0.ffn_down.weight");
  EXPECT_EQ(r.sites[6].cols, s.ffn);
  EXPECT_EQ(r.sites[13].tensor, "blk.1.ffn_down.weight");
  for (int64_t n : r.ns) EXPECT_EQ(n, 150);
  EXPECT_EQ(r.xs[0], r.xs[1]);  // q, k and v read the same normalised input
  EXPECT_EQ(r.xs[0], r.xs[2]);
  // ... and the pass says so: k, v (after q) and up (after gate) may reuse q's / gate's statistics.
  for (size_t i = 0; i < r.sites.size(); ++i) {
    const bool shared =
        !r.sites[i].output && (r.sites[i].mat == train::Mat::K || r.sites[i].mat == train::Mat::V ||
                               r.sites[i].mat == train::Mat::Up);
    EXPECT_EQ(r.sites[i].same_input, shared) << r.sites[i].tensor;
    if (shared) {
      EXPECT_EQ(r.xs[i], r.xs[i - 1]) << r.sites[i].tensor;
    }
  }
  // The hooked pass computes what the trainer computes without a hook.
  train::LlamaTrainer<float> tr(s, 2);
  train::StepOptions o;
  o.grad = false;
  const train::StepResult plain = tr.step(b, p.data(), nullptr, o);
  EXPECT_NEAR(loss, plain.loss_sum / static_cast<double>(plain.n_counted), 1e-4);
  EXPECT_THROW(calib_batch(tokens(1, 1), 64, 100), Error);
}

TEST(Imatrix, MeanSquaresRoundTripAndBadFiles) {
  const train::ModelShape s = shape(2);
  const train::ParamLayout lay = train::ParamLayout::llama(s);
  std::vector<float> p = train::init_params(lay, s, 7);
  const train::Batch b = calib_batch(tokens(128, 2), 64, 1000);
  Recorder r;
  run_calibration(s, p, b, r, 1);
  ImatrixCollector col;
  run_calibration(s, p, b, col, 1);
  Imatrix im = col.take("random ids");
  EXPECT_EQ(im.values.size(), static_cast<size_t>(s.layers * train::kNumMats + 1));
  EXPECT_EQ(im.tokens, 128u);
  for (size_t i = 0; i < r.sites.size(); ++i) {
    const std::vector<float>* v = im.find(r.sites[i].tensor);
    ASSERT_NE(v, nullptr);
    for (int64_t j = 0; j < r.sites[i].cols; j += 37) {
      double m = 0;
      for (int64_t t = 0; t < 128; ++t) {
        const double x = r.xs[i][static_cast<size_t>(t * r.sites[i].cols + j)];
        m += x * x;
      }
      EXPECT_NEAR((*v)[static_cast<size_t>(j)], m / 128, 1e-6 + 1e-4 * m / 128);
    }
  }
  const auto path = std::filesystem::temp_directory_path() / "brisk_test_imatrix.gguf";
  write_imatrix(im, path.string());
  const Imatrix back = read_imatrix(path.string());
  EXPECT_EQ(back.values, im.values);
  EXPECT_EQ(back.tokens, 128u);
  EXPECT_EQ(back.dataset, "random ids");
  // A model file is not an importance matrix.
  io::write_gguf(
      train::export_model(s, lay, p.data(), model::builtin_byte_vocab(), DType::F32, "m"),
      path.string());
  EXPECT_THROW(read_imatrix(path.string()), Error);
  std::filesystem::remove(path);
}

TEST(Awq, SearchNeverWorseThanRtnAndHelpsOutlierChannels) {
  const int64_t cols = 256, rows = 64, n = 512;
  std::mt19937 g(3);
  std::normal_distribution<float> nd;
  std::vector<float> X(static_cast<size_t>(n * cols)), W(static_cast<size_t>(rows * cols));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j)  // a few channels 30x larger, as in LLM activations
      X[static_cast<size_t>(t * cols + j)] = nd(g) * (j % 37 == 0 ? 30.0f : 1.0f);
  for (auto& w : W) w = nd(g) * 0.02f;
  std::vector<float> G(static_cast<size_t>(cols * cols), 0.0f), act(static_cast<size_t>(cols), 0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < cols; ++i) {
      act[static_cast<size_t>(i)] += std::fabs(X[static_cast<size_t>(t * cols + i)]) / n;
      for (int64_t j = 0; j < cols; ++j)
        G[static_cast<size_t>(i * cols + j)] +=
            X[static_cast<size_t>(t * cols + i)] * X[static_cast<size_t>(t * cols + j)];
    }
  ThreadPool pool(2);
  for (DType t : {DType::Q4_0, DType::Q4_K}) {
    const AwqResult r = awq_search(G.data(), act.data(), cols, {{W.data(), rows, t}}, 20, pool);
    EXPECT_LE(r.err_best, r.err_rtn) << dtype_name(t);
    EXPECT_LT(r.err_best, 0.9 * r.err_rtn) << dtype_name(t);
    EXPECT_GT(r.alpha, 0.0);
    // err_rtn is the plain round-to-nearest error.
    const std::vector<float> ones(static_cast<size_t>(cols), 1.0f);
    EXPECT_DOUBLE_EQ(r.err_rtn, awq_error(G.data(), cols, {{W.data(), rows, t}}, ones, pool));
    std::printf("awq %s: alpha %.2f, error / rtn = %.3f\n", dtype_name(t), r.alpha,
                r.err_best / r.err_rtn);
  }
}

// Clipping (AWQ's second step) on heavy-tailed weights: some blocks are clipped, the ratios stay in
// [0.5, 1], and the output error falls.
TEST(Awq, ClippingLowersTheErrorOfHeavyTailedWeights) {
  const int64_t cols = 256, rows = 64, n = 512;
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  std::exponential_distribution<float> ed;
  std::vector<float> X(static_cast<size_t>(n * cols)), W(static_cast<size_t>(rows * cols));
  for (auto& x : X) x = nd(g);
  for (auto& w : W) w = (g() & 1 ? 1.0f : -1.0f) * ed(g) * ed(g) * 0.01f;  // heavy tails
  std::vector<float> G(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j)
        G[static_cast<size_t>(i * cols + j)] +=
            X[static_cast<size_t>(t * cols + i)] * X[static_cast<size_t>(t * cols + j)];
  ThreadPool pool(2);
  const std::vector<float> ones(static_cast<size_t>(cols), 1.0f);
  for (DType t : {DType::Q4_0, DType::Q4_K}) {
    const std::vector<float> ratios = awq_clip_search(W.data(), rows, cols, t, G.data(), 10, pool);
    const int64_t B = dtype_layout(t).block_size;
    ASSERT_EQ(ratios.size(), static_cast<size_t>(rows * cols / B));
    int clipped = 0;
    for (float r : ratios) {
      EXPECT_GE(r, 0.5f);
      EXPECT_LE(r, 1.0f);
      clipped += r < 1.0f;
    }
    EXPECT_GT(clipped, 0) << dtype_name(t);
    const double plain = awq_error(G.data(), cols, {{W.data(), rows, t}}, ones, pool);
    const double clip = awq_error(G.data(), cols, {{W.data(), rows, t, &ratios}}, ones, pool);
    EXPECT_LT(clip, plain) << dtype_name(t);
    std::printf("clip %s: %d of %zu blocks clipped, error / rtn = %.3f\n", dtype_name(t), clipped,
                ratios.size(), clip / plain);
    // Applying the ratios only clamps: |w| never grows, and some weights shrink.
    std::vector<float> Wc = W;
    awq_apply_clip(Wc.data(), rows, cols, B, ratios);
    int shrunk = 0;
    for (size_t i = 0; i < W.size(); ++i) {
      EXPECT_LE(std::fabs(Wc[i]), std::fabs(W[i]));
      shrunk += std::fabs(Wc[i]) < std::fabs(W[i]);
    }
    EXPECT_GT(shrunk, 0);
  }
}

// Folding the scales into the norms and previous layers leaves the float model's function intact.
TEST(Awq, FoldingPreservesTheFloatModel) {
  // Without grouped-query sharing and untied (o and the output are scaled too), and with GQA and
  // tied embeddings (neither is).
  for (int64_t kv : {4, 2}) {
    train::ModelShape s = shape(kv);
    s.tied = kv == 2;
    const train::ParamLayout lay = train::ParamLayout::llama(s);
    std::vector<float> p = train::init_params(lay, s, 11);
    const train::Batch b = calib_batch(tokens(128, 3), 64, 1000);
    train::LlamaTrainer<float> tr(s, 2);
    std::vector<float> before, after;
    tr.logits(b, p.data(), before);
    ThreadPool pool(2);
    AwqProcessor awq([](const std::string&) { return DType::Q4_0; }, 10, 4096, pool,
                     /*clip=*/false);
    run_calibration(s, p, b, awq, 2);
    EXPECT_EQ(awq.log().size(), static_cast<size_t>(s.layers * 4 + 1));
    for (const auto& g : awq.log()) {
      EXPECT_LE(g.err_best, g.err_rtn) << g.group;
      const bool unscalable =
          g.group.find(".o") != std::string::npos || g.group == "token_embd.weight";
      if (kv == 2 && unscalable) {
        EXPECT_EQ(g.alpha, 0.0) << g.group;
      }
    }
    const std::vector<float> orig = p;
    CalibModel cm{s, lay, p};
    awq.apply(cm);
    bool changed = false;
    for (const auto& g : awq.log()) changed |= g.alpha > 0;
    if (changed) {
      EXPECT_NE(p, orig);
    }
    tr.logits(b, p.data(), after);
    ASSERT_EQ(before.size(), after.size());
    double md = 0;
    for (size_t i = 0; i < before.size(); ++i)
      md = std::max(md, double(std::fabs(before[i] - after[i])));
    EXPECT_LT(md, 2e-4) << "kv heads " << kv;
  }
}

// The GPTQ pass leaves in the model exactly the values its blocks hold (later layers were
// calibrated on them), and the pruning pass leaves exactly the requested zeros.
TEST(CalibrationMethods, GptqBlocksMatchTheWeightsAndPruningCountsZeros) {
  const train::ModelShape s = shape(2);
  const train::ParamLayout lay = train::ParamLayout::llama(s);
  const train::Batch b = calib_batch(tokens(256, 4), 64, 1000);
  ThreadPool pool(2);
  std::vector<float> p = train::init_params(lay, s, 9);
  GptqProcessor gp(
      [](const std::string& t) {
        return t.find("ffn_down") != std::string::npos ? DType::Q6_K : DType::Q4_0;
      },
      GptqOptions{}, pool);
  run_calibration(s, p, b, gp, 2);
  // Every layer matrix and the (tied) output projection.
  ASSERT_EQ(gp.results().size(), static_cast<size_t>(s.layers * train::kNumMats + 1));
  EXPECT_EQ(gp.results().count("token_embd.weight"), 1u);
  for (const auto& [name, r] : gp.results()) {
    const train::ParamInfo& info = lay.at(name);
    EXPECT_EQ(r.type, name.find("ffn_down") != std::string::npos ? DType::Q6_K : DType::Q4_0);
    std::vector<float> w(info.size());
    const size_t rb = row_bytes(r.type, info.cols);
    ASSERT_EQ(r.bytes.size(), rb * static_cast<size_t>(info.rows)) << name;
    for (int64_t i = 0; i < info.rows; ++i)
      kernels::quant_kernels(r.type).to_float(r.bytes.data() + static_cast<size_t>(i) * rb,
                                              w.data() + i * info.cols, info.cols);
    EXPECT_TRUE(std::equal(w.begin(), w.end(), p.begin() + static_cast<ptrdiff_t>(info.offset)))
        << name;
  }
  for (const char* method : {"wanda", "sparsegpt"}) {
    std::vector<float> q = train::init_params(lay, s, 9);
    PruneOptions o;
    o.method = *parse_prune_method(method);
    o.sparsity = 0.5;
    PruneProcessor pp(o, pool);
    run_calibration(s, q, b, pp, 2);
    int64_t total = 0;
    for (int64_t l = 0; l < s.layers; ++l)
      for (int k = 0; k < train::kNumMats; ++k) {
        const train::ParamInfo& info = lay.at(site_tensor_name(l, static_cast<train::Mat>(k)));
        total += static_cast<int64_t>(info.size());
        for (int64_t r = 0; r < info.rows; ++r) {
          int64_t z = 0;
          for (int64_t c = 0; c < info.cols; ++c)
            z += q[info.offset + static_cast<size_t>(r * info.cols + c)] == 0.0f;
          ASSERT_EQ(z, info.cols / 2) << method << " " << info.name << " row " << r;
        }
      }
    EXPECT_EQ(pp.zeros(), total / 2);
    EXPECT_EQ(pp.total(), total);
  }
}

std::vector<float> model_logits(io::ModelFile f, const std::vector<int32_t>& toks) {
  auto m = model::Model::load(std::move(f));
  model::InferenceState st(m->hparams(), static_cast<int64_t>(toks.size()));
  std::vector<float> z;
  ThreadPool pool(2);
  m->forward(toks, st, z, true, pool);
  return z;
}

TEST(QuantizeModel, WrittenFilesGiveTheInMemoryLogits) {
  const train::ModelShape s = shape(2);
  const train::ParamLayout lay = train::ParamLayout::llama(s);
  const std::vector<float> p = train::init_params(lay, s, 5);
  const auto path = std::filesystem::temp_directory_path() / "brisk_test_quantize.gguf";
  const std::vector<int32_t> toks = tokens(40, 9);
  ThreadPool pool(2);
  for (const char* name : {"q8_0", "q4_0", "q4_K_m"}) {
    io::ModelFile m =
        train::export_model(s, lay, p.data(), model::builtin_byte_vocab(), DType::F32, "m");
    QuantizeOptions o;
    o.recipe = *parse_recipe(name);
    const QuantizeReport rep = quantize_model(m, o, pool);
    EXPECT_EQ(rep.n_quantized, 1 + s.layers * train::kNumMats) << name;  // tied embeddings
    // Tied embeddings follow the output rule: Q6_K in the mixed recipe.
    EXPECT_EQ(m.find_tensor("token_embd.weight")->type,
              std::string(name) == "q4_K_m" ? DType::Q6_K : o.recipe.base);
    io::write_gguf(m, path.string());
    const std::vector<float> mem = model_logits(m, toks);
    const std::vector<float> file = model_logits(io::load_model_file(path.string()), toks);
    EXPECT_EQ(mem, file) << name;
  }
  // keep_output_f16 and a shape a k-quant does not divide (falls back, reported).
  io::ModelFile m =
      train::export_model(s, lay, p.data(), model::builtin_byte_vocab(), DType::F32, "m");
  QuantizeOptions o;
  o.recipe = *parse_recipe("q4_K");
  o.keep_output_f16 = true;
  quantize_model(m, o, pool);
  EXPECT_EQ(m.find_tensor("token_embd.weight")->type, DType::F16);
  EXPECT_EQ(m.find_tensor("blk.0.attn_q.weight")->type, DType::Q4_K);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace brisk::quant
