#include "train/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/byte_reader.h"
#include "core/error.h"

namespace brisk::train {

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian; a big-endian host would need byte swaps");

namespace {

constexpr char kMagic[8] = {'B', 'R', 'I', 'S', 'K', 'T', 'O', 'K'};
constexpr size_t kHeaderBytes = 64;
constexpr uint32_t kFlagMask = 1;

uint64_t pad8(uint64_t n) {
  return (n + 7) & ~uint64_t{7};
}

uint32_t crc32_of(const uint8_t* p, uint64_t n, uint32_t crc = 0) {
  uLong c = crc;
  while (n > 0) {
    const auto chunk = static_cast<uInt>(std::min<uint64_t>(n, 1u << 30));
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

struct Layout {
  uint64_t offsets_at, tokens_at, mask_at, size;
};

// Section offsets implied by the header counts; false when they overflow 64 bits.
bool layout(uint64_t n_docs, uint64_t n_tokens, uint32_t token_bytes, bool mask, Layout* l) {
  constexpr uint64_t kMax = uint64_t{1} << 60;  // far beyond any real file, keeps sums exact
  if (n_docs >= kMax / 8 || n_tokens >= kMax / 4) return false;
  l->offsets_at = kHeaderBytes;
  l->tokens_at = l->offsets_at + 8 * (n_docs + 1);
  l->mask_at = l->tokens_at + pad8(n_tokens * token_bytes);
  l->size = l->mask_at + (mask ? pad8((n_tokens + 7) / 8) : 0);
  return true;
}

template <class T>
void put(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}

}  // namespace

TokenShardWriter::TokenShardWriter(int64_t vocab_size) : vocab_size_(vocab_size) {
  if (vocab_size < 1 || vocab_size > (int64_t{1} << 31))
    fail("token shard: vocab size ", vocab_size, " out of range");
  token_bytes_ = vocab_size <= 65536 ? 2 : 4;
}

void TokenShardWriter::add(std::span<const int32_t> tokens, std::span<const uint8_t> mask) {
  if (!mask.empty() && mask.size() != tokens.size())
    fail("token shard: mask has ", mask.size(), " entries for ", tokens.size(), " tokens");
  const uint64_t base = offsets_.back();
  const uint64_t n = base + tokens.size();
  tokens_.resize(n * token_bytes_);
  mask_.resize((n + 7) / 8, 0);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= vocab_size_)
      fail("token shard: token id ", t, " out of range [0, ", vocab_size_, ")");
    uint8_t* dst = tokens_.data() + (base + i) * token_bytes_;
    if (token_bytes_ == 2) {
      const auto v = static_cast<uint16_t>(t);
      std::memcpy(dst, &v, 2);
    } else {
      const auto v = static_cast<uint32_t>(t);
      std::memcpy(dst, &v, 4);
    }
    const bool target = mask.empty() || mask[i] != 0;
    if (target) {
      const uint64_t pos = base + i;
      mask_[pos >> 3] = static_cast<uint8_t>(mask_[pos >> 3] | (1u << (pos & 7)));
      ++n_targets_;
    } else {
      any_masked_ = true;
    }
  }
  offsets_.push_back(n);
}

void TokenShardWriter::write(const std::string& path) const {
  const uint64_t n_docs = offsets_.size() - 1, n_tokens = offsets_.back();
  Layout l{};
  if (!layout(n_docs, n_tokens, token_bytes_, any_masked_, &l))
    fail(path, ": token shard too large");
  std::vector<uint8_t> head(kHeaderBytes, 0);
  std::memcpy(head.data(), kMagic, 8);
  put<uint32_t>(head, 8, kShardVersion);
  put<uint32_t>(head, 12, token_bytes_);
  put<uint32_t>(head, 16, any_masked_ ? kFlagMask : 0);
  put<uint32_t>(head, 20, static_cast<uint32_t>(vocab_size_));
  put<uint64_t>(head, 24, n_docs);
  put<uint64_t>(head, 32, n_tokens);
  put<uint64_t>(head, 40, l.size);

  // The payload CRC runs over exactly the bytes written after the header, padding included.
  static constexpr uint8_t kZeros[8] = {};
  const auto* offs = reinterpret_cast<const uint8_t*>(offsets_.data());
  const uint64_t tok_bytes = n_tokens * token_bytes_;
  const uint64_t tok_pad = pad8(tok_bytes) - tok_bytes;
  const uint64_t mask_bytes = (n_tokens + 7) / 8;
  const uint64_t mask_pad = pad8(mask_bytes) - mask_bytes;
  uint32_t crc = crc32_of(offs, 8 * (n_docs + 1));
  crc = crc32_of(tokens_.data(), tok_bytes, crc);
  crc = crc32_of(kZeros, tok_pad, crc);
  if (any_masked_) {
    crc = crc32_of(mask_.data(), mask_bytes, crc);
    crc = crc32_of(kZeros, mask_pad, crc);
  }
  put<uint32_t>(head, 48, crc);
  put<uint32_t>(head, 52, crc32_of(head.data(), 52));

  AtomicFileWriter w(path);
  w.write(head.data(), head.size());
  w.write(offs, 8 * (n_docs + 1));
  w.write(tokens_.data(), tok_bytes);
  w.write_zeros(tok_pad);
  if (any_masked_) {
    w.write(mask_.data(), mask_bytes);
    w.write_zeros(mask_pad);
  }
  w.commit();
}

std::shared_ptr<const TokenDataset> TokenDataset::open(const std::string& path, bool verify) {
  std::shared_ptr<TokenDataset> d(new TokenDataset());
  d->file_ = MappedFile::open(path);
  const uint8_t* base = d->file_->data();
  const size_t size = d->file_->size();
  ByteReader r(base, size, path);
  r.read<uint64_t>("magic");

  if (std::memcmp(base, kMagic, 8) != 0) fail(path, ": not a brisk token shard (bad magic)");
  const auto version = r.read<uint32_t>("version");
  if (version != kShardVersion)
    fail(path, ": token shard version ", version, " (this build reads ", kShardVersion, ")");
  const auto token_bytes = r.read<uint32_t>("token width");
  const auto flags = r.read<uint32_t>("flags");
  const auto vocab = r.read<uint32_t>("vocab size");
  const auto n_docs = r.read<uint64_t>("document count");
  const auto n_tokens = r.read<uint64_t>("token count");
  const auto file_size = r.read<uint64_t>("file size");
  const auto crc = r.read<uint32_t>("payload crc");
  const auto head_crc = r.read<uint32_t>("header crc");
  r.need(8, "reserved");
  if (crc32_of(base, 52) != head_crc) fail(path, ": token shard header is corrupt (CRC mismatch)");
  if (token_bytes != 2 && token_bytes != 4)
    fail(path, ": token width ", token_bytes, " (want 2 or 4)");
  if (flags & ~kFlagMask) fail(path, ": unknown flags 0x", std::hex, flags);
  const int64_t vocab_size = int64_t{vocab};
  if (vocab_size < 1 || vocab_size > (int64_t{1} << 31))
    fail(path, ": vocab size ", vocab_size, " out of range");
  if (token_bytes == 2 && vocab_size > 65536)
    fail(path, ": 16-bit tokens for a vocabulary of ", vocab_size);
  Layout l{};
  if (!layout(n_docs, n_tokens, token_bytes, flags & kFlagMask, &l))
    fail(path, ": implausible counts (", n_docs, " documents, ", n_tokens, " tokens)");
  if (file_size != l.size)
    fail(path, ": header says ", file_size, " bytes but its counts imply ", l.size);
  if (size != l.size)
    fail(path, ": file has ", size, " bytes, expected ", l.size,
         size < l.size ? " (truncated)" : " (trailing data)");

  d->n_docs_ = n_docs;
  d->n_tokens_ = n_tokens;
  d->vocab_size_ = vocab_size;
  d->token_bytes_ = token_bytes;
  d->offsets_ = reinterpret_cast<const uint64_t*>(base + l.offsets_at);
  if (token_bytes == 2)
    d->tok16_ = reinterpret_cast<const uint16_t*>(base + l.tokens_at);
  else
    d->tok32_ = reinterpret_cast<const uint32_t*>(base + l.tokens_at);
  if (flags & kFlagMask) d->mask_ = base + l.mask_at;

  if (d->offsets_[0] != 0) fail(path, ": document 0 does not start at token 0");
  for (uint64_t i = 0; i < n_docs; ++i)
    if (d->offsets_[i + 1] < d->offsets_[i])
      fail(path, ": document ", i + 1, " starts before document ", i);
  if (d->offsets_[n_docs] != n_tokens)
    fail(path, ": documents end at token ", d->offsets_[n_docs], " but the shard has ", n_tokens);

  if (verify) {
    if (crc32_of(base + kHeaderBytes, size - kHeaderBytes) != crc)
      fail(path, ": token shard data is corrupt (CRC mismatch)");
    if (vocab_size < (int64_t{1} << (8 * token_bytes))) {
      for (uint64_t i = 0; i < n_tokens; ++i)
        if (d->token(static_cast<int64_t>(i)) >= vocab_size)
          fail(path, ": token ", i, " has id ", d->token(static_cast<int64_t>(i)),
               " >= vocab size ", vocab_size);
    }
  }
  return d;
}

int64_t TokenDataset::doc_begin(int64_t i) const {
  if (i < 0 || static_cast<uint64_t>(i) >= n_docs_)
    fail(path(), ": document ", i, " out of range [0, ", n_docs_, ")");
  return static_cast<int64_t>(offsets_[i]);
}

int64_t TokenDataset::doc_size(int64_t i) const {
  return static_cast<int64_t>(offsets_[i + 1]) - doc_begin(i);
}

TokenDoc TokenDataset::doc(int64_t i) const {
  const int64_t b = doc_begin(i), n = doc_size(i);
  TokenDoc d;
  d.tokens.resize(static_cast<size_t>(n));
  d.mask.resize(static_cast<size_t>(n));
  read(b, b + n, d.tokens.data(), d.mask.data());
  return d;
}

void TokenDataset::read(int64_t begin, int64_t end, int32_t* tokens, uint8_t* mask) const {
  if (begin < 0 || end < begin || static_cast<uint64_t>(end) > n_tokens_)
    fail(path(), ": token range [", begin, ", ", end, ") out of range [0, ", n_tokens_, ")");
  for (int64_t p = begin; p < end; ++p) tokens[p - begin] = token(p);
  if (mask)
    for (int64_t p = begin; p < end; ++p) mask[p - begin] = is_target(p) ? 1 : 0;
}

}  // namespace brisk::train
