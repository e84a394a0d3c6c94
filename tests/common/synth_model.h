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
#include "model/paged_kv.h"
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

// forward_batch over a paged KV cache (two prompts at once, then one decode step of the first)
// gives the logits forward gives for the same positions.
inline void expect_batch_equals_forward(const model::Model& m, ThreadPool& pool) {
  const std::vector<std::vector<int32_t>> seqs = {prompt(13, 256, 1), prompt(6, 256, 2)};
  model::PagedKvCache kv(m.hparams(), 8, 16, DType::F32);
  const std::vector<std::vector<int32_t>> tables = {{3, 0}, {5}};
  std::vector<int32_t> batch(seqs[0].begin(), seqs[0].end() - 1);
  batch.insert(batch.end(), seqs[1].begin(), seqs[1].end());
  const int64_t n0 = static_cast<int64_t>(seqs[0].size()) - 1;
  const model::BatchSeq bs[2] = {{0, n0, 0, tables[0], true},
                                 {n0, static_cast<int64_t>(seqs[1].size()), 0, tables[1], true}};
  model::InferenceState st(m.hparams(), 0);
  std::vector<float> got;
  m.forward_batch(batch, bs, kv, st, got, pool);
  const int64_t V = m.n_vocab();
  const model::BatchSeq last{0, 1, n0, tables[0], true};
  std::vector<float> got_last;
  m.forward_batch(std::span(&seqs[0].back(), 1), std::span(&last, 1), kv, st, got_last, pool);
  const std::vector<float> w0 = all_logits(m, seqs[0], pool);
  const std::vector<float> w1 = all_logits(m, seqs[1], pool);
  auto row = [&](const std::vector<float>& l, int64_t r) {
    return std::vector<float>(l.begin() + r * V, l.begin() + (r + 1) * V);
  };
  EXPECT_LT(max_rel_diff(row(got, 0), row(w0, n0 - 1)), 1e-5);
  EXPECT_LT(max_rel_diff(row(got, 1), row(w1, static_cast<int64_t>(seqs[1].size()) - 1)), 1e-5);
  EXPECT_LT(max_rel_diff(got_last, row(w0, n0)), 1e-5);
}

}  // namespace brisk::test
