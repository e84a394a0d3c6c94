// The HTTP server (serve/server.h) in process, over a real engine and a small random-weight model,
// driven by brisk's own client (serve/client.h): routes, auth, a streamed and a whole completion,
// errors in OpenAI's shape, and shutdown draining an in-flight stream. The OpenAI Node client
// tests (tests/e2e/openai) cover the rest; these run where Node.js is not installed.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/synth_model.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "io/tokenizer/tokenizer.h"
#include "model/model.h"
#include "model/synth.h"
#include "serve/client.h"
#include "serve/server.h"

namespace brisk::serve {
namespace {

using nlohmann::json;

using Model = test::LoadedModel;

const Model& tiny() {
  static Model f = test::load_synth_model(128, 256, 256);
  return f;
}

// The same with a long context, for requests that run long enough to be abandoned.
const Model& long_context() {
  static Model f = test::load_synth_model(128, 256, 4096);
  return f;
}

// An engine and a server on a free port, serving on a background thread.
class ServeHttp : public ::testing::Test {
 protected:
  void SetUp() override { start(tiny(), 0); }
  // kv_mib 0: the engine's default (max_num_seqs full contexts).
  void start(const Model& m, int64_t kv_mib) {
    engine::EngineConfig ec;
    ec.threads = 2;
    ec.max_num_seqs = 4;
    ec.kv_memory_mib = kv_mib;
    eng_ = std::make_unique<engine::Engine>(*m.m, *m.tk, ec);
    ServerConfig sc;
    sc.port = 0;
    sc.api_key = "k";
    sc.model_name = "tiny";
    sc.http_threads = 8;
    sc.drain_seconds = 30;
    server_ = std::make_unique<Server>(*eng_, sc);
    url_.host = "127.0.0.1";
    url_.port = server_->bind();
    thread_ = std::thread([this] { server_->run(); });
  }
  void TearDown() override {
    server_->shutdown();
    thread_.join();
  }

  std::unique_ptr<engine::Engine> eng_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  ServerUrl url_;
};

json error_of(const HttpReply& r) {
  const json j = json::parse(r.body);
  EXPECT_TRUE(j["error"].is_object()) << r.body;
  EXPECT_TRUE(j["error"]["message"].is_string()) << r.body;
  return j["error"];
}

TEST_F(ServeHttp, RoutesAndAuth) {
  HttpReply r = http_get(url_, "/health", "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["status"], "ok");

  r = http_get(url_, "/v1/models", "");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(error_of(r)["code"], "invalid_api_key");
  EXPECT_EQ(http_get(url_, "/v1/models", "wrong").status, 401);

  r = http_get(url_, "/v1/models", "k");
  ASSERT_EQ(r.status, 200);
  const json m = json::parse(r.body);
  EXPECT_EQ(m["object"], "list");
  EXPECT_EQ(m["data"][0]["id"], "tiny");
  EXPECT_EQ(m["data"][0]["max_model_len"], 256);

  r = http_get(url_, "/metrics", "k");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(prometheus_value(r.body, "brisk_kv_blocks_total").value_or(0) > 0);

  EXPECT_EQ(http_get(url_, "/v1/nope", "k").status, 404);
  EXPECT_EQ(http_get(url_, "/v1/completions", "k").status, 405);
  EXPECT_EQ(http_post(url_, "/health", "k", "{}").status, 405);
  EXPECT_EQ(http_get(url_, "/v1/models/other", "k").status, 404);
}

TEST_F(ServeHttp, WholeCompletionAndErrors) {
  HttpReply r = http_post(url_, "/v1/completions", "k",
                          R"({"prompt": [5, 6, 7], "max_tokens": 4, "ignore_eos": true,
                              "temperature": 0, "n": 2})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);

