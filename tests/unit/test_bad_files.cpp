// Regression corpus of malformed model files, generated here (no binary blobs in the repository).
// Every one must be rejected with a brisk::Error whose single-line message names the file; none may
// crash or read out of bounds (the ASan build runs these too).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "common/testdata.h"
#include "core/error.h"
#include "io/gguf/gguf.h"
#include "io/llama2c/llama2c.h"
#include "io/model_file.h"
#include "io/safetensors/hf_dir.h"

using namespace brisk;

namespace {

// Little-endian byte builder for hand-made files.
struct Bytes {
  std::string b;
  template <class T>
  Bytes& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  Bytes& raw(const std::string& s) {
    b += s;
    return *this;
  }
  Bytes& pad_to(size_t a) {
    b.append((a - b.size() % a) % a, '\0');
    return *this;
  }
};

enum : uint32_t { kU32 = 4, kF32 = 6, kBool = 7, kString = 8, kArray = 9 };

// Header of a GGUF v3 file with n_tensors and n_kv as given.
Bytes gguf_header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Bytes x;
  x.raw("GGUF").put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
  return x;
}

// One tensor info.
void tensor_info(Bytes& x, const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                 uint64_t off) {
  x.str(name).put<uint32_t>(static_cast<uint32_t>(dims.size()));
  for (uint64_t d : dims) x.put<uint64_t>(d);
  x.put<uint32_t>(type).put<uint64_t>(off);
}

// A small valid GGUF: two KV pairs, two f32 tensors "a" (8) and "b" (2x4) at offsets 0 and 32.
std::string valid_gguf() {
  Bytes x = gguf_header(2, 2);
  x.str("general.architecture").put<uint32_t>(kString).str("llama");
  x.str("general.alignment").put<uint32_t>(kU32).put<uint32_t>(32);
  tensor_info(x, "a", {8}, 0, 0);
  tensor_info(x, "b", {4, 2}, 0, 32);
  x.pad_to(32);
  for (int i = 0; i < 16; ++i) x.put<float>(float(i));
  return x.b;
}

std::string write(const test::TempDir& dir, const std::string& name, const std::string& bytes) {
  std::string p = dir.file(name);
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p;
}

// `fn` must throw brisk::Error whose message names `path` (and contains `want`, if given).
template <class F>
void expect_error(const std::string& path, F fn, const std::string& want = "") {
  const std::string base = std::filesystem::path(path).filename().string();
  try {
    fn();
    ADD_FAILURE() << base << ": no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(base), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    if (!want.empty()) {
      EXPECT_NE(msg.find(want), std::string::npos) << "want '" << want << "' in: " << msg;
    }
  }
}

void expect_load_error(const std::string& path, const std::string& want = "") {
  expect_error(
      path, [&] { io::load_model_file(path); }, want);
}

void expect_gguf_error(const test::TempDir& dir, const std::string& name, const std::string& bytes,
                       const std::string& want = "") {
  const std::string p = write(dir, name, bytes);
  expect_error(
      p, [&] { gguf::GgufFile::open(p); }, want);
  expect_load_error(p);
}

std::string safetensors_file(const std::string& header, size_t data_bytes) {
  Bytes x;
  x.put<uint64_t>(header.size()).raw(header);
  x.b.append(data_bytes, '\0');
  return x.b;
}

std::string llama2c_header(std::vector<int32_t> h) {
  Bytes x;
  for (int32_t v : h) x.put<int32_t>(v);
  return x.b;
}

}  // namespace

TEST(BadFile, HandMadeGgufIsValid) {
  test::TempDir dir;
  std::string p = write(dir, "ok.gguf", valid_gguf());
  auto f = gguf::GgufFile::open(p);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.find_tensor("b")->shape, (std::vector<int64_t>{4, 2}));
}

