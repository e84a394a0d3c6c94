#include "core/thread_pool.h"

#include <algorithm>

#include "core/error.h"

namespace brisk {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins before sleeping. A pause is ~40-150 cycles, so this is roughly 0.2-1 ms of waiting: long
// enough to bridge the gaps between the ops of one forward pass, short enough that an idle pool
// goes to sleep almost at once.
constexpr int kSpinIterations = 1 << 13;

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  check(n_threads >= 1 && n_threads <= 1024, "thread count must be in [1, 1024], got ", n_threads);
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true, std::memory_order_release);
  }
  cv_start_.notify_all();
  for (auto& t : threads_) t.join();
}

// Guided self-scheduling: each claim takes half of an equal share of what is left, rounded down to
// a multiple of the grain (at least one grain), so chunks start large (long sequential runs) and
// shrink towards the end, where they even out the threads' finishing times.
void ThreadPool::run_chunks(int tid) {
  const int64_t n = job_n_, grain = job_grain_, div = 2 * static_cast<int64_t>(n_threads_);
  int64_t b = next_chunk_.load(std::memory_order_relaxed);
  while (b < n) {
    // A multiple of the grain, so that callers working in units of the grain get whole units.
    const int64_t take = std::max<int64_t>(1, (n - b) / div / grain) * grain;
    const int64_t e = std::min(n, b + take);
    if (next_chunk_.compare_exchange_weak(b, e, std::memory_order_relaxed)) {
      (*job_)(b, e, tid);
      b = e;
    }
  }
}

void ThreadPool::parallel_for(int64_t n, ChunkFn fn, int64_t grain) {
  if (n <= 0) return;
  if (n_threads_ == 1 || n == 1) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = std::max<int64_t>(1, grain);
  next_chunk_.store(0, std::memory_order_relaxed);
  uint64_t gen;
  {
    // Publishing under the mutex means a worker that is about to sleep either sees the new
    // generation in its wait predicate or is already waiting and gets the notification.
    std::lock_guard<std::mutex> lk(mu_);
    gen = generation_.load(std::memory_order_relaxed) + 1;
    open_gen_.store(gen, std::memory_order_seq_cst);
    generation_.store(gen, std::memory_order_release);
  }
  cv_start_.notify_all();
  run_chunks(0);
  // Every chunk is claimed. Close the job so late workers stay out, then wait for the ones inside.
  open_gen_.store(0, std::memory_order_seq_cst);
  for (int spins = 0; active_.load(std::memory_order_seq_cst) != 0; ++spins) {
    if (spins < kSpinIterations)
      cpu_relax();
    else
      std::this_thread::yield();
  }
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spins = 0; g == seen && spins < kSpinIterations; ++spins) {
      if (stop_.load(std::memory_order_relaxed)) return;
      cpu_relax();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] {
        return stop_.load(std::memory_order_relaxed) ||
               generation_.load(std::memory_order_acquire) != seen;
      });
      if (stop_.load(std::memory_order_relaxed)) return;
      g = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_relaxed)) return;
    seen = g;
    // Join only while the job is still open: the caller closes it (open_gen_ = 0) before waiting
    // for active_ to drain, so a worker that registers after that sees it closed and leaves
    // without touching job_ (the total order of the seq_cst operations guarantees it).
    active_.fetch_add(1, std::memory_order_seq_cst);
    if (open_gen_.load(std::memory_order_seq_cst) == g) run_chunks(index);
    active_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

}  // namespace brisk
