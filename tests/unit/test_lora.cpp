// LoRA adapters (model/lora.h): the GGUF file round trip and its validation, attaching adapters to
// a model (unmerged) against merging them into the weights (`brisk lora merge`), scale 0 against
// the plain model bit for bit, quantised bases, forward_batch against forward, stacking.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/synth_model.h"
#include "common/testdata.h"
#include "core/error.h"
#include "io/gguf/gguf.h"
#include "kernels/cpu/quant.h"
#include "model/lora.h"
#include "model/model.h"
#include "quant/requantize.h"

using namespace brisk;
using test::all_logits;
using test::max_rel_diff;
using test::prompt;
using test::synth_file;

namespace {

constexpr const char* kAdaptable[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                      "ffn_gate", "ffn_up", "ffn_down"};

// A random adapter of the given rank on every adaptable matrix of `base` (and on output.weight
// when with_output), values ~ N(0, sd) so that its effect on the logits is clearly visible.
model::LoraAdapter random_adapter(const io::ModelFile& base, int64_t rank, uint32_t seed,
                                  bool with_output = true, float alpha = 8.0f) {
  model::LoraAdapter a;
  a.arch = base.find("general.architecture")->str;
  a.alpha = alpha;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto add = [&](const std::string& name, const gguf::TensorInfo& w) {
    model::LoraTarget t;
    t.name = name;
    t.n_in = w.shape[0];
    t.n_out = w.shape[1];
    t.rank = rank;
    // (A x) ~ sqrt(n_in) * sd_a for normalised x; keep B (A x) near the base product's size.
    const float sd_a = 1.0f / std::sqrt(static_cast<float>(t.n_in));
    const float sd_b =
        0.5f / std::sqrt(static_cast<float>(rank)) * 0.02f * std::sqrt(static_cast<float>(t.n_in));
    for (int64_t i = 0; i < rank * t.n_in; ++i) t.a.push_back(sd_a * nd(rng));
    for (int64_t i = 0; i < t.n_out * rank; ++i) t.b.push_back(sd_b * nd(rng));
    a.targets.push_back(std::move(t));
  };
  for (const gguf::TensorInfo& t : base.tensors)
    for (const char* m : kAdaptable)
      if (t.name.find(std::string(".") + m + ".weight") != std::string::npos) add(t.name, t);
  if (with_output) {
    const gguf::TensorInfo* out = base.find_tensor("output.weight");
    add("output.weight", out ? *out : *base.find_tensor("token_embd.weight"));
  }
  return a;
}

// Expects fn to throw a brisk::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; wanted one mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line: " << msg;
  }
}

// A GGUF adapter file written by hand, for the malformed cases.
struct RawAdapter {
  gguf::GgufWriter w;
  std::vector<std::vector<uint8_t>> bufs;
  RawAdapter(const char* type = "adapter", const char* atype = "lora") {
    w.set("general.architecture", gguf::Value::string("llama"));
    if (type) w.set("general.type", gguf::Value::string(type));
    if (atype) w.set("adapter.type", gguf::Value::string(atype));
    w.set("adapter.lora.alpha", gguf::Value::f32(4.0f));
  }
  void tensor(const std::string& name, std::vector<int64_t> shape, DType type = DType::F32,
              float value = 0.01f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> f(static_cast<size_t>(n), value);
    std::vector<uint8_t> b(row_bytes(type, shape[0]) * static_cast<size_t>(n / shape[0]));
    kernels::quant_kernels(type).from_float(f.data(), b.data(), n);
    bufs.push_back(std::move(b));
    w.add_tensor(name, type, shape, bufs.back().data(), bufs.back().size());
  }
};

}  // namespace

