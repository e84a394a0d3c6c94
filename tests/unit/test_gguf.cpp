#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "common/testdata.h"
#include "core/error.h"
#include "io/gguf/gguf.h"

using namespace brisk;

TEST(Gguf, ReadsTinyLlamaTensorTable) {
  auto f = gguf::GgufFile::open(test::testdata("models/tiny-llama-f16.gguf"));
  EXPECT_EQ(f.get_string("general.architecture").value(), "llama");
  EXPECT_EQ(f.get_int("llama.embedding_length").value(), 256);
  const auto* t = f.find_tensor("token_embd.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{256, 32000}));
  EXPECT_EQ(t->nbytes, 256u * 32000u * dtype_layout(t->type).type_size);
}

TEST(Gguf, VocabOnlyFileLoads) {
  auto f = gguf::GgufFile::open(test::testdata("tokenizer/ggml-vocab-gpt-2.gguf"));
  EXPECT_TRUE(f.tensors().empty());
  ASSERT_NE(f.find("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->as_array("t").size(), 50257u);
}

// Every metadata type, nested arrays and tensors round-trip bit-identically through the writer.
TEST(Gguf, WriterRoundTripIsBitIdentical) {
  test::TempDir dir;
  gguf::GgufWriter w;
  w.set("u8", gguf::Value::u8(7));
  w.set("i8", gguf::Value::i8(-7));
  w.set("u16", gguf::Value::u16(65535));
  w.set("i16", gguf::Value::i16(-300));
  w.set("u32", gguf::Value::u32(123456));
  w.set("i32", gguf::Value::i32(-123456));
  w.set("u64", gguf::Value::u64(1ull << 40));
  w.set("i64", gguf::Value::i64(-(1ll << 40)));
  w.set("f32", gguf::Value::f32(0.25f));
  w.set("f64", gguf::Value::f64(1e-300));
  w.set("b", gguf::Value::boolean(true));
  w.set("s", gguf::Value::string("héllo"));
  w.set("nested", gguf::Value::array(gguf::ValueType::ARRAY, {gguf::Value::i32s({1, 2, 3}),
                                                              gguf::Value::strings({"a", ""})}));
  w.set("general.alignment", gguf::Value::u32(64));
  std::vector<float> a(96), b(33);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -float(i);
  w.add_tensor("a", DType::F32, {32, 3}, a.data(), a.size() * 4);
  w.add_tensor("b", DType::F32, {33}, b.data(), b.size() * 4);
  w.write(dir.file("x.gguf"));

  auto f = gguf::GgufFile::open(dir.file("x.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.find("i16")->i, -300);
  EXPECT_EQ(f.find("u64")->u, 1ull << 40);
  EXPECT_EQ(f.find("f64")->f, 1e-300);
  EXPECT_EQ(f.find("s")->str, "héllo");
  const auto& nested = f.find("nested")->as_array("nested");
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested[0].arr[2].i, 3);
  EXPECT_EQ(nested[1].arr[1].str, "");
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[1].offset % 64, 0u);
  EXPECT_EQ(std::memcmp(f.find_tensor("a")->data, a.data(), a.size() * 4), 0);
  EXPECT_EQ(std::memcmp(f.find_tensor("b")->data, b.data(), b.size() * 4), 0);

  // Re-writing what we read gives the same bytes.
  gguf::GgufWriter w2;
  w2.copy_metadata_from(f);
  for (const auto& t : f.tensors()) w2.add_tensor(t.name, t.type, t.shape, t.data, t.nbytes);
  w2.write(dir.file("y.gguf"));
  EXPECT_EQ(test::read_text_file(dir.file("x.gguf")), test::read_text_file(dir.file("y.gguf")));
}

TEST(Gguf, RewritingARealModelIsBitIdentical) {
  test::TempDir dir;
  auto f = gguf::GgufFile::open(test::testdata("models/tiny-llama-Q4_K_M.gguf"));
  gguf::GgufWriter w;
  w.copy_metadata_from(f);
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape, t.data, t.nbytes);
  w.write(dir.file("copy.gguf"), f.version());
  auto g = gguf::GgufFile::open(dir.file("copy.gguf"));
  ASSERT_EQ(g.tensors().size(), f.tensors().size());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    EXPECT_EQ(g.tensors()[i].name, f.tensors()[i].name);
    EXPECT_EQ(g.tensors()[i].offset, f.tensors()[i].offset);
    EXPECT_EQ(std::memcmp(g.tensors()[i].data, f.tensors()[i].data, f.tensors()[i].nbytes), 0);
  }
  EXPECT_EQ(test::read_text_file(test::testdata("models/tiny-llama-Q4_K_M.gguf"))
                .substr(0, g.data_offset()),
            test::read_text_file(dir.file("copy.gguf")).substr(0, g.data_offset()));
}

TEST(Gguf, TruncatedFileIsAnErrorNamingTheFile) {
  test::TempDir dir;
  std::string bytes = test::read_text_file(test::testdata("models/stories260K.gguf"));
  for (size_t cut :
       {size_t(0), size_t(3), size_t(10), size_t(30), size_t(1000), bytes.size() - 1}) {
    std::string p = dir.file("t.gguf");
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(cut));
    try {
      gguf::GgufFile::open(p);
      ADD_FAILURE() << "no error at cut " << cut;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
}
