#include "model/paged_kv.h"

#include <cstring>

#include "core/error.h"
#include "kernels/cpu/quant.h"

namespace brisk::model {

PagedKvCache::PagedKvCache(const HParams& hp, int64_t n_blocks, int32_t block_size, DType type)
    : n_layer_(hp.n_layer),
      kv_dim_(hp.kv_dim()),
      n_blocks_(n_blocks),
      block_size_(block_size),
      type_(type) {
  check(type == DType::F32 || type == DType::F16 || type == DType::Q8_0, "KV cache type ",
        dtype_name(type), " is not supported (f32, f16 or q8_0)");
  check(type != DType::Q8_0 || hp.head_dim % 32 == 0, "KV cache type q8_0 needs a head size ",
        "that is a multiple of 32; this model's is ", hp.head_dim);
  check(block_size >= 1 && block_size <= 1024, "KV block size ", block_size,
        " must be in [1, 1024]");
  check(n_blocks >= 1 && n_blocks < (int64_t{1} << 31), "KV cache blocks ", n_blocks,
        " out of range");
  row_bytes_ = row_bytes(type, kv_dim_);
  block_bytes_ = row_bytes_ * static_cast<size_t>(block_size);
  data_ =
      HugeBuffer(block_bytes_ * static_cast<size_t>(n_blocks) * 2 * static_cast<size_t>(n_layer_));
}

uint64_t PagedKvCache::block_bytes(const HParams& hp, int32_t block_size, DType type) {
  return static_cast<uint64_t>(row_bytes(type, hp.kv_dim())) * static_cast<uint64_t>(block_size) *
         2 * static_cast<uint64_t>(hp.n_layer);
}

uint8_t* PagedKvCache::slot(int64_t layer, int kv, int32_t block, int64_t off) const {
  const size_t region =
      (static_cast<size_t>(layer) * 2 + static_cast<size_t>(kv)) * static_cast<size_t>(n_blocks_);
  return data_.data() + (region + static_cast<size_t>(block)) * block_bytes_ +
         static_cast<size_t>(off) * row_bytes_;
}

void PagedKvCache::write(int64_t layer, std::span<const int32_t> table, int64_t pos, const float* k,
                         const float* v) {
  const int64_t logical = pos / block_size_;
  check(logical < static_cast<int64_t>(table.size()), "KV write at position ", pos,
        " beyond the block table (", table.size(), " blocks)");
  const int32_t block = table[static_cast<size_t>(logical)];
  check(block >= 0 && block < n_blocks_, "KV block id ", block, " out of range");
  const int64_t off = pos % block_size_;
  // The storage type's own row quantiser (a copy for f32, rounding for f16, blocks for q8_0).
  const kernels::FromFloatFn from_float = kernels::quant_kernels(type_).from_float;
  from_float(k, slot(layer, 0, block, off), kv_dim_);
  from_float(v, slot(layer, 1, block, off), kv_dim_);
}

void PagedKvCache::copy_block(int32_t src, int32_t dst) {
  check(src >= 0 && src < n_blocks_ && dst >= 0 && dst < n_blocks_, "KV block copy ", src, " -> ",
        dst, " out of range");
  for (int64_t l = 0; l < n_layer_; ++l)
    for (int kv = 0; kv < 2; ++kv)
      std::memcpy(slot(l, kv, dst, 0), slot(l, kv, src, 0), block_bytes_);
}

kernels::KvView PagedKvCache::view(int64_t layer, int kv, const int32_t* table) const {
  kernels::KvView v;
  v.base = slot(layer, kv, 0, 0);
  v.type = type_;
  v.block_tokens = block_size_;
  v.token_stride = kv_dim_;
  v.block_stride = kv_dim_ * block_size_;  // elements (q8_0: kv_dim % 32 == 0, see KvView)
  v.block_table = table;
  return v;
}

kernels::KvView PagedKvCache::k_view(int64_t layer, const int32_t* table) const {
  return view(layer, 0, table);
}
kernels::KvView PagedKvCache::v_view(int64_t layer, const int32_t* table) const {
  return view(layer, 1, table);
}

}  // namespace brisk::model