TEST(LoraFile, WriteLoadRoundTrip) {
  test::TempDir dir;
  const io::ModelFile base = synth_file(DType::F32);
  const model::LoraAdapter a = random_adapter(base, 3, 1);
  const std::string path = dir.file("a.gguf");
  model::write_lora_adapter(path, a.arch, a.alpha, a.targets);
  const model::LoraAdapter b = model::load_lora_adapter(path);
  EXPECT_EQ(b.path, path);
  EXPECT_EQ(b.arch, "llama");
  EXPECT_EQ(b.alpha, a.alpha);
  ASSERT_EQ(b.targets.size(), a.targets.size());
  for (size_t i = 0; i < a.targets.size(); ++i) {
    SCOPED_TRACE(a.targets[i].name);
    EXPECT_EQ(b.targets[i].name, a.targets[i].name);
    EXPECT_EQ(b.targets[i].n_in, a.targets[i].n_in);
    EXPECT_EQ(b.targets[i].n_out, a.targets[i].n_out);
    EXPECT_EQ(b.targets[i].rank, 3);
    EXPECT_TRUE(b.targets[i].a == a.targets[i].a);
    EXPECT_TRUE(b.targets[i].b == a.targets[i].b);
  }
  // The file follows the convention: ggml shapes [n_in, r] and [r, n_out], f32.
  const gguf::GgufFile f = gguf::GgufFile::open(path);
  EXPECT_EQ(f.get_string("general.type"), "adapter");
  EXPECT_EQ(f.get_string("adapter.type"), "lora");
  const gguf::TensorInfo* ta = f.find_tensor("blk.1.ffn_down.weight.lora_a");
  const gguf::TensorInfo* tb = f.find_tensor("blk.1.ffn_down.weight.lora_b");
  ASSERT_TRUE(ta && tb);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{128, 3}));
  EXPECT_EQ(tb->shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(ta->type, DType::F32);
  // factor: scale * alpha / r, or the scale alone when alpha is 0.
  EXPECT_FLOAT_EQ(b.factor(b.targets[0], 0.5f), 0.5f * a.alpha / 3.0f);
  model::LoraAdapter no_alpha = b;
  no_alpha.alpha = 0;
  EXPECT_FLOAT_EQ(no_alpha.factor(b.targets[0], 0.5f), 0.5f);
}

TEST(LoraFile, ReadsF16Tensors) {
  test::TempDir dir;
  RawAdapter r;
  r.tensor("blk.0.attn_q.weight.lora_a", {64, 2}, DType::F16, 0.1f);
  r.tensor("blk.0.attn_q.weight.lora_b", {2, 64}, DType::F16, -0.25f);
  r.w.write(dir.file("h.gguf"));
  const model::LoraAdapter a = model::load_lora_adapter(dir.file("h.gguf"));
  ASSERT_EQ(a.targets.size(), 1u);
  EXPECT_EQ(a.alpha, 4.0f);
  EXPECT_EQ(a.targets[0].a.size(), 128u);
  EXPECT_NEAR(a.targets[0].a[5], 0.1f, 1e-4);  // 0.1 rounded to f16
  EXPECT_EQ(a.targets[0].b[7], -0.25f);
}

