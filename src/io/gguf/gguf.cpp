#include "io/gguf/gguf.h"

#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/byte_reader.h"
#include "core/error.h"

namespace brisk::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;        // nested arrays deeper than this are a bomb, not a model
constexpr int kMaxDims = 4;              // ggml tensors have at most 4 dimensions

size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::BOOL:
      return 1;
    case ValueType::UINT16:
    case ValueType::INT16:
      return 2;
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::FLOAT32:
      return 4;
    case ValueType::UINT64:
    case ValueType::INT64:
    case ValueType::FLOAT64:
      return 8;
    case ValueType::STRING:
      return 8;  // at least the length prefix
    case ValueType::ARRAY:
      return 12;  // at least type + count
  }
  return 0;
}

bool valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(ValueType::FLOAT64);
}

std::string read_string(ByteReader& r, const char* what) {
  uint64_t n = r.read<uint64_t>(what);
  if (n > r.remaining())
    fail(r.context(), ": ", what, " length ", n, " at offset ", r.pos() - 8, " past end of file");
  return std::string(r.read_bytes(static_cast<size_t>(n), what));
}

Value read_value(ByteReader& r, ValueType t, const std::string& key, int depth) {
  Value v;
  v.type = t;
  switch (t) {
    case ValueType::UINT8:
      v.u = r.read<uint8_t>("u8 value");
      break;
    case ValueType::INT8:
      v.i = r.read<int8_t>("i8 value");
      break;
    case ValueType::UINT16:
      v.u = r.read<uint16_t>("u16 value");
      break;
    case ValueType::INT16:
      v.i = r.read<int16_t>("i16 value");
      break;
    case ValueType::UINT32:
      v.u = r.read<uint32_t>("u32 value");
      break;
    case ValueType::INT32:
      v.i = r.read<int32_t>("i32 value");
      break;
    case ValueType::UINT64:
      v.u = r.read<uint64_t>("u64 value");
      break;
    case ValueType::INT64:
      v.i = r.read<int64_t>("i64 value");
      break;
    case ValueType::FLOAT32:
      v.f = r.read<float>("f32 value");
      break;
    case ValueType::FLOAT64:
      v.f = r.read<double>("f64 value");
      break;
    case ValueType::BOOL: {
      uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) fail(r.context(), ": metadata '", key, "': bool value ", int(b), " is not 0 or 1");
      v.u = b;
      break;
    }
    case ValueType::STRING:
      v.str = read_string(r, "string value");
      break;
    case ValueType::ARRAY: {
      if (depth >= kMaxArrayDepth)
        fail(r.context(), ": metadata '", key, "': arrays nested deeper than ", kMaxArrayDepth);
      uint32_t et = r.read<uint32_t>("array element type");
      if (!valid_type(et))
        fail(r.context(), ": metadata '", key, "': unknown array element type ", et);
      v.elem_type = static_cast<ValueType>(et);
      uint64_t n = r.read<uint64_t>("array length");
      // Every element takes at least scalar_size bytes: a count that cannot fit in the rest of the
      // file is rejected before we allocate anything.
      if (n > r.remaining() / scalar_size(v.elem_type))
        fail(r.context(), ": metadata '", key, "': array of ", n, " elements past end of file");
      v.arr.reserve(static_cast<size_t>(n));
      for (uint64_t k = 0; k < n; ++k) v.arr.push_back(read_value(r, v.elem_type, key, depth + 1));
      break;
    }
  }
  return v;
}

void write_value(AtomicFileWriter& w, const Value& v);

template <class T>
void put(AtomicFileWriter& w, T x) {
  w.write(&x, sizeof(T));
}

void put_string(AtomicFileWriter& w, const std::string& s) {
  put<uint64_t>(w, s.size());
  w.write(s.data(), s.size());
}

void write_value(AtomicFileWriter& w, const Value& v) {
  switch (v.type) {
    case ValueType::UINT8:
      put<uint8_t>(w, static_cast<uint8_t>(v.u));
      break;
    case ValueType::INT8:
      put<int8_t>(w, static_cast<int8_t>(v.i));
      break;
    case ValueType::UINT16:
      put<uint16_t>(w, static_cast<uint16_t>(v.u));
      break;
    case ValueType::INT16:
      put<int16_t>(w, static_cast<int16_t>(v.i));
      break;
    case ValueType::UINT32:
      put<uint32_t>(w, static_cast<uint32_t>(v.u));
      break;
    case ValueType::INT32:
      put<int32_t>(w, static_cast<int32_t>(v.i));
      break;
    case ValueType::UINT64:
      put<uint64_t>(w, v.u);
      break;
    case ValueType::INT64:
      put<int64_t>(w, v.i);
      break;
    case ValueType::FLOAT32:
      put<float>(w, static_cast<float>(v.f));
      break;
    case ValueType::FLOAT64:
      put<double>(w, v.f);
      break;
    case ValueType::BOOL:
      put<uint8_t>(w, v.u ? 1 : 0);
      break;
    case ValueType::STRING:
      put_string(w, v.str);
      break;
    case ValueType::ARRAY:
      put<uint32_t>(w, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(w, v.arr.size());
      for (const auto& e : v.arr) write_value(w, e);
      break;
  }
}

uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

}  // namespace