// Every proper prefix of a valid file (header, each KV, each tensor info, padding, data) fails.
TEST(BadFile, GgufTruncatedAtEveryByte) {
  test::TempDir dir;
  const std::string ok = valid_gguf();
  for (size_t n = 0; n < ok.size(); ++n) {
    SCOPED_TRACE(n);
    const std::string name = "trunc" + std::to_string(n) + ".gguf";
    const std::string p = write(dir, name, ok.substr(0, n));
    expect_load_error(p);
    if (n >= 4) expect_error(p, [&] { gguf::GgufFile::open(p); });
  }
}

TEST(BadFile, GgufBadMagicAndVersion) {
  test::TempDir dir;
  std::string bad = valid_gguf();
  bad[3] = 'X';
  expect_gguf_error(dir, "magic.gguf", bad, "bad magic");
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    std::string b = valid_gguf();
    std::memcpy(b.data() + 4, &v, 4);
    expect_gguf_error(dir, "version" + std::to_string(v) + ".gguf", b, "version");
  }
}

TEST(BadFile, GgufAbsurdCounts) {
  test::TempDir dir;
  Bytes kv = gguf_header(0, uint64_t{1} << 60);
  expect_gguf_error(dir, "kvcount.gguf", kv.b + std::string(64, '\0'), "metadata count");
  Bytes t = gguf_header(uint64_t{1} << 60, 0);
  expect_gguf_error(dir, "tcount.gguf", t.b + std::string(64, '\0'), "tensor count");
  Bytes t2 = gguf_header(~uint64_t{0}, ~uint64_t{0});
  expect_gguf_error(dir, "maxcount.gguf", t2.b);
}

TEST(BadFile, GgufStringLengthPastEnd) {
  test::TempDir dir;
  Bytes key = gguf_header(0, 1);
  key.put<uint64_t>(uint64_t{1} << 62).raw("abc").raw(std::string(64, '\0'));
  expect_gguf_error(dir, "keylen.gguf", key.b, "past end");
  Bytes val = gguf_header(0, 1);
  val.str("k").put<uint32_t>(kString).put<uint64_t>(1000).raw("short").raw(std::string(64, '\0'));
  expect_gguf_error(dir, "vallen.gguf", val.b, "past end");
  Bytes tn = gguf_header(1, 0);
  tn.put<uint64_t>(~uint64_t{0});
  expect_gguf_error(dir, "tnamelen.gguf", tn.b);
}

TEST(BadFile, GgufArrayBombs) {
  test::TempDir dir;
  // 10,000 nested array headers, each claiming one element: rejected by depth, not recursion.
  Bytes nest = gguf_header(0, 1);
  nest.str("bomb").put<uint32_t>(kArray);
  for (int i = 0; i < 10000; ++i) nest.put<uint32_t>(kArray).put<uint64_t>(1);
  expect_gguf_error(dir, "nested.gguf", nest.b, "nested");
  // An array claiming 2^40 u32 elements in a tiny file.
  Bytes big = gguf_header(0, 1);
  big.str("big")
      .put<uint32_t>(kArray)
      .put<uint32_t>(kU32)
      .put<uint64_t>(uint64_t{1} << 40)
      .put<uint32_t>(1);
  expect_gguf_error(dir, "bigarray.gguf", big.b, "past end");
  // An array of 2^30 strings (each at least 8 bytes).
  Bytes strs = gguf_header(0, 1);
  strs.str("s").put<uint32_t>(kArray).put<uint32_t>(kString).put<uint64_t>(uint64_t{1} << 30);
  expect_gguf_error(dir, "strarray.gguf", strs.b);
  // Unknown array element type and unknown value type.
  Bytes et = gguf_header(0, 1);
  et.str("e").put<uint32_t>(kArray).put<uint32_t>(13).put<uint64_t>(1).put<uint32_t>(0);
  expect_gguf_error(dir, "elemtype.gguf", et.b, "type");
  Bytes vt = gguf_header(0, 1);
  vt.str("v").put<uint32_t>(99).put<uint64_t>(0);
  expect_gguf_error(dir, "valtype.gguf", vt.b, "type");
  Bytes bo = gguf_header(0, 1);
  bo.str("b").put<uint32_t>(kBool).put<uint8_t>(2);
  expect_gguf_error(dir, "bool.gguf", bo.b, "bool");
  Bytes dup = gguf_header(0, 2);
  dup.str("k").put<uint32_t>(kU32).put<uint32_t>(1).str("k").put<uint32_t>(kU32).put<uint32_t>(2);
  expect_gguf_error(dir, "dupkey.gguf", dup.b, "duplicate");
}

