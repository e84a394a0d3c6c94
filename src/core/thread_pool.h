// A persistent pool of worker threads. parallel_for splits [0, n) into one contiguous chunk per
// thread (the calling thread takes chunk 0) and returns when all chunks are done.
//
// Hand-off is spin-then-sleep: a decode step calls parallel_for a few hundred times with gaps of
// microseconds, so workers spin on an atomic generation counter for a short while (~0.1-1 ms)
// before sleeping on a condition variable, and the caller spins on an atomic countdown. Idle
// workers therefore cost nothing once a step is over, and busy ones wake in well under 1 us.
// Owns: n_threads - 1 std::threads.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "core/function_ref.h"

namespace brisk {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // fn(begin, end, thread_index); chunks are empty when n < threads. Not reentrant: fn must not
  // call parallel_for on the same pool.
  using ChunkFn = FunctionRef<void(int64_t, int64_t, int)>;
  void parallel_for(int64_t n, ChunkFn fn);

 private:
  void worker(int index);
  int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_start_;
  const ChunkFn* job_ = nullptr;
  int64_t job_n_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace brisk
