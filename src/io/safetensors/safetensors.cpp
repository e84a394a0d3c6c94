#include "io/safetensors/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/byte_reader.h"
#include "core/error.h"

namespace brisk::safetensors {
namespace {

using nlohmann::json;

// The reference implementation caps the header at 100 MB; a real header is a few hundred KB even
// for models with thousands of tensors.
constexpr uint64_t kMaxHeader = 100'000'000;
// The header is an object of objects holding arrays: depth 3. Anything much deeper is an attack
// on the JSON library's recursion, so it is refused before parsing.
constexpr int kMaxJsonDepth = 16;
constexpr uint64_t kMaxDim = uint64_t{1} << 40;
constexpr uint64_t kMaxElements = uint64_t{1} << 50;

struct TypeRow {
  StType type;
  const char* name;
  size_t size;
};
constexpr TypeRow kTypes[] = {
    {StType::F64, "F64", 8},   {StType::F32, "F32", 4}, {StType::F16, "F16", 2},
    {StType::BF16, "BF16", 2}, {StType::I64, "I64", 8}, {StType::I32, "I32", 4},
    {StType::I16, "I16", 2},   {StType::I8, "I8", 1},   {StType::U8, "U8", 1},
    {StType::BOOL, "BOOL", 1},
};

const TypeRow& row(StType t) {
  for (const auto& r : kTypes)
    if (r.type == t) return r;
  fail("safetensors: invalid dtype enum ", static_cast<int>(t));
}

// Max nesting of [] / {} outside strings; a cheap linear scan.
int json_depth(std::string_view s) {
  int depth = 0, max_depth = 0;
  bool in_str = false, esc = false;
  for (char c : s) {
    if (in_str) {
      if (esc)
        esc = false;
      else if (c == '\\')
        esc = true;
      else if (c == '"')
        in_str = false;
      continue;
    }
    if (c == '"')
      in_str = true;
    else if (c == '{' || c == '[')
      max_depth = std::max(max_depth, ++depth);
    else if (c == '}' || c == ']')
      --depth;
  }
  return max_depth;
}

uint64_t get_u64(const json& j, const std::string& ctx, const std::string& name,
                 const char* field) {
  if (!j.is_number_unsigned())
    fail(ctx, ": tensor '", name, "': ", field, " must be a non-negative integer");
  return j.get<uint64_t>();
}

}  // namespace

const char* st_type_name(StType t) {
  return row(t).name;
}
size_t st_type_size(StType t) {
  return row(t).size;
}

std::optional<StType> st_type_from_name(std::string_view name) {
  for (const auto& r : kTypes)
    if (name == r.name) return r.type;
  return std::nullopt;
}

std::optional<DType> st_type_to_dtype(StType t) {
  switch (t) {
    case StType::F64:
      return DType::F64;
    case StType::F32:
      return DType::F32;
    case StType::F16:
      return DType::F16;
    case StType::BF16:
      return DType::BF16;
    case StType::I64:
      return DType::I64;
    case StType::I32:
      return DType::I32;
    case StType::I16:
      return DType::I16;
    case StType::I8:
      return DType::I8;
    default:
      return std::nullopt;
  }
}

std::optional<StType> st_type_from_dtype(DType t) {
  switch (t) {
    case DType::F64:
      return StType::F64;
    case DType::F32:
      return StType::F32;
    case DType::F16:
      return StType::F16;
    case DType::BF16:
      return StType::BF16;
    case DType::I64:
      return StType::I64;
    case DType::I32:
      return StType::I32;
    case DType::I16:
      return StType::I16;
    case DType::I8:
      return StType::I8;
    default:
      return std::nullopt;
  }
}

int64_t StTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- reader ---------------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.file_ = MappedFile::open(path);
  f.parse_all(f.file_->data(), f.file_->size());
  return f;
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  SafetensorsFile f;
  f.path_ = name;
  f.parse_all(data, size);
  return f;
}

