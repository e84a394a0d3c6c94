#include "io/llama2c/llama2c.h"

#include "core/byte_reader.h"
#include "core/error.h"

namespace brisk::llama2c {
namespace {

struct Header {
  int64_t dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
  bool shared_classifier;
};

void check_dim(const std::string& name, const char* field, int64_t v, int64_t hi) {
  if (v < 1 || v > hi)
    fail(name, ": llama2.c header ", field, " = ", v, " is out of range [1, ", hi, "]");
}

Header read_header(ByteReader& r, const std::string& name) {
  Header h;
  h.dim = r.read<int32_t>("llama2.c header dim");
  h.hidden = r.read<int32_t>("llama2.c header hidden_dim");
  h.n_layers = r.read<int32_t>("llama2.c header n_layers");
  h.n_heads = r.read<int32_t>("llama2.c header n_heads");
  h.n_kv_heads = r.read<int32_t>("llama2.c header n_kv_heads");
  int64_t vocab = r.read<int32_t>("llama2.c header vocab_size");
  h.seq_len = r.read<int32_t>("llama2.c header seq_len");
  h.shared_classifier = vocab > 0;
  h.vocab = vocab < 0 ? -vocab : vocab;  // int64: -INT32_MIN does not overflow
  // Limits far above any llama2.c model but low enough that every size below fits in 64 bits.
  check_dim(name, "dim", h.dim, 1 << 16);
  check_dim(name, "hidden_dim", h.hidden, 1 << 18);
  check_dim(name, "n_layers", h.n_layers, 4096);
  check_dim(name, "n_heads", h.n_heads, h.dim);
  check_dim(name, "n_kv_heads", h.n_kv_heads, h.n_heads);
  check_dim(name, "vocab_size", h.vocab, 1 << 22);
  check_dim(name, "seq_len", h.seq_len, 1 << 24);
  if (h.dim % h.n_heads != 0)
    fail(name, ": llama2.c header dim ", h.dim, " is not a multiple of n_heads ", h.n_heads);
  if (h.n_heads % h.n_kv_heads != 0)
    fail(name, ": llama2.c header n_heads ", h.n_heads, " is not a multiple of n_kv_heads ",
         h.n_kv_heads);
  if ((h.dim / h.n_heads) % 2 != 0)
    fail(name, ": llama2.c head size ", h.dim / h.n_heads, " is odd (RoPE needs pairs)");
  return h;
}

}  // namespace

io::ModelFile parse(const uint8_t* data, size_t size, const std::string& name) {
  ByteReader r(data, size, name);
  const Header h = read_header(r, name);
  const uint64_t dim = h.dim, hid = h.hidden, L = h.n_layers, V = h.vocab;
  const uint64_t head = dim / h.n_heads, kv_dim = head * h.n_kv_heads;
  // Floats the header implies, in file order; checked against the size before any view is made.
  const uint64_t n_floats = V * dim + L * dim + L * dim * dim + 2 * L * kv_dim * dim +
                            L * dim * dim + L * dim + 3 * L * hid * dim + dim +
                            2 * (uint64_t(h.seq_len) * head / 2) +
                            (h.shared_classifier ? 0 : V * dim);
  const uint64_t expect = 28 + 4 * n_floats;
  if (size != expect)
    fail(name, ": llama2.c checkpoint is ", size, " bytes but its header (dim ", h.dim, ", hidden ",
         h.hidden, ", layers ", h.n_layers, ", heads ", h.n_heads, "/", h.n_kv_heads, ", vocab ",
         h.vocab, ", seq_len ", h.seq_len, ") implies ", expect);

  io::ModelFile m;
  m.path = name;
  m.format = "llama2c";
  m.set("general.architecture", gguf::Value::string("llama"));
  m.set("general.name", gguf::Value::string("llama2.c"));
  m.set("llama.context_length", gguf::Value::u32(static_cast<uint32_t>(h.seq_len)));
  m.set("llama.embedding_length", gguf::Value::u32(static_cast<uint32_t>(dim)));
  m.set("llama.block_count", gguf::Value::u32(static_cast<uint32_t>(L)));
  m.set("llama.feed_forward_length", gguf::Value::u32(static_cast<uint32_t>(hid)));
  m.set("llama.attention.head_count", gguf::Value::u32(static_cast<uint32_t>(h.n_heads)));
  m.set("llama.attention.head_count_kv", gguf::Value::u32(static_cast<uint32_t>(h.n_kv_heads)));
  m.set("llama.attention.layer_norm_rms_epsilon", gguf::Value::f32(1e-5f));
  m.set("llama.rope.freq_base", gguf::Value::f32(10000.0f));
  m.set("llama.rope.dimension_count", gguf::Value::u32(static_cast<uint32_t>(head)));
  m.set("llama.vocab_size", gguf::Value::u32(static_cast<uint32_t>(V)));
  m.set("general.file_type", gguf::Value::u32(0));  // all f32

  // Per-layer arrays are stored layer-major: array k of layer l starts at base + l * stride.
  uint64_t pos = 28;
  auto region = [&](uint64_t n_floats_total) {
    const uint64_t at = pos;
    pos += 4 * n_floats_total;
    return at;
  };
  auto add = [&](const std::string& tname, std::vector<int64_t> shape, uint64_t at) {
    gguf::TensorInfo t;
    t.name = tname;
    t.type = DType::F32;
    t.shape = std::move(shape);
    t.nbytes = static_cast<size_t>(4 * t.n_elements());
    t.offset = at;  // byte offset in the checkpoint (there is no GGUF data section)
    t.data = data + at;
    m.tensors.push_back(std::move(t));
  };
  const int64_t d = h.dim, f = h.hidden, kv = static_cast<int64_t>(kv_dim);
  const uint64_t tok = region(V * dim);
  const uint64_t rms_att = region(L * dim), wq = region(L * dim * dim),
                 wk = region(L * kv_dim * dim), wv = region(L * kv_dim * dim),
                 wo = region(L * dim * dim), rms_ffn = region(L * dim), w1 = region(L * hid * dim),
                 w2 = region(L * dim * hid), w3 = region(L * hid * dim), rms_final = region(dim);
  region(2 * (uint64_t(h.seq_len) * head / 2));  // freq_cis_real, freq_cis_imag
  const uint64_t wcls = h.shared_classifier ? tok : region(V * dim);

  // ggml shapes: {in, out}; llama2.c matrices are (out, in) row-major, the same bytes.
  add("token_embd.weight", {d, h.vocab}, tok);
  for (uint64_t l = 0; l < L; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {d}, rms_att + 4 * l * dim);
    add(p + "attn_q.weight", {d, d}, wq + 4 * l * dim * dim);
    add(p + "attn_k.weight", {d, kv}, wk + 4 * l * kv_dim * dim);
    add(p + "attn_v.weight", {d, kv}, wv + 4 * l * kv_dim * dim);
    add(p + "attn_output.weight", {d, d}, wo + 4 * l * dim * dim);
    add(p + "ffn_norm.weight", {d}, rms_ffn + 4 * l * dim);
    add(p + "ffn_gate.weight", {d, f}, w1 + 4 * l * hid * dim);
    add(p + "ffn_down.weight", {f, d}, w2 + 4 * l * dim * hid);
    add(p + "ffn_up.weight", {d, f}, w3 + 4 * l * hid * dim);
  }
  add("output_norm.weight", {d}, rms_final);
  if (!h.shared_classifier) add("output.weight", {d, h.vocab}, wcls);
  return m;
}

io::ModelFile load(const std::string& path) {
  auto map = MappedFile::open(path);
  io::ModelFile m = parse(map->data(), map->size(), path);
  m.mappings.push_back(std::move(map));
  return m;
}

}  // namespace brisk::llama2c