  r = http_post(url_, "/v1/completions", "k", R"({"prompt": [5], "top_p": 3})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_of(r)["param"], "top_p");
  r = http_post(url_, "/v1/completions", "k", "{not json");
  EXPECT_EQ(r.status, 400);
  r = http_post(url_, "/v1/completions", "k", R"({"model": "other", "prompt": "x"})");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(error_of(r)["code"], "model_not_found");
  r = http_post(url_, "/v1/completions", "k", json({{"prompt", std::vector<int>(300, 5)}}).dump());
  EXPECT_EQ(r.status, 413);
  r = http_post(url_, "/v1/completions", "k", json({{"prompt", std::string(2 << 20, 'x')}}).dump());
  EXPECT_EQ(r.status, 413);
  // The byte vocabulary has no chat template.
  r = http_post(url_, "/v1/chat/completions", "k",
                R"({"messages": [{"role": "user", "content": "hi"}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(error_of(r)["message"].get<std::string>().find("chat template"), std::string::npos);
}

TEST_F(ServeHttp, StreamedCompletion) {
  const StreamResult s = stream_completion(
      url_, "/v1/completions", "k",
      R"({"prompt": [1, 2, 3, 4], "max_tokens": 6, "ignore_eos": true, "stream": true,
          "stream_options": {"include_usage": true}})");
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(s.error, "");
  EXPECT_EQ(s.prompt_tokens, 4);
  EXPECT_EQ(s.completion_tokens, 6);
  EXPECT_GT(s.chunks, 1);
  EXPECT_GT(s.ttft_s, 0);
  EXPECT_GE(s.e2e_s, s.ttft_s);
}

TEST_F(ServeHttp, ShutdownLetsAStreamFinishThenRefuses) {
  StreamResult s;
  std::atomic<bool> client_done{false};
  std::thread client([&] {
    s = stream_completion(url_, "/v1/completions", "k",
                          R"({"prompt": [1, 2, 3], "max_tokens": 150, "ignore_eos": true,
                              "stream": true, "stream_options": {"include_usage": true}})");
    client_done = true;
  });
  // Wait until the request runs, then shut down while it streams.
  for (int i = 0; i < 500 && eng_->metrics().running == 0 && !client_done; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::thread stopper([&] { server_->shutdown(); });
  client.join();
  stopper.join();
  EXPECT_EQ(s.error, "");
  EXPECT_EQ(s.completion_tokens, 150);
  // The listener is gone; TearDown's second shutdown() is a no-op.
  EXPECT_EQ(http_get(url_, "/health", "").status, 0);
}

// n beyond --max-num-seqs could never be scheduled at once: 400 naming "n" and the limit.
TEST_F(ServeHttp, NBeyondMaxNumSeqsIsRefused) {
  HttpReply r = http_post(url_, "/v1/completions", "k", R"({"prompt": [5, 6], "n": 5})");
  ASSERT_EQ(r.status, 400) << r.body;
  json e = error_of(r);
  EXPECT_EQ(e["param"], "n");
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_NE(e["message"].get<std::string>().find("at most 4"), std::string::npos) << r.body;
  r = http_post(url_, "/v1/completions", "k",
                R"({"prompt": [5, 6], "n": 4, "max_tokens": 2, "ignore_eos": true})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["choices"].size(), 4u);
}

// A long context over a small KV pool (2 MiB: a fraction of 4 full contexts).
class ServeHttpLong : public ServeHttp {
 protected:
  void SetUp() override { start(long_context(), 2); }
};

TEST_F(ServeHttpLong, NChoicesThatNeverFitTheKvPoolAreRefused) {
  const int64_t total = eng_->metrics().kv_blocks_total;
  const int64_t per_choice = total / 2 + 1;  // blocks; 2 prompt tokens share no full block
  ASSERT_LE(per_choice * 16, 4096) << "one choice must fit the context";
  const int64_t max_tokens = per_choice * 16 - 2;
  json body = {{"prompt", {5, 6}}, {"max_tokens", max_tokens}, {"n", 2}};
  HttpReply r = http_post(url_, "/v1/completions", "k", body.dump());
  ASSERT_EQ(r.status, 400) << r.body;
  const json e = error_of(r);
  EXPECT_EQ(e["param"], "n");
  EXPECT_NE(e["message"].get<std::string>().find("KV blocks"), std::string::npos) << r.body;
}

// Blocks until `pred` holds, polling the engine's metrics; false after a generous deadline.
template <class Pred>
bool wait_for(const engine::Engine& eng, Pred pred) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    if (pred(eng.metrics())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred(eng.metrics());
}

// A non-streamed request whose client hangs up is cancelled, as a stream is: it does not run on
// to max_tokens, and its KV blocks come back. The client is a raw socket that sends the request,
// waits until the engine runs it, and closes.
TEST_F(ServeHttpLong, NonStreamedRequestOfAClientThatLeavesIsCancelled) {
  const engine::MetricsSnapshot idle = eng_->metrics();
  ASSERT_EQ(idle.kv_blocks_used, 0);
  // As long as the context and the pool allow: far longer than noticing the hang-up takes.
  const int64_t max_tokens = std::min<int64_t>(4096, idle.kv_blocks_total * 16) - 3;
  const std::string body =
      json({{"prompt", {5, 6, 7}}, {"max_tokens", max_tokens}, {"ignore_eos", true}}).dump();
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Authorization: Bearer k\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(url_.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  EXPECT_TRUE(wait_for(*eng_, [](const engine::MetricsSnapshot& m) {
    return m.running == 1 && m.generated_tokens > 0;
  }));
  ::close(fd);
  EXPECT_TRUE(wait_for(*eng_, [&](const engine::MetricsSnapshot& m) {
    return m.running == 0 && m.waiting == 0 && m.kv_blocks_used == idle.kv_blocks_used;
  }));
  const engine::MetricsSnapshot after = eng_->metrics();
  EXPECT_EQ(after.requests_aborted, idle.requests_aborted + 1);
  EXPECT_EQ(after.requests_finished, idle.requests_finished);
  EXPECT_LT(after.generated_tokens, static_cast<uint64_t>(max_tokens));
  // The server is still fine for the next client, and its answer parses as before.
  const HttpReply r = http_post(url_, "/v1/completions", "k",
                                R"({"prompt": [5, 6], "max_tokens": 3, "ignore_eos": true})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 3);
}

}  // namespace
}  // namespace brisk::serve
