#include "model/synth.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/quant.h"
#include "model/arch.h"
#include "ops/rope.h"

namespace brisk::model {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Normal(0, std) for element `i` of stream `stream`: a pure function of (seed, stream, i), so the
// file does not depend on how rows are split over threads.
float normal_at(uint64_t seed, uint64_t stream, uint64_t i, float stddev) {
  const uint64_t a = splitmix64(seed ^ splitmix64(stream * 0x100000001b3ull + (i >> 1)));
  const uint64_t b = splitmix64(a);
  const double u1 = (static_cast<double>(a >> 11) + 1.0) / 9007199254740993.0;
  const double u2 = static_cast<double>(b >> 11) / 9007199254740992.0;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double z = (i & 1) ? r * std::sin(2.0 * M_PI * u2) : r * std::cos(2.0 * M_PI * u2);
  return static_cast<float>(z) * stddev;
}

void add_tensor(io::ModelFile& m, const std::string& name, DType type, int64_t n_in, int64_t n_out,
                float stddev, float constant, uint64_t seed, uint64_t stream, ThreadPool& pool) {
  const kernels::QuantKernels& k = kernels::quant_kernels(type);
  const size_t rb = row_bytes(type, n_in);
  std::vector<uint8_t> bytes(rb * static_cast<size_t>(n_out));
  pool.parallel_for(n_out, [&](int64_t b, int64_t e, int) {
    std::vector<float> row(static_cast<size_t>(n_in));
    for (int64_t r = b; r < e; ++r) {
      for (int64_t c = 0; c < n_in; ++c)
        row[static_cast<size_t>(c)] =
            stddev > 0 ? normal_at(seed, stream, static_cast<uint64_t>(r * n_in + c), stddev)
                       : constant;
      k.from_float(row.data(), bytes.data() + static_cast<size_t>(r) * rb, n_in);
    }
  });
  std::vector<int64_t> shape =
      n_out == 1 ? std::vector<int64_t>{n_in} : std::vector<int64_t>{n_in, n_out};
  m.add_owned_tensor(name, type, std::move(shape), std::move(bytes));
}

}  // namespace

std::vector<std::string> synth_preset_names() {
  return {"tiny", "stories260k", "smollm-135m", "qwen2.5-0.5b", "tinyllama-1.1b", "llama-3.2-1b"};
}

bool synth_preset(const std::string& name, SynthConfig& c) {
  if (name == "tiny") {
    c.arch = "llama";
    c.dim = 256;
    c.layers = 4;
    c.heads = 8;
    c.kv_heads = 4;
    c.ffn = 768;
  } else if (name == "stories260k") {
    c.arch = "llama";
    c.dim = 64;
    c.layers = 5;
    c.heads = 8;
    c.kv_heads = 4;
    c.ffn = 172;
    c.context = 512;
  } else if (name == "smollm-135m") {
    c.arch = "llama";
    c.dim = 576;
    c.layers = 30;
    c.heads = 9;
    c.kv_heads = 3;
    c.ffn = 1536;
  } else if (name == "qwen2.5-0.5b") {
    c.arch = "qwen2";
    c.dim = 896;
    c.layers = 24;
    c.heads = 14;
    c.kv_heads = 2;
    c.ffn = 4864;
    c.rope_base = 1000000.0f;
    c.context = 32768;
  } else if (name == "tinyllama-1.1b") {
    c.arch = "llama";
    c.dim = 2048;
    c.layers = 22;
    c.heads = 32;
    c.kv_heads = 4;
    c.ffn = 5632;
    c.tied = false;
  } else if (name == "llama-3.2-1b") {
    c.arch = "llama";
    c.dim = 2048;
    c.layers = 16;
    c.heads = 32;
    c.kv_heads = 8;
    c.ffn = 8192;
    c.rope_base = 500000.0f;
    c.context = 131072;
    c.llama3_rope = true;
  } else {
    return false;
  }
  return true;
}

