#include "core/profile.h"

namespace brisk::profile {
namespace {
std::atomic<bool> g_enabled{false};
}

const char* op_name(Op op) {
  switch (op) {
    case Op::Embed:
      return "embedding";
    case Op::Qkv:
      return "norm + QKV projections";
    case Op::Rope:
      return "RoPE + KV append";
    case Op::Attention:
      return "attention";
    case Op::AttnOut:
      return "attention output projection";
    case Op::FfnUp:
      return "norm + gate/up + SwiGLU";
    case Op::FfnDown:
      return "FFN down projection";
    case Op::Output:
      return "output norm + vocabulary projection";
    case Op::Lora:
      return "LoRA adapters";
    case Op::kCount:
      break;
  }
  return "?";
}

bool enabled() {
  return g_enabled.load(std::memory_order_relaxed);
}
void set_enabled(bool on) {
  g_enabled.store(on, std::memory_order_relaxed);
}
Counters& counters() {
  static Counters c;
  return c;
}
void reset() {
  for (auto& x : counters().ns) x.store(0, std::memory_order_relaxed);
  for (auto& x : counters().calls) x.store(0, std::memory_order_relaxed);
}

}  // namespace brisk::profile