// A one-tensor file with the given info; data is 256 zero bytes after 32-byte alignment.
std::string one_tensor(std::vector<uint64_t> dims, uint32_t type, uint64_t off,
                       const std::string& name = "t", uint32_t alignment = 0) {
  Bytes x = gguf_header(1, alignment ? 1 : 0);
  if (alignment) x.str("general.alignment").put<uint32_t>(kU32).put<uint32_t>(alignment);
  tensor_info(x, name, dims, type, off);
  x.pad_to(32);
  x.b.append(256, '\0');
  return x.b;
}

TEST(BadFile, GgufBadTensorInfos) {
  test::TempDir dir;
  expect_gguf_error(dir, "ok-check.gguf",
                    one_tensor({8}, 0, 0).substr(0, 10));  // sanity: truncated
  EXPECT_NO_THROW(gguf::GgufFile::open(write(dir, "ok1.gguf", one_tensor({8}, 0, 0))));
  expect_gguf_error(dir, "type99.gguf", one_tensor({8}, 99, 0), "type");
  expect_gguf_error(dir, "type4.gguf", one_tensor({32}, 4, 0), "type");  // removed Q4_2
  expect_gguf_error(dir, "pastend.gguf", one_tensor({8}, 0, 256), "past end");
  expect_gguf_error(dir, "bigdata.gguf", one_tensor({1000}, 0, 0), "past end");
  expect_gguf_error(dir, "hugeoff.gguf", one_tensor({8}, 0, ~uint64_t{0} & ~uint64_t{31}),
                    "past end");
  expect_gguf_error(dir, "misaligned.gguf", one_tensor({8}, 0, 4), "aligned");
  expect_gguf_error(dir, "align3.gguf", one_tensor({8}, 0, 0, "t", 3), "alignment");
  expect_gguf_error(dir, "align0.gguf", one_tensor({8}, 0, 0, "t", 0xffffffffu), "alignment");
  {
    Bytes s = gguf_header(0, 1);
    s.str("general.alignment").put<uint32_t>(kString).str("32");
    expect_gguf_error(dir, "alignstr.gguf", s.b, "alignment");
    Bytes h = gguf_header(0, 1);
    h.str("general.alignment").put<uint32_t>(10).put<uint64_t>(~uint64_t{0});
    expect_gguf_error(dir, "alignhuge.gguf", h.b, "alignment");
  }
  expect_gguf_error(dir, "q4block.gguf", one_tensor({31}, 2, 0), "block");
  expect_gguf_error(dir, "q4kblock.gguf", one_tensor({32, 2}, 12, 0), "block");
  expect_gguf_error(dir, "zerodim.gguf", one_tensor({8, 0}, 0, 0), "dimension");
  expect_gguf_error(dir, "negdim.gguf", one_tensor({8, ~uint64_t{0}}, 0, 0), "dimension");
  expect_gguf_error(dir, "nodims.gguf", one_tensor({}, 0, 0), "dimensions");
  expect_gguf_error(dir, "fivedims.gguf", one_tensor({1, 1, 1, 1, 1}, 0, 0), "dimensions");
  expect_gguf_error(dir, "overflow.gguf", one_tensor({1u << 30, 1u << 30, 1u << 30}, 0, 0));

  Bytes dup = gguf_header(2, 0);
  tensor_info(dup, "same", {8}, 0, 0);
  tensor_info(dup, "same", {8}, 0, 32);
  dup.pad_to(32);
  dup.b.append(64, '\0');
  expect_gguf_error(dir, "duptensor.gguf", dup.b, "duplicate");
}

