// A small random-weight llama (model::synth_model) loaded with its built-in byte vocabulary, for
// tests that need a real model and tokenizer but no files.
#pragma once
#include <cstdint>
#include <memory>

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

}  // namespace brisk::test
