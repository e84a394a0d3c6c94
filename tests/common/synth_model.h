// A small random-weight llama (model::synth_model) loaded with its built-in byte vocabulary, for
// tests that need a real model and tokenizer but no files.
#pragma once
#include <gtest/gtest.h>
#include <cstdint>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/tokenizer/tokenizer.h"
#include "model/model.h"
#include "model/synth.h"

namespace brisk::test {

struct LoadedModel {
  std::unique_ptr<model::Model> m;
  std::shared_ptr<const tok::Tokenizer> tk;
};

// 2 layers, 4 query heads over 2 KV heads.
inline LoadedModel load_synth_model(int64_t dim, int64_t ffn, int64_t context,
                                    DType type = DType::Q8_0) {
  ThreadPool pool(2);
  model::SynthConfig c;
  c.dim = dim;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = ffn;
  c.context = context;
  c.type = type;
  io::ModelFile file = model::synth_model(c, pool);
  LoadedModel out;
  out.tk = tok::Tokenizer::from_metadata(file.metadata, "synth");
  out.m = model::Model::load(std::move(file));
  return out;
}

// The same 2-layer shape (D 64, FFN 128, context 256) as an in-memory file, any architecture.
inline io::ModelFile synth_file(DType type, const std::string& arch = "llama") {
  ThreadPool pool(2);
  model::SynthConfig c;
  c.arch = arch;
  c.dim = 64;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 128;
  c.context = 256;
  c.type = type;
  return model::synth_model(c, pool);
}

// n random token ids below vocab.
inline std::vector<int32_t> prompt(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return t;
}

// Logits (n, V) of every position of `tokens` from an empty cache.
inline std::vector<float> all_logits(const model::Model& m, const std::vector<int32_t>& tokens,
                                     ThreadPool& pool) {
  model::InferenceState st(m.hparams(), static_cast<int64_t>(tokens.size()));
  std::vector<float> logits;
  m.forward(tokens, st, logits, true, pool);
  return logits;
}

// max |a - b| / max |b|.
inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return err / scale;
}

}  // namespace brisk::test
