// Model-level validation: unknown architecture, missing tensors, inconsistent shapes and absurd
// hyperparameters are brisk::Errors naming the key or tensor, never a crash.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "model/model.h"
#include "model/synth.h"

using namespace brisk;

namespace {

io::ModelFile tiny(const std::string& arch = "llama") {
  model::SynthConfig c;
  c.arch = arch;
  c.dim = 64;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 128;
  c.type = DType::F32;
  ThreadPool pool(1);
  return model::synth_model(c, pool);
}

void expect_error(io::ModelFile m, const std::string& needle) {
  try {
    model::Model::load(std::move(m));
    ADD_FAILURE() << "no error, wanted one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("synth: ", 0), 0u)
        << "error must name the file: " << e.what();
  }
}

TEST(ModelLoad, SynthModelsLoadAndRun) {
  for (const char* arch : {"llama", "qwen2"}) {
    auto m = model::Model::load(tiny(arch));
    ThreadPool pool(2);
    model::InferenceState st(m->hparams(), 8);
    std::vector<float> logits;
    std::vector<int32_t> ids = {1, 100, 200};
    m->forward(ids, st, logits, true, pool);
    ASSERT_EQ(logits.size(), 3u * static_cast<size_t>(m->n_vocab()));
    for (float x : logits) ASSERT_TRUE(std::isfinite(x));
    EXPECT_EQ(st.n_past, 3);
  }
}

TEST(ModelLoad, UnknownArchitecture) {
  auto m = tiny();
  m.set("general.architecture", gguf::Value::string("gpt-99"));
  expect_error(std::move(m), "unsupported architecture 'gpt-99'");
}

TEST(ModelLoad, MissingArchitectureKey) {
  auto m = tiny();
  std::erase_if(m.metadata, [](auto& p) { return p.first == "general.architecture"; });
  expect_error(std::move(m), "general.architecture");
}

TEST(ModelLoad, MissingTensor) {
  auto m = tiny();
  std::erase_if(m.tensors, [](auto& t) { return t.name == "blk.1.ffn_up.weight"; });
  expect_error(std::move(m), "missing tensor 'blk.1.ffn_up.weight'");
}

TEST(ModelLoad, Qwen2RequiresBiases) {
  auto m = tiny("qwen2");
  std::erase_if(m.tensors, [](auto& t) { return t.name == "blk.0.attn_k.bias"; });
  expect_error(std::move(m), "blk.0.attn_k.bias");
}

TEST(ModelLoad, InconsistentShapes) {
  auto m = tiny();
  m.set("llama.feed_forward_length", gguf::Value::u32(256));
  expect_error(std::move(m), "blk.0.ffn_gate.weight' has shape");
}

TEST(ModelLoad, HeadsNotDividingKvHeads) {
  auto m = tiny();
  m.set("llama.attention.head_count_kv", gguf::Value::u32(3));
  expect_error(std::move(m), "head_count_kv");
}

TEST(ModelLoad, AbsurdHyperparameters) {
  for (auto [key, val] :
       std::vector<std::pair<std::string, uint32_t>>{{"llama.block_count", 0},
                                                     {"llama.attention.head_count", 0},
                                                     {"llama.embedding_length", 0}}) {
    auto m = tiny();
    m.set(key, gguf::Value::u32(val));
    expect_error(std::move(m), key);
  }
  auto m = tiny();
  m.set("llama.rope.freq_base", gguf::Value::f32(-1.0f));
  expect_error(std::move(m), "freq_base");
  auto m2 = tiny();
  m2.set("llama.rope.scaling.type", gguf::Value::string("spiral"));
  expect_error(std::move(m2), "spiral");
  auto m3 = tiny();
  m3.set("llama.embedding_length", gguf::Value::string("big"));
  expect_error(std::move(m3), "llama.embedding_length");
}

TEST(ModelLoad, TokenOutOfRangeAndContextFull) {
  auto m = model::Model::load(tiny());
  ThreadPool pool(1);
  model::InferenceState st(m->hparams(), 2);
  std::vector<float> logits;
  std::vector<int32_t> bad = {static_cast<int32_t>(m->n_vocab())};
  EXPECT_THROW(m->forward(bad, st, logits, false, pool), Error);
  std::vector<int32_t> three = {1, 2, 3};
  EXPECT_THROW(m->forward(three, st, logits, false, pool), Error);
}

TEST(ModelLoad, SynthIsDeterministicAcrossThreadCounts) {
  model::SynthConfig c;
  c.dim = 64;
  c.layers = 1;
  c.heads = 4;
  c.kv_heads = 4;
  c.ffn = 128;
  c.type = DType::Q8_0;
  ThreadPool p1(1), p2(2);
  auto a = model::synth_model(c, p1);
  auto b = model::synth_model(c, p2);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i)
    ASSERT_EQ(0, std::memcmp(a.tensors[i].data, b.tensors[i].data, a.tensors[i].nbytes))
        << a.tensors[i].name;
}

}  // namespace
