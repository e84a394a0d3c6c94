// GGUF v2/v3 reader and writer.
//
// Reader: parses the header, every metadata value type (nested arrays included) and the tensor
// table from a memory map, bounds-checking every read; tensors are views into the map (no copy).
// A vocab-only file (zero tensors) is valid. Any fault is a brisk::Error naming the file and the
// field ("model.gguf: tensor 'blk.0.attn_q.weight' data [off, off+n) past end of file (size)").
//
// Writer: collects metadata (insertion order kept) and tensors (pointers that must outlive
// write()), then writes header, KV pairs, tensor infos, padding and aligned data atomically.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace brisk::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* value_type_name(ValueType t);

// A metadata value. Scalars keep their declared type (so a written file round-trips bit for bit).
struct Value {
  ValueType type = ValueType::UINT32;
  uint64_t u = 0;  // unsigned integers and bool
  int64_t i = 0;   // signed integers
  double f = 0;    // floats (FLOAT32 values are exactly representable)
  std::string str;
  ValueType elem_type = ValueType::UINT8;  // for ARRAY
  std::vector<Value> arr;                  // for ARRAY

  static Value u8(uint8_t v);
  static Value i8(int8_t v);
  static Value u16(uint16_t v);
  static Value i16(int16_t v);
  static Value u32(uint32_t v);
  static Value i32(int32_t v);
  static Value u64(uint64_t v);
  static Value i64(int64_t v);
  static Value f32(float v);
  static Value f64(double v);
  static Value boolean(bool v);
  static Value string(std::string v);
  static Value array(ValueType elem, std::vector<Value> items);
  static Value strings(const std::vector<std::string>& items);
  static Value f32s(const std::vector<float>& items);
  static Value i32s(const std::vector<int32_t>& items);

  bool is_integer() const;
  bool is_float() const { return type == ValueType::FLOAT32 || type == ValueType::FLOAT64; }
  // Checked conversions; `key` names the field in the error message.
  int64_t as_int(std::string_view key) const;
  double as_float(std::string_view key) const;  // accepts integers too
  bool as_bool(std::string_view key) const;
  const std::string& as_string(std::string_view key) const;
  const std::vector<Value>& as_array(std::string_view key) const;
  std::string to_display(size_t max_items = 8) const;  // for `brisk inspect`
};

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) dimension
  uint64_t offset = 0;         // relative to the start of the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t n_elements() const;
};

class GgufFile {
 public:
  // Opens and parses `path`; throws brisk::Error on any fault.
  static GgufFile open(const std::string& path);
  // Parses an in-memory buffer (used by the fuzz target); `name` is used in messages.
  static GgufFile parse(const uint8_t* data, size_t size, const std::string& name);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  uint64_t data_offset() const { return data_offset_; }

  const Value* find(std::string_view key) const;
  const TensorInfo* find_tensor(std::string_view name) const;
  // Typed getters: nullopt when absent, Error when present with an incompatible type.
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  // Keeps the mapping alive for views taken from tensors().
  std::shared_ptr<MappedFile> mapping() const { return file_; }

 private:
  void parse_all(const uint8_t* data, size_t size);
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<TensorInfo> tensors_;
};

class GgufWriter {
 public:
  void set(const std::string& key, Value v);  // replaces an existing key in place
  void remove(const std::string& key);
  // `data` must hold row_bytes(type, shape[0]) * prod(shape[1..]) bytes and outlive write().
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                  const void* data, size_t nbytes);
  // A tensor whose nbytes bytes are computed at write time by fill(dst), one such tensor in memory
  // at a time (writers that derive tensors, e.g. `brisk lora merge`, need not hold them all).
  void add_tensor_fn(const std::string& name, DType type, const std::vector<int64_t>& shape,
                     size_t nbytes, std::function<void(uint8_t* dst)> fill);
  // Copies the metadata (and optionally the tensors, as views) of an existing file.
  void copy_metadata_from(const GgufFile& f);
  void write(const std::string& path, uint32_t version = 3) const;

 private:
  struct PendingTensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
    std::function<void(uint8_t*)> fill;  // set: data is null, bytes come from fill
  };
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace brisk::gguf