const char* value_type_name(ValueType t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "?";
}

// ---- Value ----------------------------------------------------------------------------------

Value Value::u8(uint8_t x) {
  Value v;
  v.type = ValueType::UINT8;
  v.u = x;
  return v;
}
Value Value::i8(int8_t x) {
  Value v;
  v.type = ValueType::INT8;
  v.i = x;
  return v;
}
Value Value::u16(uint16_t x) {
  Value v;
  v.type = ValueType::UINT16;
  v.u = x;
  return v;
}
Value Value::i16(int16_t x) {
  Value v;
  v.type = ValueType::INT16;
  v.i = x;
  return v;
}
Value Value::u32(uint32_t x) {
  Value v;
  v.type = ValueType::UINT32;
  v.u = x;
  return v;
}
Value Value::i32(int32_t x) {
  Value v;
  v.type = ValueType::INT32;
  v.i = x;
  return v;
}
Value Value::u64(uint64_t x) {
  Value v;
  v.type = ValueType::UINT64;
  v.u = x;
  return v;
}
Value Value::i64(int64_t x) {
  Value v;
  v.type = ValueType::INT64;
  v.i = x;
  return v;
}
Value Value::f32(float x) {
  Value v;
  v.type = ValueType::FLOAT32;
  v.f = x;
  return v;
}
Value Value::f64(double x) {
  Value v;
  v.type = ValueType::FLOAT64;
  v.f = x;
  return v;
}
Value Value::boolean(bool x) {
  Value v;
  v.type = ValueType::BOOL;
  v.u = x ? 1 : 0;
  return v;
}
Value Value::string(std::string x) {
  Value v;
  v.type = ValueType::STRING;
  v.str = std::move(x);
  return v;
}
Value Value::array(ValueType elem, std::vector<Value> items) {
  Value v;
  v.type = ValueType::ARRAY;
  v.elem_type = elem;
  v.arr = std::move(items);
  return v;
}
Value Value::strings(const std::vector<std::string>& items) {
  std::vector<Value> a;
  a.reserve(items.size());
  for (const auto& s : items) a.push_back(string(s));
  return array(ValueType::STRING, std::move(a));
}
Value Value::f32s(const std::vector<float>& items) {
  std::vector<Value> a;
  a.reserve(items.size());
  for (float x : items) a.push_back(f32(x));
  return array(ValueType::FLOAT32, std::move(a));
}
Value Value::i32s(const std::vector<int32_t>& items) {
  std::vector<Value> a;
  a.reserve(items.size());
  for (int32_t x : items) a.push_back(i32(x));
  return array(ValueType::INT32, std::move(a));
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::UINT16:
    case ValueType::INT16:
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::UINT64:
    case ValueType::INT64:
      return true;
    default:
      return false;
  }
}

int64_t Value::as_int(std::string_view key) const {
  switch (type) {
    case ValueType::UINT8:
    case ValueType::UINT16:
    case ValueType::UINT32:
    case ValueType::UINT64:
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("metadata '", key, "': value ", u, " out of range");
      return static_cast<int64_t>(u);
    case ValueType::INT8:
    case ValueType::INT16:
    case ValueType::INT32:
    case ValueType::INT64:
      return i;
    case ValueType::BOOL:
      return static_cast<int64_t>(u);
    default:
      fail("metadata '", key, "': expected an integer, found ", value_type_name(type));
  }
}

double Value::as_float(std::string_view key) const {
  if (is_float()) return f;
  if (is_integer()) return static_cast<double>(as_int(key));
  fail("metadata '", key, "': expected a number, found ", value_type_name(type));
}

bool Value::as_bool(std::string_view key) const {
  if (type == ValueType::BOOL) return u != 0;
  if (is_integer()) return as_int(key) != 0;
  fail("metadata '", key, "': expected a bool, found ", value_type_name(type));
}

