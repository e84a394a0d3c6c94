#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/testdata.h"
#include "core/error.h"
#include "io/model_file.h"
#include "io/safetensors/hf_config.h"
#include "io/safetensors/hf_dir.h"
#include "io/safetensors/safetensors.h"
#include "io/tokenizer/tokenizer.h"
#include "model/model.h"
#include "parity/parity_util.h"

using namespace brisk;
namespace st = brisk::safetensors;

namespace {

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Every tensor of `a` is in `b` with the same type, shape and bytes, and vice versa.
void expect_same_tensors(const io::ModelFile& a, const io::ModelFile& b) {
  EXPECT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& t : a.tensors) {
    const gguf::TensorInfo* u = b.find_tensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.type, u->type) << t.name;
    EXPECT_EQ(t.shape, u->shape) << t.name;
    ASSERT_EQ(t.nbytes, u->nbytes) << t.name;
    EXPECT_EQ(std::memcmp(t.data, u->data, t.nbytes), 0) << t.name;
  }
}

// The hyperparameters and tokenizer settings of `a` are in `b` with equal values.
void expect_same_metadata(const io::ModelFile& a, const io::ModelFile& b) {
  const std::string arch = a.find("general.architecture")->str;
  EXPECT_EQ(b.find("general.architecture")->str, arch);
  for (const auto& [k, v] : a.metadata) {
    const bool hparam = k.rfind(arch + ".", 0) == 0;
    const bool tok = k.rfind("tokenizer.", 0) == 0 && b.find("tokenizer.ggml.model");
    if (!hparam && !tok) continue;
    // tokenizer.json keeps a SentencePiece-BPE vocabulary as merges, not scores: the scores read
    // back are rebuilt from merge ranks (same merge order, different values), so they are not
    // compared here; hf_round_trip checks that encoding is unchanged.
    if (k == "tokenizer.ggml.scores" && a.find("tokenizer.ggml.model")->str == "llama") continue;
    const gguf::Value* u = b.find(k);
    ASSERT_NE(u, nullptr) << k;
    if (v.is_integer() || v.type == gguf::ValueType::BOOL) {
      EXPECT_EQ(v.as_int(k), u->as_int(k)) << k;
    } else if (v.is_float()) {
      EXPECT_EQ(static_cast<float>(v.f), static_cast<float>(u->f)) << k;
    } else if (v.type == gguf::ValueType::STRING) {
      EXPECT_EQ(v.str, u->str) << k;
    } else if (v.type == gguf::ValueType::ARRAY) {
      ASSERT_EQ(v.arr.size(), u->arr.size()) << k;
      size_t bad = 0;
      for (size_t i = 0; i < v.arr.size(); ++i)
        bad += v.arr[i].to_display() != u->arr[i].to_display();
      EXPECT_EQ(bad, 0u) << k << ": " << bad << " elements differ";
    }
  }
}

}  // namespace

TEST(Safetensors, WriterRoundTripIsBitIdentical) {
  test::TempDir dir;
  std::vector<float> a(6);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5f * float(i);
  std::vector<uint16_t> h = {1, 2, 3};  // odd count: the sort by element size keeps f32 aligned
  std::vector<int64_t> l = {-1, 1ll << 40};
  std::vector<uint8_t> u = {7, 8, 9, 10, 11};
  st::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.add_tensor("half", st::StType::F16, {3}, h.data(), 6);
  w.add_tensor("bytes", st::StType::U8, {5}, u.data(), 5);
  w.add_tensor("mat", st::StType::F32, {2, 3}, a.data(), 24);
  w.add_tensor("long", st::StType::I64, {2}, l.data(), 16);
  w.add_tensor("empty", st::StType::BF16, {0, 4}, nullptr, 0);
  w.write(dir.file("x.safetensors"));

  auto f = st::SafetensorsFile::open(dir.file("x.safetensors"));
  EXPECT_EQ(f.data_offset() % 8, 0u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.tensors().size(), 5u);
  const auto* m = f.find("mat");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->type, st::StType::F32);
  EXPECT_EQ(m->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(m->data, a.data(), 24), 0);
  EXPECT_EQ(std::memcmp(f.find("half")->data, h.data(), 6), 0);
  EXPECT_EQ(std::memcmp(f.find("long")->data, l.data(), 16), 0);
  EXPECT_EQ(std::memcmp(f.find("bytes")->data, u.data(), 5), 0);
  EXPECT_EQ(f.find("empty")->nbytes, 0u);
  for (const auto& t : f.tensors())
    EXPECT_EQ((f.data_offset() + t.begin) % st::st_type_size(t.type), 0u) << t.name;

  st::SafetensorsWriter w2;
  for (const auto& [k, v] : f.metadata()) w2.set_metadata(k, v);
  for (const auto& t : f.tensors()) w2.add_tensor(t.name, t.type, t.shape, t.data, t.nbytes);
  w2.write(dir.file("y.safetensors"));
  EXPECT_EQ(test::read_text_file(dir.file("x.safetensors")),
            test::read_text_file(dir.file("y.safetensors")));
}