// Cutting a real model anywhere in its tensor data is caught too.
TEST(BadFile, RealGgufTruncatedInData) {
  test::TempDir dir;
  const std::string ok = test::read_text_file(test::testdata("models/stories260K.gguf"));
  for (size_t n : {ok.size() - 1, ok.size() / 2, size_t{100}, size_t{24}}) {
    const std::string p = write(dir, "stories-cut" + std::to_string(n) + ".gguf", ok.substr(0, n));
    expect_load_error(p);
  }
}

TEST(BadFile, SafetensorsCorruptHeaders) {
  test::TempDir dir;
  auto st = [&](const std::string& name, const std::string& bytes, const std::string& want = "") {
    expect_load_error(write(dir, name + ".safetensors", bytes), want);
  };
  const std::string good = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  EXPECT_NO_THROW(io::load_model_file(write(dir, "good.safetensors", safetensors_file(good, 16))));
  st("short", std::string(5, '\0'), "truncated");
  st("badjson", safetensors_file(R"({"a":{"dtype":"F32",)", 16), "JSON");
  st("notobject", safetensors_file("[1,2,3]", 16), "object");
  st("utf8", safetensors_file("{\"\xff\xfe\":{}}", 0), "JSON");
  {
    Bytes x;
    x.put<uint64_t>(uint64_t{1} << 40).raw("{}");
    st("hugelen", x.b, "header length");
    Bytes y;
    y.put<uint64_t>(5000).raw(good);
    st("lenpastend", y.b, "past end");
    Bytes z;
    z.put<uint64_t>(0);
    st("zerolen", z.b, "header length");
  }
  st("overlap",
     safetensors_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                      R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                      24),
     "overlap");
  st("sizemismatch",
     safetensors_file(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 32), "need");
  st("reversed", safetensors_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})", 16),
     "reversed");
  st("pastend", safetensors_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
     "past end");
  st("hugeoff",
     safetensors_file(
         R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})",
         8),
     "past end");
  st("dtype", safetensors_file(R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4),
     "dtype");
  st("negshape", safetensors_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
     "shape");
  st("floatshape",
     safetensors_file(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4), "shape");
  st("hugeshape",
     safetensors_file(
         R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})", 4));
  st("nooffsets", safetensors_file(R"({"a":{"dtype":"F32","shape":[1]}})", 4), "data_offsets");
  st("dupname",
     safetensors_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                      R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                      8),
     "duplicate");
  st("metadata", safetensors_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__");
  st("deep", safetensors_file(std::string(5000, '[') + std::string(5000, ']'), 0), "nested");
  st("entry", safetensors_file(R"({"a":5})", 0), "entry");
}

