// EventQueue: hands one request's engine events from the engine thread to its HTTP handler
// thread.
//
// The engine calls push() from its own thread through the request's sink; push never waits for
// the consumer (one mutex, no I/O), so a slow client never stalls the batch. The handler thread
// waits in pop() with a timeout, so it can also notice a vanished client while no events come.
// close() marks the consumer gone: later pushes return false, which the sink passes back to the
// engine as "cancel this request". Shared by the sink and the handler (shared_ptr), since the
// engine may hold the sink a little longer than the handler lives.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

#include "engine/engine.h"

namespace brisk::serve {

class EventQueue {
 public:
  // Engine thread. False when the consumer is gone (the request should be cancelled).
  bool push(const engine::Event& e) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (closed_) return false;
      events_.push_back(e);
    }
    cv_.notify_one();
    return true;
  }

  // Handler thread: everything queued, waiting up to `wait` for at least one event.
  std::vector<engine::Event> pop(std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, wait, [&] { return !events_.empty(); });
    std::vector<engine::Event> out(std::make_move_iterator(events_.begin()),
                                   std::make_move_iterator(events_.end()));
    events_.clear();
    return out;
  }

  void close() {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    events_.clear();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<engine::Event> events_;
  bool closed_ = false;
};

}  // namespace brisk::serve
