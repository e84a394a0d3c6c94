// Scoped timers for the forward pass, off unless enabled (brisk bench --profile): where does the
// time of a token go? One fixed set of categories, accumulated in nanoseconds per category with
// relaxed atomics; a disabled timer costs one relaxed load.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace brisk::profile {

enum class Op : int {
  Embed,      // token embedding lookup
  Qkv,        // attention norm + Q/K/V projections
  Rope,       // RoPE + appending K/V to the cache
  Attention,  // scores, softmax, weighted values
  AttnOut,    // output projection (+ residual)
  FfnUp,      // FFN norm + gate/up projections + SwiGLU
  FfnDown,    // down projection (+ residual)
  Output,     // final norm + output (vocabulary) projection
  Lora,       // LoRA adapter products (all matrices), when adapters are attached
  kCount
};
const char* op_name(Op op);

struct Counters {
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Op::kCount)> ns{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Op::kCount)> calls{};
};

bool enabled();
void set_enabled(bool on);
Counters& counters();
void reset();

class Scope {
 public:
  explicit Scope(Op op) : op_(op), on_(enabled()) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (!on_) return;
    const auto d = std::chrono::steady_clock::now() - t0_;
    const size_t i = static_cast<size_t>(op_);
    counters().ns[i].fetch_add(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()),
        std::memory_order_relaxed);
    counters().calls[i].fetch_add(1, std::memory_order_relaxed);
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Op op_;
  bool on_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace brisk::profile
