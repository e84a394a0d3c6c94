// A read-only memory map of a whole file. Weights are views into it: nothing is copied at load.
// Owns: the mapping (munmap on destruction). Cost: one mmap; pages fault in on first touch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace brisk {

class MappedFile {
 public:
  // Throws brisk::Error naming the path if the file is missing, a directory or unreadable.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Writes bytes to `path` atomically: a temporary file in the same folder, fsync, rename.
// Used by every writer so that a crash never leaves a half-written model behind.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  uint64_t offset() const { return offset_; }
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t offset_ = 0;
  bool committed_ = false;
};

}  // namespace brisk
