// llama2.c checkpoint import (Karpathy's run.c "v0" format).
//
// Layout: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len; a negative vocab_size means the classifier is stored separately), then f32 arrays:
// token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim),
// wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim,
// hidden), w3 (L, hidden, dim), rms_final (dim), freq_cis_real and freq_cis_imag (seq_len *
// head_size / 2 each, unused: recomputed from the rope base), then wcls (vocab, dim) when
// vocab_size < 0. The file size must equal exactly what the header implies.
//
// run.c rotates adjacent pairs, which is the GGUF llama order, so Q/K are used as stored. The
// result is a ModelFile of the llama architecture whose tensors are views into the buffer.
#pragma once
#include <cstdint>
#include <string>

#include "io/model_file.h"

namespace brisk::llama2c {

// Parses a checkpoint in memory; tensors point into `data`, which must outlive the result.
io::ModelFile parse(const uint8_t* data, size_t size, const std::string& name);
// Maps `path` and parses it; the mapping is kept in ModelFile::mappings.
io::ModelFile load(const std::string& path);

}  // namespace brisk::llama2c