TEST(Safetensors, ParsesHandWrittenHeader) {
  std::string hdr =
      R"({"__metadata__":{"k":"v"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]},)"
      R"("a":{"dtype":"I32","shape":[],"data_offsets":[0,4]}})";
  std::string file(8, '\0');
  uint64_t n = hdr.size();
  std::memcpy(file.data(), &n, 8);
  file += hdr + std::string(8, '\x01');
  auto f =
      st::SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "mem");
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.find("a")->shape.size(), 0u);
  EXPECT_EQ(f.find("a")->nbytes, 4u);
  EXPECT_EQ(f.find("b")->type, st::StType::BF16);
}

// GGUF row 2i+j of a head is HF row j*hd/2+i: for head_dim 4, GGUF rows are HF rows 0, 2, 1, 3.
TEST(Safetensors, QkPermutationFollowsTheRopePairing) {
  std::vector<uint8_t> hf_rows = {0, 1, 2, 3, 10, 11, 12, 13};  // 2 heads x 4 rows of 1 byte
  auto g = io::hf::permute_qk_rows(hf_rows.data(), 8, 1, 4, true);
  EXPECT_EQ(g, (std::vector<uint8_t>{0, 2, 1, 3, 10, 12, 11, 13}));
  EXPECT_EQ(io::hf::permute_qk_rows(g.data(), 8, 1, 4, false), hf_rows);
  std::vector<uint8_t> hd8 = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(io::hf::permute_qk_rows(hd8.data(), 8, 1, 8, true),
            (std::vector<uint8_t>{0, 4, 1, 5, 2, 6, 3, 7}));
}

