#include <gtest/gtest.h>

#include <cstring>

#include "common/testdata.h"
#include "core/error.h"
#include "io/model_file.h"

using namespace brisk;

TEST(ModelFile, LoadsGgufAsViews) {
  io::ModelFile m = io::load_model_file(test::testdata("models/tiny-qwen2-f16.gguf"));
  EXPECT_EQ(m.format, "gguf");
  EXPECT_EQ(m.find("general.architecture")->str, "qwen2");
  ASSERT_EQ(m.mappings.size(), 1u);
  const auto* t = m.find_tensor("blk.0.attn_q.bias");
  ASSERT_NE(t, nullptr);
  EXPECT_GE(t->data, m.mappings[0]->data());
  EXPECT_LE(t->data + t->nbytes, m.mappings[0]->data() + m.mappings[0]->size());
}

TEST(ModelFile, SetReplacesAndAddOwnedTensorValidates) {
  io::ModelFile m;
  m.path = "mem";
  m.set("a", gguf::Value::u32(1));
  m.set("b", gguf::Value::u32(2));
  m.set("a", gguf::Value::string("x"));
  ASSERT_EQ(m.metadata.size(), 2u);
  EXPECT_EQ(m.metadata[0].second.str, "x");
  m.add_owned_tensor("t", DType::F32, {2, 2}, std::vector<uint8_t>(16, 0));
  ASSERT_NE(m.find_tensor("t"), nullptr);
  EXPECT_EQ(m.owned.size(), 1u);
  EXPECT_THROW(m.add_owned_tensor("u", DType::F32, {3}, std::vector<uint8_t>(8)), Error);
  EXPECT_THROW(m.add_owned_tensor("q", DType::Q4_0, {16}, std::vector<uint8_t>(18)),
               Error);  // not a block multiple
}

// llama2.c -> GGUF -> load: same metadata and the same tensor bytes.
TEST(ModelFile, WriteGgufRoundTripsAnyFormat) {
  test::TempDir dir;
  io::LoadOptions opts;
  opts.vocab_from = test::testdata("models/stories260K.gguf");
  io::ModelFile a = io::load_model_file(test::testdata("models/stories260K.llama2c.bin"), opts);
  io::write_gguf(a, dir.file("s.gguf"));
  io::ModelFile b = io::load_model_file(dir.file("s.gguf"));
  ASSERT_EQ(a.metadata.size(), b.metadata.size());
  for (size_t i = 0; i < a.metadata.size(); ++i) {
    EXPECT_EQ(a.metadata[i].first, b.metadata[i].first);
    EXPECT_EQ(a.metadata[i].second.to_display(), b.metadata[i].second.to_display());
  }
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape);
    ASSERT_EQ(a.tensors[i].nbytes, b.tensors[i].nbytes);
    EXPECT_EQ(std::memcmp(a.tensors[i].data, b.tensors[i].data, a.tensors[i].nbytes), 0);
  }
}

TEST(ModelFile, MissingPathNamesTheFile) {
  try {
    io::load_model_file("/nonexistent/brisk-model.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("brisk-model.bin"), std::string::npos);
  }
}

TEST(ModelFile, DirectoryWithoutConfigIsAnError) {
  test::TempDir dir;
  try {
    io::load_model_file(dir.path.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}