TEST(LoraFile, MalformedAdaptersAreRefused) {
  test::TempDir dir;
  int n = 0;
  auto refused = [&](RawAdapter& r, std::initializer_list<std::string> parts) {
    const std::string path = dir.file("bad" + std::to_string(n++) + ".gguf");
    r.w.write(path);
    SCOPED_TRACE(path);
    expect_error([&] { model::load_lora_adapter(path); }, parts);
    expect_error([&] { model::load_lora_adapter(path); }, {path});
  };
  {
    RawAdapter r(nullptr);  // no general.type: e.g. a model file
    r.tensor("blk.0.attn_q.weight.lora_a", {64, 2});
    refused(r, {"not a LoRA adapter"});
  }
  {
    RawAdapter r("model");
    refused(r, {"not a LoRA adapter", "model"});
  }
  {
    RawAdapter r("adapter", "control_vector");
    refused(r, {"adapter.type"});
  }
  {
    RawAdapter r;
    r.tensor("blk.0.attn_q.weight.lora_a", {64, 2});
    refused(r, {"blk.0.attn_q.weight.lora_a", "no matching", "lora_b"});
  }
  {
    RawAdapter r;
    r.tensor("blk.0.attn_q.weight.lora_b", {2, 64});
    refused(r, {"no matching", "lora_a"});
  }
  {
    RawAdapter r;
    r.tensor("blk.0.attn_q.weight.lora_a", {64, 2});
    r.tensor("blk.0.attn_q.weight.lora_b", {4, 64});
    refused(r, {"rank mismatch", "blk.0.attn_q.weight"});
  }
  {
    RawAdapter r;
    r.tensor("blk.0.attn_q.weight.lora_a", {64, 2, 2});
    r.tensor("blk.0.attn_q.weight.lora_b", {2, 64});
    refused(r, {"blk.0.attn_q.weight.lora_a", "shape"});
  }
  {
    RawAdapter r;
    r.tensor("blk.0.attn_q.weight", {64, 64});
    refused(r, {"unexpected tensor", "blk.0.attn_q.weight"});
  }
  {
    RawAdapter r;
    r.tensor("blk.0.attn_q.weight.lora_a", {64, 2}, DType::Q8_0);
    r.tensor("blk.0.attn_q.weight.lora_b", {2, 64});
    refused(r, {"q8_0", "f32"});
  }
  {
    RawAdapter r;
    r.tensor("blk.0.attn_q.weight.lora_a", {64, 2}, DType::F32, NAN);
    r.tensor("blk.0.attn_q.weight.lora_b", {2, 64});
    refused(r, {"non-finite"});
  }
  {
    RawAdapter r;
    refused(r, {"no tensors"});
  }
  // A model file is not an adapter.
  const std::string model_path = dir.file("model.gguf");
  io::write_gguf(synth_file(DType::F32), model_path);
  expect_error([&] { model::load_lora_adapter(model_path); }, {model_path, "not a LoRA adapter"});
}

TEST(LoraAttach, AdaptersThatDoNotFitTheModelAreRefused) {
  auto m = model::Model::load(synth_file(DType::F32));
  const model::LoraAdapter good = random_adapter(m->file(), 2, 3);
  auto with = [&](auto edit) {
    model::LoraAdapter a = good;
    a.path = "x.gguf";
    edit(a);
    return a;
  };
  expect_error([&] { m->add_lora(with([](auto& a) { a.targets[1].n_in = 32; })); },
               {"x.gguf", good.targets[1].name, "shape"});
  expect_error(
      [&] { m->add_lora(with([](auto& a) { a.targets[0].name = "blk.0.attn_norm.weight"; })); },
      {"x.gguf", "blk.0.attn_norm.weight", "not an adaptable matrix"});
  expect_error(
      [&] { m->add_lora(with([](auto& a) { a.targets[0].name = "blk.7.attn_q.weight"; })); },
      {"blk.7.attn_q.weight", "not an adaptable"});
  expect_error([&] { m->add_lora(with([](auto& a) { a.arch = "qwen2"; })); },
               {"x.gguf", "qwen2", "llama"});
  expect_error([&] { m->add_lora(good, NAN); }, {"finite"});
  EXPECT_EQ(m->n_lora(), 0);
  EXPECT_EQ(m->lora(0), nullptr);
}

// The adapter applied without merging gives the logits of the model with it merged into the f32
// weights, for two stacked adapters (one on output.weight of a tied model too), on both
// architectures (qwen2: with Q/K/V biases).
class LoraArch : public testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(Archs, LoraArch, testing::Values("llama", "qwen2"));