TEST(BadFile, HfDirectoryFaults) {
  test::TempDir dir;
  // A working directory first (stories260K written as HF), then break one thing at a time.
  io::ModelFile g = io::load_model_file(test::testdata("models/stories260K.gguf"));
  io::write_hf_dir(g, dir.file("hf"));
  const std::string cfg_path = dir.file("hf/config.json");
  const std::string cfg = test::read_text_file(cfg_path);
  EXPECT_NO_THROW(io::load_model_file(dir.file("hf")));
  auto with_config = [&](const std::string& text, const std::string& want) {
    write(dir, "hf/config.json", text);
    expect_error(
        cfg_path, [&] { io::load_model_file(dir.file("hf")); }, want);
  };
  with_config("{not json", "JSON");
  with_config(R"({"architectures":["GPT2LMHeadModel"]})", "unsupported architecture");
  with_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64})", "intermediate_size");
  with_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":-64,"intermediate_size":172,)"
              R"("num_hidden_layers":5,"num_attention_heads":8})",
              "hidden_size");
  with_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,)"
              R"("num_hidden_layers":5,"num_attention_heads":0})",
              "num_attention_heads");
  with_config(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,)"
              R"("num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":3})",
              "num_key_value_heads");
  with_config(
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,)"
      R"("num_hidden_layers":5,"num_attention_heads":8,"rope_scaling":{"rope_type":"dynamic","factor":2}})",
      "rope_scaling");
  // Fewer layers in the config than in the weights: the extra tensors are an error naming the
  // shard.
  write(dir, "hf/config.json",
        R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,)"
        R"("num_hidden_layers":4,"num_attention_heads":8,"num_key_value_heads":4})");
  expect_error(
      dir.file("hf/model.safetensors"), [&] { io::load_model_file(dir.file("hf")); }, "layer 4");
  // Wrong head count for the Q rows.
  write(dir, "hf/config.json",
        R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,)"
        R"("num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":2})");
  expect_error(
      dir.file("hf/model.safetensors"), [&] { io::load_model_file(dir.file("hf")); }, "rows");
  write(dir, "hf/config.json", cfg);
  // An index pointing outside the directory.
  write(dir, "hf/model.safetensors.index.json",
        R"({"weight_map":{"lm_head.weight":"../x.safetensors"}})");
  expect_error(
      dir.file("hf/model.safetensors.index.json"), [&] { io::load_model_file(dir.file("hf")); },
      "file name");
}

TEST(BadFile, Llama2cFaults) {
  test::TempDir dir;
  const std::string ok = test::read_text_file(test::testdata("models/stories260K.llama2c.bin"));
  expect_load_error(write(dir, "short4.bin", ok.substr(0, ok.size() - 4)), "implies");
  expect_load_error(write(dir, "long4.bin", ok + std::string(4, '\0')), "implies");
  expect_load_error(write(dir, "header.bin", ok.substr(0, 10)), "truncated");
  expect_load_error(write(dir, "empty.bin", ""), "truncated");
  auto hdr = [&](const std::string& name, std::vector<int32_t> h, const std::string& want) {
    expect_load_error(write(dir, name, llama2c_header(h) + std::string(4096, '\0')), want);
    // Parsing from memory gives the same verdict.
    std::string b = llama2c_header(h) + std::string(4096, '\0');
    expect_error(
        name, [&] { llama2c::parse(reinterpret_cast<const uint8_t*>(b.data()), b.size(), name); },
        want);
  };
  hdr("negdim.bin", {-64, 172, 5, 8, 4, 512, 512}, "dim");
  hdr("zerodim.bin", {0, 172, 5, 8, 4, 512, 512}, "dim");
  hdr("zeroheads.bin", {64, 172, 5, 0, 4, 512, 512}, "n_heads");
  hdr("zerokv.bin", {64, 172, 5, 8, 0, 512, 512}, "n_kv_heads");
  hdr("kvgtheads.bin", {64, 172, 5, 8, 16, 512, 512}, "n_kv_heads");
  hdr("kvnotdiv.bin", {64, 172, 5, 8, 3, 512, 512}, "n_kv_heads");
  hdr("headsnotdiv.bin", {64, 172, 5, 7, 7, 512, 512}, "n_heads");
  hdr("oddhead.bin", {24, 172, 5, 8, 4, 512, 512}, "odd");
  hdr("negvocab.bin", {64, 172, 5, 8, 4, std::numeric_limits<int32_t>::min(), 512}, "vocab_size");
  hdr("zerovocab.bin", {64, 172, 5, 8, 4, 0, 512}, "vocab_size");
  hdr("negseq.bin", {64, 172, 5, 8, 4, 512, -1}, "seq_len");
  hdr("neglayers.bin", {64, 172, -5, 8, 4, 512, 512}, "n_layers");
  hdr("huge.bin", {65536, 262144, 4096, 8, 4, 4194304, 16777216}, "implies");
}
