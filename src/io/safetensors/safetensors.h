// safetensors reader and writer.
//
// File layout: u64 little-endian header length N, N bytes of JSON (an object mapping tensor name ->
// {"dtype", "shape", "data_offsets": [begin, end)} plus an optional "__metadata__" object of
// string -> string), then the data section; offsets are relative to the start of the data section.
//
// Reader: validates everything before handing out a pointer (header length sane and in bounds,
// JSON well-formed and shallow, no duplicate names, each tensor's byte range in bounds, equal to
// prod(shape) * element size, no two ranges overlapping). Tensors are views into the map.
// Writer: sorts tensors by element size (largest first, then by name) so that every tensor starts
// at a multiple of its element size, pads the header with spaces to a multiple of 8 bytes, leaves
// no holes in the data section (strict readers reject holes) and writes atomically. Reading back
// what it wrote gives the same names, dtypes, shapes and bytes.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace brisk::safetensors {

enum class StType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* st_type_name(StType t);  // "F32", "BF16", ...
size_t st_type_size(StType t);
std::optional<StType> st_type_from_name(std::string_view name);
// The brisk storage type with the same bits; nullopt for U8 and BOOL (read as raw bytes only).
std::optional<DType> st_type_to_dtype(StType t);
std::optional<StType> st_type_from_dtype(DType t);

struct StTensor {
  std::string name;
  StType type = StType::F32;
  std::vector<int64_t> shape;   // row-major as in the file: shape.back() is contiguous
  uint64_t begin = 0, end = 0;  // [begin, end) relative to the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t n_elements() const;
};

class SafetensorsFile {
 public:
  // Opens and validates `path`; throws brisk::Error naming the file and the fault.
  static SafetensorsFile open(const std::string& path);
  // Parses an in-memory buffer (fuzz target, tests); `name` is used in messages.
  static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& name);

  const std::string& path() const { return path_; }
  const std::vector<StTensor>& tensors() const { return tensors_; }  // in header order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const StTensor* find(std::string_view name) const;
  uint64_t data_offset() const { return data_offset_; }
  std::shared_ptr<MappedFile> mapping() const { return file_; }

 private:
  void parse_all(const uint8_t* data, size_t size);
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint64_t data_offset_ = 0;
  std::vector<StTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  // `data` must hold prod(shape) * st_type_size(type) bytes and outlive write().
  void add_tensor(const std::string& name, StType type, const std::vector<int64_t>& shape,
                  const void* data, size_t nbytes);
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    StType type;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<Pending> tensors_;
};

}  // namespace brisk::safetensors