TEST_P(LoraArch, UnmergedEqualsMerged) {
  test::TempDir dir;
  ThreadPool pool(2);
  const std::string arch = GetParam();
  const io::ModelFile base = synth_file(DType::F32, arch);
  const model::LoraAdapter a1 = random_adapter(base, 4, 11);
  const model::LoraAdapter a2 = random_adapter(base, 3, 12, /*with_output=*/false, /*alpha=*/0);
  const std::vector<int32_t> toks = prompt(24, 256, 5);

  auto plain = model::Model::load(synth_file(DType::F32, arch));
  const std::vector<float> want_base = all_logits(*plain, toks, pool);
  auto m = model::Model::load(synth_file(DType::F32, arch));
  m->add_lora(a1, 1.0f);
  m->add_lora(a2, 0.5f);
  EXPECT_EQ(m->n_lora(), 2);
  ASSERT_NE(m->lora(1), nullptr);
  EXPECT_EQ(m->lora(1)->q.rank, 7);  // stacked
  const std::vector<float> got = all_logits(*m, toks, pool);
  // The adapters do change the model.
  EXPECT_GT(max_rel_diff(got, want_base), 0.05);

  const model::LoraMergeInput in[2] = {{&a1, 1.0f}, {&a2, 0.5f}};
  const std::string out = dir.file("merged.gguf");
  EXPECT_EQ(model::merge_lora(base, in, out, DType::F32, pool), 15u);  // 2 x 7 + output
  auto merged = model::Model::load(io::load_model_file(out));
  ASSERT_NE(merged->file().find_tensor("output.weight"), nullptr);  // untied by the merge
  const std::vector<float> want = all_logits(*merged, toks, pool);
  const double d = max_rel_diff(got, want);
  std::printf("%s: unmerged vs merged (f32): max relative logit difference %.3g\n", arch.c_str(),
              d);
  EXPECT_LT(d, 1e-4);
}

// Scale 0 runs the adapter products but adds exact zeros: the plain model's logits bit for bit,
// for a prompt and for decoding token by token.
TEST(LoraForward, ScaleZeroIsTheBaseBitForBit) {
  ThreadPool pool(2);
  for (DType type : {DType::F32, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(type));
    auto plain = model::Model::load(synth_file(type));
    auto m = model::Model::load(synth_file(type));
    m->add_lora(random_adapter(m->file(), 4, 2), 0.0f);
    const std::vector<int32_t> toks = prompt(9, 256, 6);
    EXPECT_TRUE(all_logits(*m, toks, pool) == all_logits(*plain, toks, pool));
    // Decoding step by step too.
    model::InferenceState s1(m->hparams(), 16), s2(m->hparams(), 16);
    std::vector<float> l1, l2;
    for (int32_t t : toks) {
      m->forward(std::span(&t, 1), s1, l1, false, pool);
      plain->forward(std::span(&t, 1), s2, l2, false, pool);
      EXPECT_TRUE(l1 == l2);
    }
  }
}

// On a quantised base the adapter runs next to the int8 products; against the same base
// dequantised to f32 (same weights, exact activations) with the same adapter, the logits differ
// only by activation rounding: about as much as the two bases differ without the adapter.
TEST(LoraForward, QuantisedBaseMatchesF32WithinQuantisationError) {
  ThreadPool pool(2);
  const std::vector<int32_t> toks = prompt(16, 256, 7);
  for (DType type : {DType::Q8_0, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(type));
    io::ModelFile qf = synth_file(type);
    io::ModelFile ff = synth_file(type);
    quant::requantize(ff, DType::F32, pool);  // the quantised weights, exactly, in f32
    auto q = model::Model::load(std::move(qf));
    auto f = model::Model::load(std::move(ff));
    auto plain_q = model::Model::load(synth_file(type));
    const double base_err = max_rel_diff(all_logits(*q, toks, pool), all_logits(*f, toks, pool));
    const model::LoraAdapter a = random_adapter(q->file(), 8, 21);
    q->add_lora(a, 1.0f);
    f->add_lora(a, 1.0f);
    const std::vector<float> lq = all_logits(*q, toks, pool), lf = all_logits(*f, toks, pool);
    EXPECT_GT(max_rel_diff(lq, all_logits(*plain_q, toks, pool)), 0.05);  // the adapter matters
    const double err = max_rel_diff(lq, lf);
    std::printf("%s base: without adapter %.3g, with adapter %.3g\n", dtype_name(type), base_err,
                err);
    EXPECT_LT(err, std::max(3 * base_err, 1e-3));
    EXPECT_LT(err, type == DType::Q8_0 ? 2e-2 : 5e-2);
  }
}

