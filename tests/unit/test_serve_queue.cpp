// The per-request event queue between the engine thread and an HTTP handler (serve/event_queue.h).
#include <gtest/gtest.h>

#include <thread>

#include "serve/event_queue.h"

namespace brisk::serve {
namespace {

engine::Event ev(std::string text, bool done = false) {
  engine::Event e;
  e.text = std::move(text);
  e.done = done;
  return e;
}

TEST(ServeQueue, PopReturnsEverythingQueuedInOrder) {
  EventQueue q;
  EXPECT_TRUE(q.push(ev("a")));
  EXPECT_TRUE(q.push(ev("b")));
  auto got = q.pop(std::chrono::milliseconds(0));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].text, "a");
  EXPECT_EQ(got[1].text, "b");
  EXPECT_TRUE(q.pop(std::chrono::milliseconds(1)).empty()) << "times out empty";
}

TEST(ServeQueue, CloseMakesPushFail) {
  // The sink returns push()'s result: false tells the engine to cancel the request.
  EventQueue q;
  q.push(ev("a"));
  q.close();
  EXPECT_FALSE(q.push(ev("b")));
  EXPECT_TRUE(q.pop(std::chrono::milliseconds(0)).empty());
}

TEST(ServeQueue, ProducerThreadWakesConsumer) {
  EventQueue q;
  std::thread producer([&] {
    for (int i = 0; i < 1000; ++i) q.push(ev(std::to_string(i), i == 999));
  });
  int n = 0;
  for (bool done = false; !done;) {
    for (const engine::Event& e : q.pop(std::chrono::milliseconds(1000))) {
      EXPECT_EQ(e.text, std::to_string(n++));
      done = e.done;
    }
  }
  producer.join();
  EXPECT_EQ(n, 1000);
}

}  // namespace
}  // namespace brisk::serve
