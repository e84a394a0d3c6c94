// "No allocation on the hot path": after a warm-up step of the same shape, decode steps and
// prompt chunks must not call operator new. This binary replaces the global operator new/delete
// with counting versions (hence its own executable: the main suite keeps the sanitizers' own).
// GCC cannot see that the replacement operator delete below frees what the replacement operator
// new malloc'ed, and warns at every inlined new/delete pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/lowrank.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) {
    g_allocs.fetch_add(1);
    if (std::getenv("BRISK_ALLOC_ABORT")) std::abort();
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

using namespace brisk;

namespace {

// A rank-8 adapter on every weight matrix of m (and the output product), all values 0.01.
model::LoraAdapter full_adapter(const model::Model& m) {
  model::LoraAdapter a;
  a.arch = m.hparams().arch;
  a.alpha = 16;
  for (const auto& t : m.file().tensors) {
    if (t.shape.size() != 2 || t.name.rfind("blk.", 0) != 0) continue;
    a.targets.push_back({t.name, t.shape[0], t.shape[1], 8,
                         std::vector<float>(static_cast<size_t>(8 * t.shape[0]), 0.01f),
                         std::vector<float>(static_cast<size_t>(8 * t.shape[1]), 0.01f)});
  }
  const auto* e = m.file().find_tensor("token_embd.weight");
  a.targets.push_back({"output.weight", e->shape[0], e->shape[1], 8,
                       std::vector<float>(static_cast<size_t>(8 * e->shape[0]), 0.01f),
                       std::vector<float>(static_cast<size_t>(8 * e->shape[1]), 0.01f)});
  return a;
}

// lowrank: every layer matrix factorised at rank 8 (brisk lowrank, f16 factors).
void run_case(const char* type_name, DType type, int threads, bool lora = false,
              bool lowrank = false) {
  ThreadPool pool(threads);
  model::SynthConfig cfg;
  model::synth_preset("tiny", cfg);
  cfg.type = type;
  io::ModelFile file = model::synth_model(cfg, pool);
  if (lowrank) {
    quant::LowRankOptions o;
    o.rank = 8;
    quant::lowrank_model(file, o, pool);
  }
  auto m = model::Model::load(std::move(file));
  if (lora) m->add_lora(full_adapter(*m), 1.0f);
  model::InferenceState st(m->hparams(), 1024);
  std::vector<float> logits;
  const std::vector<int32_t> prompt(16, 5);
  int32_t tok = 7;
  // Warm-up: a prompt chunk of 16, one of 3 and decode steps past 512 positions (where attention
  // starts splitting the keys across threads) reach every buffer's size.
  m->forward(prompt, st, logits, false, pool);
  m->forward(std::span(prompt.data(), 3), st, logits, false, pool);
  while (st.n_past < 600) m->forward(std::span(&tok, 1), st, logits, false, pool);

  g_allocs = 0;
  g_counting = true;
  for (int i = 0; i < 300; ++i) m->forward(std::span(&tok, 1), st, logits, false, pool);
  m->forward(prompt, st, logits, false, pool);
  m->forward(std::span(prompt.data(), 3), st, logits, false, pool);
  g_counting = false;
  EXPECT_EQ(g_allocs.load(), 0) << type_name << ", " << threads << " threads"
                                << (lora ? ", LoRA" : "") << (lowrank ? ", low rank" : "");
}

TEST(HotPath, DecodeAndPromptStepsDoNotAllocate) {
  for (int threads : {1, 2}) {
    run_case("q4_0", DType::Q4_0, threads);
    run_case("q4_K", DType::Q4_K, threads);
    run_case("f16", DType::F16, threads);
    run_case("q4_0", DType::Q4_0, threads, /*lora=*/true);
    run_case("q4_0", DType::Q4_0, threads, /*lora=*/false, /*lowrank=*/true);
  }
}

// The counter works: an allocation inside the window is seen (so the test above can fail).
TEST(HotPath, CounterSeesAllocations) {
  g_allocs = 0;
  g_counting = true;
  auto* v = new std::vector<int>(100);
  g_counting = false;
  delete v;
  EXPECT_GE(g_allocs.load(), 1);
}

}  // namespace