const std::string& Value::as_string(std::string_view key) const {
  if (type != ValueType::STRING)
    fail("metadata '", key, "': expected a string, found ", value_type_name(type));
  return str;
}

const std::vector<Value>& Value::as_array(std::string_view key) const {
  if (type != ValueType::ARRAY)
    fail("metadata '", key, "': expected an array, found ", value_type_name(type));
  return arr;
}

std::string Value::to_display(size_t max_items) const {
  switch (type) {
    case ValueType::STRING: {
      std::string s = str.size() > 80 ? str.substr(0, 77) + "..." : str;
      for (char& c : s)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
      return "\"" + s + "\"";
    }
    case ValueType::ARRAY: {
      std::string s = str_cat("[", value_type_name(elem_type), " x ", arr.size(), "]");
      if (elem_type != ValueType::ARRAY && !arr.empty()) {
        s += " {";
        for (size_t k = 0; k < arr.size() && k < max_items; ++k)
          s += (k ? ", " : "") + arr[k].to_display(0);
        if (arr.size() > max_items) s += ", ...";
        s += "}";
      }
      return s;
    }
    case ValueType::BOOL:
      return u ? "true" : "false";
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      return str_cat(f);
    default:
      return is_integer() ? str_cat(as_int("")) : "?";
  }
}

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- reader ---------------------------------------------------------------------------------

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.path_ = path;
  f.file_ = MappedFile::open(path);
  f.parse_all(f.file_->data(), f.file_->size());
  return f;
}

GgufFile GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  GgufFile f;
  f.path_ = name;
  f.parse_all(data, size);
  return f;
}

void GgufFile::parse_all(const uint8_t* data, size_t size) {
  ByteReader r(data, size, path_);
  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic) fail(path_, ": not a GGUF file (bad magic)");
  version_ = r.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    fail(path_, ": unsupported GGUF version ", version_, " (supported: 2, 3)");
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // A KV pair takes >= 8 (key len) + 4 (type) + 1 bytes; a tensor info >= 8 + 4 + 4 + 8 bytes.
  if (n_kv > r.remaining() / 13) fail(path_, ": metadata count ", n_kv, " exceeds file size");
  if (n_tensors > r.remaining() / 24)
    fail(path_, ": tensor count ", n_tensors, " exceeds file size");

  kv_.reserve(static_cast<size_t>(n_kv));
  std::unordered_set<std::string> keys;
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = read_string(r, "metadata key");
    uint32_t t = r.read<uint32_t>("metadata value type");
    if (!valid_type(t)) fail(path_, ": metadata '", key, "': unknown value type ", t);
    Value v = read_value(r, static_cast<ValueType>(t), key, 0);
    if (!keys.insert(key).second) fail(path_, ": duplicate metadata key '", key, "'");
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const Value* a = find("general.alignment")) {
    int64_t al = 0;
    try {
      al = a->as_int("general.alignment");
    } catch (const Error& e) {
      fail(path_, ": ", e.what());  // as_int does not know the file name
    }
    if (al <= 0 || al > (1 << 20) || (al & (al - 1)) != 0)
      fail(path_, ": general.alignment ", al, " is not a power of two in [1, 2^20]");
    alignment_ = static_cast<uint64_t>(al);
  }

  tensors_.reserve(static_cast<size_t>(n_tensors));
  std::unordered_set<std::string> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo ti;
    ti.name = read_string(r, "tensor name");
    uint32_t nd = r.read<uint32_t>("tensor dimension count");
    if (nd == 0 || nd > kMaxDims)
      fail(path_, ": tensor '", ti.name, "': ", nd, " dimensions (expected 1..", kMaxDims, ")");
    int64_t n_el = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      uint64_t dim = r.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > (uint64_t{1} << 40))
        fail(path_, ": tensor '", ti.name, "': dimension ", d, " = ", dim, " is out of range");
      if (n_el > (int64_t{1} << 50) / static_cast<int64_t>(dim))
        fail(path_, ": tensor '", ti.name, "': element count overflows");
      n_el *= static_cast<int64_t>(dim);
      ti.shape.push_back(static_cast<int64_t>(dim));
    }
    uint32_t type = r.read<uint32_t>("tensor type");
    const DTypeLayout* layout = find_dtype_layout(type);
    if (!layout) fail(path_, ": tensor '", ti.name, "': unknown tensor type id ", type);
    ti.type = layout->type;
    if (ti.shape[0] % layout->block_size != 0)
      fail(path_, ": tensor '", ti.name, "': row length ", ti.shape[0],
           " is not a multiple of the ", layout->name, " block size ", layout->block_size);
    ti.nbytes = static_cast<size_t>(n_el / layout->block_size) * layout->type_size;
    ti.offset = r.read<uint64_t>("tensor offset");
    if (ti.offset % alignment_ != 0)
      fail(path_, ": tensor '", ti.name, "': offset ", ti.offset, " is not aligned to ",
           alignment_);
    if (!names.insert(ti.name).second) fail(path_, ": duplicate tensor name '", ti.name, "'");
    tensors_.push_back(std::move(ti));
  }

  data_offset_ = align_up(r.pos(), alignment_);
  if (tensors_.empty()) return;  // vocab-only files may end right after the header
  if (data_offset_ > size) fail(path_, ": tensor data section starts past end of file");
  const uint64_t data_size = size - data_offset_;
  for (auto& ti : tensors_) {
    if (ti.offset > data_size || ti.nbytes > data_size - ti.offset)
      fail(path_, ": tensor '", ti.name, "' data [", ti.offset, ", ", ti.offset + ti.nbytes,
           ") past end of data section (", data_size, " bytes)");
    ti.data = data + data_offset_ + ti.offset;
  }
}