// forward_batch (paged KV, several sequences at once) with adapters equals forward with them.
TEST(LoraForward, BatchEqualsForward) {
  ThreadPool pool(2);
  for (DType type : {DType::F32, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(type));
    auto m = model::Model::load(synth_file(type));
    m->add_lora(random_adapter(m->file(), 4, 31), 0.8f);
    test::expect_batch_equals_forward(*m, pool);
  }
}

// `keep` requantises each merged matrix to its own type and copies the rest byte for byte.
TEST(LoraMerge, KeepRestoresEachMatrixInItsType) {
  test::TempDir dir;
  ThreadPool pool(2);
  const io::ModelFile base = synth_file(DType::Q8_0);
  model::LoraAdapter a = random_adapter(base, 4, 41, /*with_output=*/false);
  // Only some matrices: attn_q and ffn_down of each layer.
  std::erase_if(a.targets, [](const model::LoraTarget& t) {
    return t.name.find("attn_q") == std::string::npos &&
           t.name.find("ffn_down") == std::string::npos;
  });
  const model::LoraMergeInput in{&a, 1.0f};
  const std::string out = dir.file("keep.gguf");
  size_t calls = 0;
  EXPECT_EQ(model::merge_lora(base, std::span(&in, 1), out, std::nullopt, pool,
                              [&](size_t i, size_t n, const std::string&) {
                                EXPECT_EQ(i, calls++);
                                EXPECT_EQ(n, 4u);
                              }),
            4u);
  EXPECT_EQ(calls, 4u);
  const io::ModelFile mf = io::load_model_file(out);
  ASSERT_EQ(mf.tensors.size(), base.tensors.size());
  EXPECT_EQ(mf.metadata.size(), base.metadata.size());
  for (size_t i = 0; i < base.tensors.size(); ++i) {
    const gguf::TensorInfo &t = mf.tensors[i], &b = base.tensors[i];
    SCOPED_TRACE(b.name);
    EXPECT_EQ(t.name, b.name);
    EXPECT_EQ(t.type, b.type);
    EXPECT_EQ(t.shape, b.shape);
    const bool same = std::equal(t.data, t.data + t.nbytes, b.data);
    EXPECT_EQ(same, a.find(b.name) == nullptr);  // merged ones changed, the rest did not
  }
  // The merged q8_0 model is close to the unmerged adapter on the q8_0 base.
  auto merged = model::Model::load(io::load_model_file(out));
  auto m = model::Model::load(synth_file(DType::Q8_0));
  m->add_lora(a, 1.0f);
  const std::vector<int32_t> toks = prompt(12, 256, 8);
  const double d = max_rel_diff(all_logits(*merged, toks, pool), all_logits(*m, toks, pool));
  std::printf("merged q8_0 (keep) vs unmerged: %.3g\n", d);
  EXPECT_LT(d, 2e-2);
  // Bad output types are refused.
  expect_error([&] { model::merge_lora(base, std::span(&in, 1), out, DType::Q4_0, pool); },
               {"f32, f16, bf16 or keep"});
}

// For tests/e2e/lora.sh: writes a random rank-4 adapter for the model at $BRISK_LORA_BASE to
// $BRISK_LORA_OUT. Without them, it writes one for a synthetic model and reads it back.
TEST(LoraFile, WritesAnAdapterForTheCliTest) {
  test::TempDir dir;
  const char* base_env = std::getenv("BRISK_LORA_BASE");
  const char* out_env = std::getenv("BRISK_LORA_OUT");
  const std::string base_path = base_env ? base_env : dir.file("base.gguf");
  const std::string out = out_env ? out_env : dir.file("adapter.gguf");
  if (!base_env) io::write_gguf(synth_file(DType::F32), base_path);
  const io::ModelFile base = io::load_model_file(base_path);
  const model::LoraAdapter a = random_adapter(base, 4, 99);
  model::write_lora_adapter(out, a.arch, a.alpha, a.targets);
  auto m = model::Model::load(io::load_model_file(base_path));
  m->add_lora(model::load_lora_adapter(out), 1.0f);
  EXPECT_EQ(m->n_lora(), 1);
}
