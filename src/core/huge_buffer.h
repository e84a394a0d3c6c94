// A large, zero-initialised, 2 MiB-aligned anonymous memory block advised to use transparent huge
// pages. Repacked weights live here: streaming hundreds of MiB per decoded token through 4 KiB
// pages costs a TLB walk every 4 KiB, which 2 MiB pages avoid (when the kernel grants them; the
// advice is best-effort and the buffer works either way).
// Owns: one mapping (munmap on destruction). Move-only.
#pragma once
#include <cstddef>
#include <cstdint>

namespace brisk {

class HugeBuffer {
 public:
  HugeBuffer() = default;
  explicit HugeBuffer(size_t bytes);  // throws brisk::Error when the memory cannot be mapped
  ~HugeBuffer();
  HugeBuffer(HugeBuffer&& o) noexcept;
  HugeBuffer& operator=(HugeBuffer&& o) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release();
  void* map_ = nullptr;
  size_t map_size_ = 0;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace brisk
