#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "common/testdata.h"
#include "core/error.h"
#include "io/llama2c/llama2c.h"
#include "io/model_file.h"

using namespace brisk;

namespace {

// A tiny llama2.c checkpoint: header then `n_floats` floats 0, 1, 2, ... (values identify offsets).
std::vector<uint8_t> make_checkpoint(std::vector<int32_t> hdr, size_t n_floats) {
  std::vector<uint8_t> b(28 + 4 * n_floats);
  std::memcpy(b.data(), hdr.data(), 28);
  for (size_t i = 0; i < n_floats; ++i) {
    float v = static_cast<float>(i);
    std::memcpy(b.data() + 28 + 4 * i, &v, 4);
  }
  return b;
}

float first(const gguf::TensorInfo* t) {
  float v;
  std::memcpy(&v, t->data, 4);
  return v;
}

}  // namespace

// Every tensor of the llama2.c checkpoint equals the same-named tensor of the GGUF conversion of
// the same weights: name, shape, type and every value. (No Q/K reordering between the two.)
TEST(Llama2c, MatchesStoriesGgufBitForBit) {
  io::ModelFile a = io::load_model_file(test::testdata("models/stories260K.llama2c.bin"));
  io::ModelFile b = io::load_model_file(test::testdata("models/stories260K.gguf"));
  EXPECT_EQ(a.format, "llama2c");
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& t : a.tensors) {
    const gguf::TensorInfo* u = b.find_tensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.shape, u->shape) << t.name;
    EXPECT_EQ(t.type, u->type) << t.name;
    ASSERT_EQ(t.nbytes, u->nbytes) << t.name;
    EXPECT_EQ(std::memcmp(t.data, u->data, t.nbytes), 0) << t.name;
  }
  for (const char* k :
       {"llama.context_length", "llama.embedding_length", "llama.block_count",
        "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
        "llama.rope.dimension_count", "llama.vocab_size"}) {
    ASSERT_NE(a.find(k), nullptr) << k;
    ASSERT_NE(b.find(k), nullptr) << k;
    EXPECT_EQ(a.find(k)->as_int(k), b.find(k)->as_int(k)) << k;
  }
  EXPECT_EQ(a.find("llama.attention.layer_norm_rms_epsilon")->as_float("eps"),
            b.find("llama.attention.layer_norm_rms_epsilon")->as_float("eps"));
}

TEST(Llama2c, VocabFromAttachesTokenizer) {
  io::LoadOptions opts;
  opts.vocab_from = test::testdata("models/stories260K.gguf");
  io::ModelFile a = io::load_model_file(test::testdata("models/stories260K.llama2c.bin"), opts);
  ASSERT_NE(a.find("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(a.find("tokenizer.ggml.tokens")->as_array("t").size(), 512u);
  EXPECT_EQ(a.find("tokenizer.ggml.bos_token_id")->as_int("bos"), 1);
}

TEST(Llama2c, VocabOfWrongSizeIsRejected) {
  io::LoadOptions opts;
  opts.vocab_from = test::testdata("tokenizer/ggml-vocab-gpt-2.gguf");
  try {
    io::load_model_file(test::testdata("models/stories260K.llama2c.bin"), opts);
    FAIL() << "expected brisk::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ggml-vocab-gpt-2.gguf"), std::string::npos) << e.what();
  }
}

// dim 4, hidden 6, 1 layer, 2 heads, 1 kv head, vocab -3 (untied), seq_len 2.
TEST(Llama2c, UntiedClassifierAndLayoutOffsets) {
  const size_t dim = 4, hid = 6, V = 3, kv = 2, seq = 2, head = 2;
  const size_t n = V * dim + dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hid * dim +
                   dim + seq * head + V * dim;
  auto buf = make_checkpoint({4, 6, 1, 2, 1, -3, 2}, n);
  io::ModelFile m = llama2c::parse(buf.data(), buf.size(), "tiny.bin");
  ASSERT_NE(m.find_tensor("output.weight"), nullptr);
  EXPECT_EQ(m.find_tensor("output.weight")->shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(m.find_tensor("blk.0.attn_k.weight")->shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(m.find_tensor("blk.0.ffn_down.weight")->shape, (std::vector<int64_t>{6, 4}));
  // Offsets in floats: tok 0, rms_att 12, wq 16, wk 32, wv 40, wo 48, rms_ffn 64, w1 68, w2 92,
  // w3 116, rms_final 140, freqs 144..147, wcls 148.
  EXPECT_EQ(first(m.find_tensor("blk.0.attn_norm.weight")), 12.f);
  EXPECT_EQ(first(m.find_tensor("blk.0.attn_q.weight")), 16.f);
  EXPECT_EQ(first(m.find_tensor("blk.0.attn_k.weight")), 32.f);
  EXPECT_EQ(first(m.find_tensor("blk.0.attn_v.weight")), 40.f);
  EXPECT_EQ(first(m.find_tensor("blk.0.attn_output.weight")), 48.f);
  EXPECT_EQ(first(m.find_tensor("blk.0.ffn_norm.weight")), 64.f);
  EXPECT_EQ(first(m.find_tensor("blk.0.ffn_gate.weight")), 68.f);
  EXPECT_EQ(first(m.find_tensor("blk.0.ffn_down.weight")), 92.f);
  EXPECT_EQ(first(m.find_tensor("blk.0.ffn_up.weight")), 116.f);
  EXPECT_EQ(first(m.find_tensor("output_norm.weight")), 140.f);
  EXPECT_EQ(first(m.find_tensor("output.weight")), 148.f);

  // Tied: no output.weight, and one classifier fewer in the file.
  auto tied = make_checkpoint({4, 6, 1, 2, 1, 3, 2}, n - V * dim);
  io::ModelFile t = llama2c::parse(tied.data(), tied.size(), "tied.bin");
  EXPECT_EQ(t.find_tensor("output.weight"), nullptr);
}