io::Metadata builtin_byte_vocab() {
  // <unk>, <s>, </s>, the 256 byte tokens, then single printable ASCII pieces and the space
  // marker so that common text does not fall back to bytes everywhere.
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    tokens.push_back(buf);
    scores.push_back(0);
    types.push_back(6);
  }
  tokens.push_back("\xE2\x96\x81");  // U+2581, SentencePiece's space
  scores.push_back(-1);
  types.push_back(1);
  for (int ch = 33; ch < 127; ++ch) {
    tokens.push_back(std::string(1, static_cast<char>(ch)));
    scores.push_back(-2);
    types.push_back(1);
  }
  io::Metadata kv;
  kv.emplace_back("tokenizer.ggml.model", gguf::Value::string("llama"));
  kv.emplace_back("tokenizer.ggml.pre", gguf::Value::string("default"));
  kv.emplace_back("tokenizer.ggml.tokens", gguf::Value::strings(tokens));
  kv.emplace_back("tokenizer.ggml.scores", gguf::Value::f32s(scores));
  kv.emplace_back("tokenizer.ggml.token_type", gguf::Value::i32s(types));
  kv.emplace_back("tokenizer.ggml.bos_token_id", gguf::Value::u32(1));
  kv.emplace_back("tokenizer.ggml.eos_token_id", gguf::Value::u32(2));
  kv.emplace_back("tokenizer.ggml.unknown_token_id", gguf::Value::u32(0));
  kv.emplace_back("tokenizer.ggml.add_bos_token", gguf::Value::boolean(true));
  kv.emplace_back("tokenizer.ggml.add_eos_token", gguf::Value::boolean(false));
  return kv;
}