void hf_round_trip(const std::string& model, bool permuted) {
  test::TempDir dir;
  io::ModelFile g = io::load_model_file(test::testdata("models/" + model));
  io::write_hf_dir(g, dir.file("hf"));
  for (const char* f : {"config.json", "model.safetensors"})
    EXPECT_TRUE(std::filesystem::exists(dir.file(std::string("hf/") + f))) << f;
  io::ModelFile h = io::load_model_file(dir.file("hf"));
  EXPECT_EQ(h.format, "safetensors");
  expect_same_tensors(g, h);
  ASSERT_NE(h.find("tokenizer.ggml.model"), nullptr);  // tokenizer.json was written and read back
  expect_same_metadata(g, h);
  auto ta = tok::Tokenizer::from_metadata(g.metadata, "gguf");
  auto tb = tok::Tokenizer::from_metadata(h.metadata, "hf");
  for (const char* text : {"In the beginning the engine read every weight from disk, and then it "
                           "learned to batch requests.",
                           "def quick_sort(items):\n    return sorted(items)  # {\"ok\": true}",
                           " \xc3\xa9t\xc3\xa9  \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80"})
    EXPECT_EQ(ta->encode(text, true, true), tb->encode(text, true, true)) << text;

  // The file itself holds HF names, [out, in] shapes and (for llama) the half-split Q/K order.
  auto f = st::SafetensorsFile::open(dir.file("hf/model.safetensors"));
  const auto* q = f.find("model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  const gguf::TensorInfo* gq = g.find_tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q->shape, (std::vector<int64_t>{gq->shape[1], gq->shape[0]}));
  EXPECT_EQ(std::memcmp(q->data, gq->data, q->nbytes) != 0, permuted);
  EXPECT_EQ(f.find("lm_head.weight"), nullptr);  // tied
  auto cfg = nlohmann::json::parse(test::read_text_file(dir.file("hf/config.json")));
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_EQ(cfg["torch_dtype"], "float16");

  // A single .safetensors with config.json beside it loads the same way.
  io::ModelFile s = io::load_model_file(dir.file("hf/model.safetensors"));
  expect_same_tensors(g, s);
}

TEST(Safetensors, HfDirRoundTripTinyLlama) {
  hf_round_trip("tiny-llama-f16.gguf", true);
}
TEST(Safetensors, HfDirRoundTripTinyQwen2) {
  hf_round_trip("tiny-qwen2-f16.gguf", false);
}

TEST(Safetensors, HfDirShardedWithIndex) {
  test::TempDir dir;
  io::ModelFile g = io::load_model_file(test::testdata("models/stories260K.gguf"));
  io::write_hf_dir(g, dir.file("hf"));
  // Re-split model.safetensors into two shards and an index.
  auto f = st::SafetensorsFile::open(dir.file("hf/model.safetensors"));
  st::SafetensorsWriter w1, w2;
  nlohmann::json wm;
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& t = f.tensors()[i];
    (i % 2 ? w1 : w2).add_tensor(t.name, t.type, t.shape, t.data, t.nbytes);
    wm[t.name] = i % 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  w1.write(dir.file("hf/model-00001-of-00002.safetensors"));
  w2.write(dir.file("hf/model-00002-of-00002.safetensors"));
  write_file(dir.file("hf/model.safetensors.index.json"),
             nlohmann::json{{"metadata", nlohmann::json::object()}, {"weight_map", wm}}.dump());
  std::filesystem::remove(dir.file("hf/model.safetensors"));
  io::ModelFile h = io::load_model_file(dir.file("hf"));
  expect_same_tensors(g, h);

  // An index naming a tensor no shard holds is an error naming the index.
  wm["model.layers.0.mlp.extra.weight"] = "model-00001-of-00002.safetensors";
  write_file(dir.file("hf/model.safetensors.index.json"),
             nlohmann::json{{"weight_map", wm}}.dump());
  try {
    io::load_model_file(dir.file("hf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors.index.json"), std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, HfConfigRopeScalingAndSlidingWindow) {
  auto cfg = nlohmann::json::parse(R"({
    "architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
    "rms_norm_eps": 1e-6, "rope_theta": 500000.0, "max_position_embeddings": 8192,
    "sliding_window": 4096, "vocab_size": 1000,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})");
  io::hf::HfConfig c = io::hf::config_to_metadata(cfg, "config.json", "m");
  io::ModelFile m;
  m.metadata = c.metadata;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_TRUE(c.permute_qk);
  EXPECT_EQ(m.find("llama.attention.key_length")->as_int(""), 32);
  EXPECT_EQ(m.find("llama.rope.dimension_count")->as_int(""), 32);
  EXPECT_EQ(m.find("llama.attention.sliding_window")->as_int(""), 4096);
  EXPECT_EQ(m.find("llama.rope.scaling.type")->str, "llama3");
  EXPECT_EQ(m.find("llama.rope.scaling.factor")->as_float(""), 8.0);
  EXPECT_EQ(m.find("llama.rope.scaling.original_context_length")->as_int(""), 8192);
  EXPECT_EQ(m.find("llama.rope.scaling.high_freq_factor")->as_float(""), 4.0);
  EXPECT_EQ(m.find("llama.rope.freq_base")->as_float(""), 500000.0);

  // And back: config.json written from this metadata reads back to the same keys.
  auto back = io::hf::metadata_to_config(m, true, "float16");
  EXPECT_EQ(back["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(back["rms_norm_eps"].get<double>(), 1e-6);
  io::hf::HfConfig c2 = io::hf::config_to_metadata(back, "config.json", "m");
  io::ModelFile m2;
  m2.metadata = c2.metadata;
  for (const auto& [k, v] : m.metadata) {
    ASSERT_NE(m2.find(k), nullptr) << k;
    EXPECT_EQ(m2.find(k)->to_display(), v.to_display()) << k;
  }

  // Qwen2's sliding_window only counts when use_sliding_window is set; yarn keys.
  auto q = nlohmann::json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "sliding_window": 4096, "use_sliding_window": false,
    "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}})");
  io::hf::HfConfig cq = io::hf::config_to_metadata(q, "config.json", "m");
  io::ModelFile mq;
  mq.metadata = cq.metadata;
  EXPECT_FALSE(cq.permute_qk);
  EXPECT_EQ(mq.find("qwen2.attention.sliding_window"), nullptr);
  EXPECT_EQ(mq.find("qwen2.rope.scaling.type")->str, "yarn");
  EXPECT_EQ(mq.find("qwen2.rope.scaling.yarn_beta_fast")->as_float(""), 32.0);
  EXPECT_EQ(mq.find("qwen2.attention.head_count_kv")->as_int(""), 4);
}

TEST(Safetensors, RawFileWithoutConfigKeepsNames) {
  test::TempDir dir;
  std::vector<float> a(6, 1.0f);
  st::SafetensorsWriter w;
  w.add_tensor("encoder.w", st::StType::F32, {2, 3}, a.data(), 24);
  w.write(dir.file("x.safetensors"));
  io::ModelFile m = io::load_model_file(dir.file("x.safetensors"));
  ASSERT_NE(m.find_tensor("encoder.w"), nullptr);
  EXPECT_EQ(m.find_tensor("encoder.w")->shape, (std::vector<int64_t>{3, 2}));
}

TEST(Safetensors, WriteHfRejectsQuantizedTensors) {
  test::TempDir dir;
  io::ModelFile g = io::load_model_file(test::testdata("models/tiny-llama-Q4_0.gguf"));
  try {
    io::write_hf_dir(g, dir.file("hf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds f32, f16 or bf16 only"), std::string::npos)
        << e.what();
  }
}

// The model built from the Hugging Face directory computes the same logits as the GGUF (the Q/K
// reordering is undone exactly, so the f16 weights are the same bits).
TEST(Safetensors, HfDirGivesSameLogitsAsGguf) {
  test::TempDir dir;
  io::write_hf_dir(io::load_model_file(test::testdata("models/tiny-llama-f16.gguf")),
                   dir.file("hf"));
  auto a = model::Model::load(io::load_model_file(test::testdata("models/tiny-llama-f16.gguf")));
  auto b = model::Model::load(io::load_model_file(dir.file("hf")));
  ThreadPool pool(2);
  std::vector<int32_t> ids = {1, 512, 3000, 77, 31999, 9};
  EXPECT_EQ(test::run_logits(*a, ids, 0, pool), test::run_logits(*b, ids, 0, pool));
}
