// Token shards: tokenized documents on disk, read through a memory map.
//
// File layout (little-endian; every section starts 8-byte aligned):
//
//   offset  size  field
//   0       8     magic "BRISKTOK"
//   8       4     u32 version (1)
//   12      4     u32 token_bytes: 2 (u16 ids) when vocab_size <= 65536, else 4 (u32 ids)
//   16      4     u32 flags: bit 0 = a loss-mask bitmap follows the tokens
//   20      4     u32 vocab_size (every id is below it)
//   24      8     u64 n_docs
//   32      8     u64 n_tokens
//   40      8     u64 file_size (the whole file, for truncation checks)
//   48      4     u32 CRC-32 (zlib) of bytes [64, file_size)
//   52      4     u32 CRC-32 of bytes [0, 52) (the header itself)
//   56      8     reserved, 0
//   64            u64 doc_offsets[n_docs + 1]: token index where each document starts;
//                 doc_offsets[0] = 0, non-decreasing, doc_offsets[n_docs] = n_tokens
//   ...           tokens[n_tokens] (u16 or u32), then zero padding to a multiple of 8 bytes
//   ...           if flags bit 0: mask[ceil(n_tokens / 8)] bytes, bit (i % 8) of byte (i / 8) set
//                 when token i is a loss target (the model is trained to predict it); absent:
//                 every token is a target. Then zero padding to a multiple of 8 bytes.
//
// Opening checks the magic, version, header CRC, that the size matches the header exactly, and
// the document offsets; verify (the default) also checks the payload CRC and that every id is
// below vocab_size: a corrupt or truncated shard is a brisk::Error naming the file, never a
// crash. The writer keeps the shard in memory (2-4 bytes per token) and writes it atomically.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace brisk::train {

inline constexpr uint32_t kShardVersion = 1;

class TokenShardWriter {
 public:
  explicit TokenShardWriter(int64_t vocab_size);
  // Appends a document. `mask` is empty (every token is a target) or one byte per token
  // (non-zero = target). Ids must be in [0, vocab_size).
  void add(std::span<const int32_t> tokens, std::span<const uint8_t> mask = {});
  int64_t n_docs() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t n_tokens() const { return offsets_.back(); }
  int64_t n_targets() const { return n_targets_; }
  void write(const std::string& path) const;

 private:
  int64_t vocab_size_;
  uint32_t token_bytes_;
  std::vector<uint64_t> offsets_{0};
  std::vector<uint8_t> tokens_;  // little-endian ids, token_bytes_ each
  std::vector<uint8_t> mask_;    // bitmap, grown as tokens arrive
  bool any_masked_ = false;
  int64_t n_targets_ = 0;
};

struct TokenDoc {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;  // one per token: 1 = loss target
};

class TokenDataset {
 public:
  // Maps and checks `path` (see the header comment); throws brisk::Error on any fault.
  static std::shared_ptr<const TokenDataset> open(const std::string& path, bool verify = true);

  const std::string& path() const { return file_->path(); }
  int64_t n_docs() const { return static_cast<int64_t>(n_docs_); }
  int64_t n_tokens() const { return static_cast<int64_t>(n_tokens_); }
  int64_t vocab_size() const { return vocab_size_; }
  int token_bytes() const { return static_cast<int>(token_bytes_); }
  bool has_mask() const { return mask_ != nullptr; }

  int64_t doc_begin(int64_t i) const;  // token index of document i's first token
  int64_t doc_size(int64_t i) const;
  TokenDoc doc(int64_t i) const;

  int32_t token(int64_t pos) const {
    return token_bytes_ == 2 ? static_cast<int32_t>(tok16_[pos])
                             : static_cast<int32_t>(tok32_[pos]);
  }
  bool is_target(int64_t pos) const { return !mask_ || ((mask_[pos >> 3] >> (pos & 7)) & 1); }
  // Tokens [begin, end) of the whole stream into `tokens`, and (when non-null) their mask bytes.
  void read(int64_t begin, int64_t end, int32_t* tokens, uint8_t* mask) const;

 private:
  TokenDataset() = default;
  std::shared_ptr<MappedFile> file_;
  uint64_t n_docs_ = 0, n_tokens_ = 0;
  int64_t vocab_size_ = 0;
  uint32_t token_bytes_ = 2;
  const uint64_t* offsets_ = nullptr;
  const uint16_t* tok16_ = nullptr;
  const uint32_t* tok32_ = nullptr;
  const uint8_t* mask_ = nullptr;
};

}  // namespace brisk::train