io::ModelFile synth_model(const SynthConfig& c, ThreadPool& pool) {
  const ArchSpec* a = find_arch(c.arch);
  if (!a)
    fail("synth: unsupported architecture '", c.arch, "' (supported: ", supported_arch_list(), ")");
  check(c.dim > 0 && c.layers > 0 && c.heads > 0 && c.kv_heads > 0 && c.ffn > 0,
        "synth: dimensions must be positive");
  check(c.dim % c.heads == 0, "synth: dim ", c.dim, " is not a multiple of heads ", c.heads);
  check(c.heads % c.kv_heads == 0, "synth: heads ", c.heads, " is not a multiple of kv-heads ",
        c.kv_heads);
  check(dtype_layout(c.type).storage, "synth: ", dtype_name(c.type), " is not a storage type");
  const int64_t bs = dtype_layout(c.type).block_size;
  check(c.dim % bs == 0 && c.ffn % bs == 0, "synth: dim and ffn must be multiples of the ",
        dtype_name(c.type), " block size ", bs);
  const int64_t head_dim = c.dim / c.heads;
  check(head_dim % 2 == 0, "synth: head dim ", head_dim, " must be even");

  io::ModelFile m;
  m.path = "synth";
  m.format = "gguf";
  io::Metadata vocab;
  if (c.vocab_from.empty()) {
    vocab = builtin_byte_vocab();
  } else {
    io::ModelFile v = io::load_model_file(c.vocab_from);
    for (const auto& [k, val] : v.metadata)
      if (k.rfind("tokenizer.", 0) == 0) vocab.emplace_back(k, val);
  }
  int64_t n_vocab = 0;
  for (const auto& [k, val] : vocab)
    if (k == "tokenizer.ggml.tokens") n_vocab = static_cast<int64_t>(val.as_array(k).size());
  check(n_vocab > 0, "synth: ", c.vocab_from, ": no tokenizer.ggml.tokens in the vocabulary file");
  if (c.vocab_size > 0) {
    check(c.vocab_size >= n_vocab, "synth: vocab size ", c.vocab_size, " is smaller than the ",
          n_vocab, " tokens of the vocabulary");
    n_vocab = c.vocab_size;
  }

  const std::string p = c.arch + ".";
  m.set("general.architecture", gguf::Value::string(c.arch));
  m.set("general.name",
        gguf::Value::string(str_cat("synthetic-", c.arch, "-d", c.dim, "-l", c.layers)));
  m.set(p + "context_length", gguf::Value::u32(static_cast<uint32_t>(c.context)));
  m.set(p + "embedding_length", gguf::Value::u32(static_cast<uint32_t>(c.dim)));
  m.set(p + "block_count", gguf::Value::u32(static_cast<uint32_t>(c.layers)));
  m.set(p + "feed_forward_length", gguf::Value::u32(static_cast<uint32_t>(c.ffn)));
  m.set(p + "attention.head_count", gguf::Value::u32(static_cast<uint32_t>(c.heads)));
  m.set(p + "attention.head_count_kv", gguf::Value::u32(static_cast<uint32_t>(c.kv_heads)));
  m.set(p + "rope.dimension_count", gguf::Value::u32(static_cast<uint32_t>(head_dim)));
  m.set(p + "attention.layer_norm_rms_epsilon", gguf::Value::f32(1e-5f));
  m.set(p + "rope.freq_base", gguf::Value::f32(c.rope_base));
  m.set(p + "vocab_size", gguf::Value::u32(static_cast<uint32_t>(n_vocab)));
  for (auto& [k, val] : vocab) m.set(k, val);

  // The storage type of each matrix: the recipe's choice where one is given.
  auto ty = [&](const std::string& name) { return c.type_for ? c.type_for(name) : c.type; };
  const float sd = 0.02f;
  const uint64_t s = c.seed;
  uint64_t stream = 0;
  add_tensor(m, "token_embd.weight", ty("token_embd.weight"), c.dim, n_vocab, sd, 0, s, ++stream,
             pool);
  add_tensor(m, "output_norm.weight", DType::F32, c.dim, 1, 0, 1.0f, s, ++stream, pool);
  if (!c.tied)
    add_tensor(m, "output.weight", ty("output.weight"), c.dim, n_vocab, sd, 0, s, ++stream, pool);
  if (c.llama3_rope) {
    std::vector<float> ff =
        ops::llama3_freq_factors(static_cast<int>(head_dim), c.rope_base, 32.0f, 1.0f, 4.0f, 8192);
    std::vector<uint8_t> bytes(ff.size() * 4);
    std::memcpy(bytes.data(), ff.data(), bytes.size());
    m.add_owned_tensor("rope_freqs.weight", DType::F32, {static_cast<int64_t>(ff.size())},
                       std::move(bytes));
  }
  const int64_t kv_dim = c.kv_heads * head_dim;
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add_tensor(m, b + "attn_norm.weight", DType::F32, c.dim, 1, 0, 1.0f, s, ++stream, pool);
    add_tensor(m, b + "attn_q.weight", ty(b + "attn_q.weight"), c.dim, c.dim, sd, 0, s, ++stream,
               pool);
    add_tensor(m, b + "attn_k.weight", ty(b + "attn_k.weight"), c.dim, kv_dim, sd, 0, s, ++stream,
               pool);
    add_tensor(m, b + "attn_v.weight", ty(b + "attn_v.weight"), c.dim, kv_dim, sd, 0, s, ++stream,
               pool);
    if (a->qkv_bias) {
      add_tensor(m, b + "attn_q.bias", DType::F32, c.dim, 1, sd, 0, s, ++stream, pool);
      add_tensor(m, b + "attn_k.bias", DType::F32, kv_dim, 1, sd, 0, s, ++stream, pool);
      add_tensor(m, b + "attn_v.bias", DType::F32, kv_dim, 1, sd, 0, s, ++stream, pool);
    }
    add_tensor(m, b + "attn_output.weight", ty(b + "attn_output.weight"), c.dim, c.dim, sd, 0, s,
               ++stream, pool);
    add_tensor(m, b + "ffn_norm.weight", DType::F32, c.dim, 1, 0, 1.0f, s, ++stream, pool);
    add_tensor(m, b + "ffn_gate.weight", ty(b + "ffn_gate.weight"), c.dim, c.ffn, sd, 0, s,
               ++stream, pool);
    add_tensor(m, b + "ffn_up.weight", ty(b + "ffn_up.weight"), c.dim, c.ffn, sd, 0, s, ++stream,
               pool);
    add_tensor(m, b + "ffn_down.weight", ty(b + "ffn_down.weight"), c.ffn, c.dim, sd, 0, s,
               ++stream, pool);
  }
  return m;
}

}  // namespace brisk::model