const Value* GgufFile::find(std::string_view key) const {
  for (const auto& [k, v] : kv_)
    if (k == key) return &v;
  return nullptr;
}

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return v->as_int(key);
}
std::optional<double> GgufFile::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return v->as_float(key);
}
std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return v->as_bool(key);
}
std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return v->as_string(key);
}

// ---- writer ---------------------------------------------------------------------------------

void GgufWriter::set(const std::string& key, Value v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::remove(const std::string& key) {
  std::erase_if(kv_, [&](const auto& p) { return p.first == key; });
}

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                            const void* data, size_t nbytes) {
  check(!shape.empty() && shape.size() <= kMaxDims, "tensor '", name, "': bad rank ", shape.size());
  int64_t rows = 1;
  for (size_t d = 1; d < shape.size(); ++d) rows *= shape[d];
  size_t expect = row_bytes(type, shape[0]) * static_cast<size_t>(rows);
  check(expect == nbytes, "tensor '", name, "': ", nbytes, " bytes given, shape needs ", expect);
  for (const auto& t : tensors_) check(t.name != name, "duplicate tensor name '", name, "'");
  tensors_.push_back({name, type, shape, data, nbytes, {}});
}

void GgufWriter::add_tensor_fn(const std::string& name, DType type,
                               const std::vector<int64_t>& shape, size_t nbytes,
                               std::function<void(uint8_t* dst)> fill) {
  check(static_cast<bool>(fill), "tensor '", name, "': no fill function");
  add_tensor(name, type, shape, nullptr, nbytes);
  tensors_.back().fill = std::move(fill);
}

void GgufWriter::copy_metadata_from(const GgufFile& f) {
  for (const auto& [k, v] : f.metadata()) set(k, v);
}

void GgufWriter::write(const std::string& path, uint32_t version) const {
  check(version == 2 || version == 3, "GGUF writer: unsupported version ", version);
  uint64_t alignment = 32;
  for (const auto& [k, v] : kv_)
    if (k == "general.alignment") alignment = static_cast<uint64_t>(v.as_int(k));
  check(alignment > 0 && (alignment & (alignment - 1)) == 0,
        "general.alignment must be a power of 2");

  AtomicFileWriter w(path);
  put<uint32_t>(w, kMagic);
  put<uint32_t>(w, version);
  put<uint64_t>(w, tensors_.size());
  put<uint64_t>(w, kv_.size());
  for (const auto& [k, v] : kv_) {
    put_string(w, k);
    put<uint32_t>(w, static_cast<uint32_t>(v.type));
    write_value(w, v);
  }
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    put_string(w, t.name);
    put<uint32_t>(w, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put<uint64_t>(w, static_cast<uint64_t>(d));
    put<uint32_t>(w, static_cast<uint32_t>(t.type));
    put<uint64_t>(w, off);
    off = align_up(off + t.nbytes, alignment);
  }
  w.write_zeros(align_up(w.offset(), alignment) - w.offset());
  const uint64_t base = w.offset();
  std::vector<uint8_t> buf;  // one computed tensor at a time
  for (const auto& t : tensors_) {
    if (t.fill) {
      buf.assign(t.nbytes, 0);
      t.fill(buf.data());
      w.write(buf.data(), t.nbytes);
    } else {
      w.write(t.data, t.nbytes);
    }
    w.write_zeros(align_up(w.offset() - base, alignment) - (w.offset() - base));
  }
  w.commit();
}

}  // namespace brisk::gguf
