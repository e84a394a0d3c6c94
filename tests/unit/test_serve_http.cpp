// The HTTP server (serve/server.h) in process, over a real engine and a small random-weight model,
// driven by brisk's own client (serve/client.h): routes, auth, a streamed and a whole completion,
// errors in OpenAI's shape, and shutdown draining an in-flight stream. The OpenAI Node client
// tests (tests/e2e/openai) cover the rest; these run where Node.js is not installed.
#include <gtest/gtest.h>

#include <atomic>
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

// An engine and a server on a free port, serving on a background thread.
class ServeHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::EngineConfig ec;
    ec.threads = 2;
    ec.max_num_seqs = 4;
    eng_ = std::make_unique<engine::Engine>(*tiny().m, *tiny().tk, ec);
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

}  // namespace
}  // namespace brisk::serve
