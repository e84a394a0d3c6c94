// A model exported by the trainer (GGUF, or a Hugging Face directory) gives the trainer's own
// logits in the inference engine, and imports back to the same parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "io/safetensors/hf_dir.h"
#include "model/model.h"
#include "model/synth.h"
#include "train/export.h"
#include "train/llama_train.h"

namespace brisk::train {
namespace {

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 0;
  for (float x : b) scale = std::max(scale, static_cast<double>(std::abs(x)));
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) / scale);
  return worst;
}

std::vector<float> engine_logits(const std::string& path, const std::vector<int32_t>& toks) {
  auto m = model::Model::load(io::load_model_file(path));
  model::InferenceState st(m->hparams(), 64);
  ThreadPool pool(2);
  std::vector<float> logits;
  m->forward(toks, st, logits, true, pool);
  return logits;
}

TEST(TrainExport, GgufAndHfExportsGiveTheTrainersLogits) {
  const io::Metadata vocab = model::builtin_byte_vocab();
  ModelShape s;
  s.dim = 64;
  s.layers = 2;
  s.heads = 4;
  s.kv_heads = 2;
  s.ffn = 96;
  s.vocab = 354;  // the built-in byte vocabulary
  s.context = 64;
  s.tied = false;
  LlamaTrainer<float> tr(s, 2);
  std::vector<float> p = init_params(tr.layout(), s, 11);
  // Make it less uniform than the initialisation (as after training): larger weights.
  for (float& x : p) x *= 4;
  Batch b;
  for (int i = 0; i < 20; ++i) b.tokens.push_back((i * 37 + 5) % 354);
  b.seq_start = {0, 20};
  std::vector<float> ref;
  tr.logits(b, p.data(), ref);

  const auto dir = std::filesystem::temp_directory_path() / "brisk_test_export";
  std::filesystem::create_directories(dir);
  const std::string gguf = (dir / "m.gguf").string();
  const io::ModelFile mf = export_model(s, tr.layout(), p.data(), vocab, DType::F32, "test");
  io::write_gguf(mf, gguf);
  const std::vector<float> got = engine_logits(gguf, b.tokens);
  ASSERT_EQ(got.size(), ref.size());
  EXPECT_LT(max_rel_diff(got, ref), 1e-4);

  io::write_hf_dir(mf, (dir / "hf").string());
  const std::vector<float> hf = engine_logits((dir / "hf").string(), b.tokens);
  EXPECT_LT(max_rel_diff(hf, ref), 1e-4);

  // Import gives back exactly the parameters (F32), and a lower-precision export stays close.
  const ImportedModel im = import_model(gguf);
  EXPECT_EQ(im.shape.dim, s.dim);
  EXPECT_EQ(im.shape.kv_heads, s.kv_heads);
  EXPECT_FALSE(im.shape.tied);
  EXPECT_EQ(im.params, p);
  io::write_gguf(export_model(s, tr.layout(), p.data(), vocab, DType::F16, "test"),
                 (dir / "f16.gguf").string());
  EXPECT_LT(max_rel_diff(engine_logits((dir / "f16.gguf").string(), b.tokens), ref), 5e-3);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace brisk::train