const StTensor* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void SafetensorsFile::parse_all(const uint8_t* data, size_t size) {
  const std::string& ctx = path_;
  ByteReader r(data, size, ctx);
  const uint64_t n = r.read<uint64_t>("header length");
  if (n < 2 || n > kMaxHeader)
    fail(ctx, ": safetensors header length ", n, " is not in [2, ", kMaxHeader, "]");
  if (n > r.remaining())
    fail(ctx, ": safetensors header length ", n, " past end of file (", size, " bytes)");
  std::string_view text = r.read_bytes(static_cast<size_t>(n), "header");
  data_offset_ = 8 + n;
  const uint64_t data_size = size - data_offset_;

  if (json_depth(text) > kMaxJsonDepth)
    fail(ctx, ": safetensors header nested deeper than ", kMaxJsonDepth, " levels");
  // nlohmann keeps the last of duplicate keys silently; the callback sees every top-level key.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json h = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (h.is_discarded()) fail(ctx, ": safetensors header is not valid JSON");
  if (!h.is_object()) fail(ctx, ": safetensors header is not a JSON object");
  if (!duplicate.empty())
    fail(ctx, ": duplicate tensor name '", duplicate, "' in safetensors header");

  for (const auto& [name, v] : h.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail(ctx, ": __metadata__ is not a JSON object");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) fail(ctx, ": __metadata__ '", k, "' is not a string");
        metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail(ctx, ": tensor '", name, "': entry is not a JSON object");
    StTensor t;
    t.name = name;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail(ctx, ": tensor '", name, "': missing dtype");
    auto st = st_type_from_name(dt->get_ref<const std::string&>());
    if (!st) fail(ctx, ": tensor '", name, "': unsupported dtype '", dt->get<std::string>(), "'");
    t.type = *st;

    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail(ctx, ": tensor '", name, "': missing shape");
    if (sh->size() > 8) fail(ctx, ": tensor '", name, "': ", sh->size(), " dimensions (max 8)");
    uint64_t n_el = 1;
    for (const auto& d : *sh) {
      uint64_t dim = get_u64(d, ctx, name, "shape entry");
      if (dim > kMaxDim) fail(ctx, ": tensor '", name, "': dimension ", dim, " is out of range");
      if (dim != 0 && n_el > kMaxElements / dim)
        fail(ctx, ": tensor '", name, "': element count overflows");
      n_el *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }

    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail(ctx, ": tensor '", name, "': data_offsets must be [begin, end]");
    t.begin = get_u64((*off)[0], ctx, name, "data_offsets");
    t.end = get_u64((*off)[1], ctx, name, "data_offsets");
    if (t.begin > t.end)
      fail(ctx, ": tensor '", name, "': data_offsets [", t.begin, ", ", t.end, ") reversed");
    if (t.end > data_size)
      fail(ctx, ": tensor '", name, "': data [", t.begin, ", ", t.end,
           ") past end of data section (", data_size, " bytes)");
    const uint64_t expect = n_el * st_type_size(t.type);
    if (t.end - t.begin != expect)
      fail(ctx, ": tensor '", name, "': data_offsets span ", t.end - t.begin,
           " bytes, shape and dtype need ", expect);
    t.nbytes = static_cast<size_t>(expect);
    t.data = data + data_offset_ + t.begin;
    tensors_.push_back(std::move(t));
  }

  // Overlap check on a copy sorted by start; empty tensors overlap nothing.
  std::vector<const StTensor*> by_begin;
  for (const auto& t : tensors_)
    if (t.nbytes) by_begin.push_back(&t);
  std::sort(by_begin.begin(), by_begin.end(),
            [](const StTensor* a, const StTensor* b) { return a->begin < b->begin; });
  for (size_t k = 1; k < by_begin.size(); ++k)
    if (by_begin[k]->begin < by_begin[k - 1]->end)
      fail(ctx, ": tensors '", by_begin[k - 1]->name, "' and '", by_begin[k]->name, "' overlap");
}

// ---- writer ---------------------------------------------------------------------------------

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::add_tensor(const std::string& name, StType type,
                                   const std::vector<int64_t>& shape, const void* data,
                                   size_t nbytes) {
  check(name != "__metadata__" && !name.empty(), "safetensors writer: invalid tensor name '", name,
        "'");
  uint64_t n_el = 1;
  for (int64_t d : shape) {
    check(d >= 0, "safetensors writer: tensor '", name, "': negative dimension");
    n_el *= static_cast<uint64_t>(d);
  }
  check(n_el * st_type_size(type) == nbytes, "safetensors writer: tensor '", name, "': ", nbytes,
        " bytes given, shape needs ", n_el * st_type_size(type));
  for (const auto& t : tensors_)
    check(t.name != name, "safetensors writer: duplicate tensor '", name, "'");
  tensors_.push_back({name, type, shape, data, nbytes});
}

void SafetensorsWriter::write(const std::string& path) const {
  std::vector<const Pending*> order;
  for (const auto& t : tensors_) order.push_back(&t);
  // Largest element first, then by name: the layout does not depend on the order of add_tensor.
  std::sort(order.begin(), order.end(), [](const Pending* a, const Pending* b) {
    if (st_type_size(a->type) != st_type_size(b->type))
      return st_type_size(a->type) > st_type_size(b->type);
    return a->name < b->name;
  });
  // nlohmann's default object is a sorted map; the data order is ours, the key order is not
  // significant to any reader.
  json h = json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  uint64_t off = 0;
  for (const Pending* t : order) {
    h[t->name] = {{"dtype", st_type_name(t->type)},
                  {"shape", t->shape},
                  {"data_offsets", {off, off + t->nbytes}}};
    off += t->nbytes;
  }
  std::string text = h.dump();
  // 8 + header length is a multiple of 8, so the data section is 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  AtomicFileWriter w(path);
  const uint64_t n = text.size();
  w.write(&n, 8);
  w.write(text.data(), text.size());
  for (const Pending* t : order) w.write(t->data, t->nbytes);
  w.commit();
}

}  // namespace brisk::safetensors
