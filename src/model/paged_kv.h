// The paged KV cache of the serving engine: per layer, K and V of n_blocks physical blocks of
// block_size token rows (n_head_kv * head_dim elements each), in f32, f16 or q8_0. Which block
// holds which positions of which sequence is the block table's business (kv::KvCacheManager, on
// the engine side); this class only stores rows, copies blocks (copy-on-write) and hands the
// attention kernels views through a table.
//
// Memory: n_layer * 2 * n_blocks * block_size * row_bytes(type, kv_dim). Storage is one
// HugeBuffer; nothing is allocated after construction.
#pragma once
#include <cstdint>
#include <span>

#include "core/dtype.h"
#include "core/huge_buffer.h"
#include "kernels/cpu/attention.h"
#include "model/hparams.h"

namespace brisk::model {

class PagedKvCache {
 public:
  // type: F32, F16 or Q8_0 (Q8_0 needs head_dim % 32 == 0). Throws brisk::Error on a bad setting.
  PagedKvCache(const HParams& hp, int64_t n_blocks, int32_t block_size, DType type);

  int64_t n_blocks() const { return n_blocks_; }
  int32_t block_size() const { return block_size_; }
  DType type() const { return type_; }
  // Bytes one block takes over all layers (K and V).
  static uint64_t block_bytes(const HParams& hp, int32_t block_size, DType type);

  // Stores the K and V rows (kv_dim floats each) of the token at `pos` of a sequence.
  void write(int64_t layer, std::span<const int32_t> table, int64_t pos, const float* k,
             const float* v);
  // Copies every layer's K and V of block src into block dst.
  void copy_block(int32_t src, int32_t dst);
  // Views for the attention kernels through a sequence's block table (must outlive the view).
  kernels::KvView k_view(int64_t layer, const int32_t* table) const;
  kernels::KvView v_view(int64_t layer, const int32_t* table) const;

 private:
  uint8_t* slot(int64_t layer, int kv, int32_t block, int64_t off) const;
  kernels::KvView view(int64_t layer, int kv, const int32_t* table) const;

  int64_t n_layer_, kv_dim_, n_blocks_;
  int32_t block_size_;
  DType type_;
  size_t row_bytes_, block_bytes_;  // one token row; one block of one layer's K (or V)
  HugeBuffer data_;                 // [layer][K|V][block][token] rows
};

}  // namespace brisk::model
