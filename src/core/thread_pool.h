// A persistent pool of worker threads. parallel_for splits [0, n) into contiguous chunks that the
// calling thread and the workers claim from an atomic cursor (guided: large first, shrinking to
// the grain towards the end), and returns when every chunk is done.
//
// Why claimed chunks rather than one fixed chunk per thread: on a shared machine a worker may not
// be scheduled for milliseconds; with fixed chunks every parallel_for (a decode step makes a few
// hundred) would wait for it. Here the caller simply takes the chunks nobody has claimed, and only
// waits for workers that are in the middle of one. A worker that wakes after the job was closed
// goes back to waiting without touching it.
//
// Hand-off is spin-then-sleep: workers spin on an atomic generation counter for a short while
// (~0.1-1 ms) before sleeping on a condition variable, so busy ones join in well under 1 us and
// idle ones cost nothing once a step is over. No allocation per call (FunctionRef).
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
  // fn(begin, end, thread_index) for disjoint chunks covering [0, n); thread_index < size() is
  // unique among the threads running chunks at the same time (use it for per-thread scratch).
  // Chunks are whole multiples of `grain` long (but for the last one). Not reentrant: fn must not call
  // parallel_for on the same pool.
  using ChunkFn = FunctionRef<void(int64_t, int64_t, int)>;
  void parallel_for(int64_t n, ChunkFn fn, int64_t grain = 1);

 private:
  void worker(int index);
  void run_chunks(int tid);
  int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_start_;
  // The current job: valid while open_gen_ equals its generation.
  const ChunkFn* job_ = nullptr;
  int64_t job_n_ = 0, job_grain_ = 1;
  std::atomic<int64_t> next_chunk_{0};   // start of the first unclaimed index
  std::atomic<uint64_t> generation_{0};  // bumped per job (wakes workers)
  std::atomic<uint64_t> open_gen_{0};    // generation of the open job, 0 when none is open
  std::atomic<int> active_{0};           // workers inside the job
  std::atomic<bool> stop_{false};
};

}  // namespace brisk
