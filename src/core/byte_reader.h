// Bounds-checked little-endian cursor over a byte range. Every parser reads through it, so a
// truncated or lying file becomes a brisk::Error ("<file>: truncated at offset N reading <what>")
// instead of an out-of-bounds read.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/error.h"

namespace brisk {

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string context)
      : data_(data), size_(size), context_(std::move(context)) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& context() const { return context_; }
  const uint8_t* data() const { return data_; }

  void need(size_t n, const char* what) const {
    if (n > size_ - pos_)
      fail(context_, ": truncated at offset ", pos_, " reading ", what, " (need ", n, " bytes, ",
           size_ - pos_, " left)");
  }

  template <class T>
  T read(const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_bytes(size_t n, const char* what) {
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  void seek(size_t p, const char* what) {
    if (p > size_)
      fail(context_, ": offset ", p, " past end of file (", size_, " bytes) at ", what);
    pos_ = p;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string context_;
};

}  // namespace brisk
