// Response bodies, SSE framing and error bodies (serve/response.h, serve/api_error.h), and the
// client-side SSE reader that must read back what the server writes (serve/client.h).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/api_error.h"
#include "serve/client.h"
#include "serve/response.h"

namespace brisk::serve {
namespace {

using nlohmann::json;

engine::Event ev(int32_t index, std::string text, std::optional<std::string> finish = {}) {
  engine::Event e;
  e.index = index;
  e.text = std::move(text);
  e.finish_reason = std::move(finish);
  return e;
}

engine::LogprobEntry lp(const std::string& tok, float p, std::vector<engine::TokenLogprob> top) {
  engine::LogprobEntry e;
  e.chosen = {7, tok, p};
  e.top = std::move(top);
  return e;
}

// The JSON payload of one SSE event ("data: {...}\n\n").
json payload(const std::string& sse) {
  EXPECT_EQ(sse.rfind("data: ", 0), 0u) << sse;
  EXPECT_GE(sse.size(), 8u);
  EXPECT_EQ(sse.substr(sse.size() - 2), "\n\n") << sse;
  const std::string body = sse.substr(6, sse.size() - 8);
  EXPECT_EQ(body.find('\n'), std::string::npos) << "one line per event";
  return json::parse(body);
}

TEST(ServeSse, Framing) {
  EXPECT_EQ(sse_data("{\"a\":1}"), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  EXPECT_EQ(sse_keepalive()[0], ':');
  EXPECT_EQ(sse_keepalive().substr(sse_keepalive().size() - 2), "\n\n");
}

TEST(ServeSse, ReaderReadsBackWhatTheServerWrites) {
  const std::string stream =
      sse_data("{\"x\":1}") + sse_keepalive() + sse_data("{\"y\":2}") + sse_done();
  // Byte by byte, as a slow network would deliver it.
  SseReader r;
  std::vector<std::string> got;
  for (char c : stream)
    for (std::string& p : r.feed(std::string_view(&c, 1))) got.push_back(std::move(p));
  EXPECT_EQ(got, (std::vector<std::string>{"{\"x\":1}", "{\"y\":2}", "[DONE]"}));
}

TEST(ServeSse, ReaderHandlesCrLfAndMultiLineData) {
  SseReader r;
  auto got = r.feed("event: message\r\ndata: a\r\ndata:b\r\n\r\ndata: c\n");
  EXPECT_EQ(got, (std::vector<std::string>{"a\nb"}));
  EXPECT_EQ(r.feed("\n"), (std::vector<std::string>{"c"}));
}

TEST(ServeResponse, Ids) {
  ResponseBuilder c(Endpoint::kCompletions, "m", 1, false, false);
  ResponseBuilder h(Endpoint::kChat, "m", 1, false, false);
  EXPECT_EQ(c.id().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(h.id().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(c.id().size(), 5u + 24u);
  EXPECT_NE(c.id(), ResponseBuilder(Endpoint::kCompletions, "m", 1, false, false).id());
}

TEST(ServeResponse, CompletionWhole) {
  ResponseBuilder b(Endpoint::kCompletions, "tiny", 2, false, false, 1700000000);
  b.add(ev(1, "wor"));
  b.add(ev(0, "hel"));
  b.add(ev(0, "lo", "stop"));
  b.add(ev(1, "ld", "length"));
  const json j = json::parse(b.full({5, 4, 2}));
  EXPECT_EQ(j["id"], b.id());
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "tiny");
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["text"], "hello");
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][1]["text"], "world");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
  EXPECT_EQ(j["usage"]["total_tokens"], 9);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
  EXPECT_FALSE(b.aborted());
}

TEST(ServeResponse, ChatWhole) {
  ResponseBuilder b(Endpoint::kChat, "tiny", 1, false, false);
  b.add(ev(0, "Hi"));
  b.add(ev(0, " there", "stop"));
  const json j = json::parse(b.full({3, 2, 0}));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hi there");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
}

TEST(ServeResponse, AbortIsReported) {
  ResponseBuilder b(Endpoint::kChat, "m", 2, false, false);
  b.add(ev(0, "a", "stop"));
  b.add(ev(1, "b", "abort"));
  EXPECT_TRUE(b.aborted());
}

TEST(ServeResponse, CompletionLogprobs) {
  ResponseBuilder b(Endpoint::kCompletions, "m", 1, true, false);
  engine::Event e = ev(0, "ab");
  e.logprobs = {lp("a", -0.5f, {{7, "a", -0.5f}, {8, "x", -1.5f}}), lp("b", -0.25f, {})};
  b.add(e);
  engine::Event e2 = ev(0, "c", "length");
  e2.logprobs = {lp("c", -std::numeric_limits<float>::infinity(), {})};
  b.add(e2);
  const json l = json::parse(b.full({1, 3, 0}))["choices"][0]["logprobs"];
  EXPECT_EQ(l["tokens"], json::array({"a", "b", "c"}));
  EXPECT_EQ(l["token_logprobs"][0], -0.5);
  EXPECT_EQ(l["token_logprobs"][2], -9999.0) << "no infinities in JSON";
  EXPECT_EQ(l["top_logprobs"][0]["x"], -1.5);
  EXPECT_EQ(l["top_logprobs"][1], json::object());
  EXPECT_EQ(l["text_offset"], json::array({0, 1, 2}));
}

TEST(ServeResponse, ChatLogprobs) {
  ResponseBuilder b(Endpoint::kChat, "m", 1, true, false);
  engine::Event e = ev(0, "h\xC3\xA9");
  e.logprobs = {lp("h", -0.1f, {{7, "h", -0.1f}}), lp("\xC3\xA9", -0.2f, {})};
  b.add(e);
  const json l = json::parse(b.full({1, 2, 0}))["choices"][0]["logprobs"];
  ASSERT_EQ(l["content"].size(), 2u);
  EXPECT_EQ(l["content"][0]["token"], "h");
  EXPECT_FLOAT_EQ(l["content"][0]["logprob"].get<float>(), -0.1f);
  EXPECT_EQ(l["content"][0]["bytes"], json::array({104}));
  EXPECT_EQ(l["content"][0]["top_logprobs"][0]["token"], "h");
  EXPECT_EQ(l["content"][1]["bytes"], json::array({0xC3, 0xA9}));
  EXPECT_TRUE(l["refusal"].is_null());
}

TEST(ServeResponse, InvalidUtf8BecomesReplacementCharacter) {
  ResponseBuilder b(Endpoint::kCompletions, "m", 1, false, false);
  b.add(ev(0, "a\xC3", "length"));  // ends inside a two-byte character
  const json j = json::parse(b.full({1, 1, 0}));
  EXPECT_EQ(j["choices"][0]["text"], "a\xEF\xBF\xBD");
  EXPECT_EQ(payload(b.chunk(ev(0, "\xFF")))["choices"][0]["text"], "\xEF\xBF\xBD");
}

TEST(ServeStream, CompletionChunks) {
  ResponseBuilder b(Endpoint::kCompletions, "m", 1, false, true);
  EXPECT_EQ(b.role_chunks(), "") << "completions have no role chunk";
  EXPECT_EQ(b.chunk(ev(0, "")), "") << "nothing to show";
  const json c = payload(b.chunk(ev(0, "Hel")));
  EXPECT_EQ(c["id"], b.id());
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "Hel");
  EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(c.contains("usage") && c["usage"].is_null()) << "include_usage: usage null";
  const json f = payload(b.chunk(ev(0, "", "stop")));
  EXPECT_EQ(f["choices"][0]["text"], "");
  EXPECT_EQ(f["choices"][0]["finish_reason"], "stop");
  const json u = payload(b.usage_chunk({4, 2, 1}));
  EXPECT_EQ(u["choices"], json::array());
  EXPECT_EQ(u["usage"]["total_tokens"], 6);
  EXPECT_EQ(u["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
}

TEST(ServeStream, ChatChunks) {
  ResponseBuilder b(Endpoint::kChat, "m", 2, false, false);
  // One role chunk per choice, each a complete SSE event.
  SseReader r;
  auto roles = r.feed(b.role_chunks());
  ASSERT_EQ(roles.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const json j = json::parse(roles[static_cast<size_t>(i)]);
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    EXPECT_EQ(j["choices"][0]["index"], i);
    EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
    EXPECT_FALSE(j.contains("usage")) << "usage only with include_usage";
  }
  const json c = payload(b.chunk(ev(1, "yo")));
  EXPECT_EQ(c["choices"][0]["index"], 1);
  EXPECT_EQ(c["choices"][0]["delta"], json({{"content", "yo"}}));
  const json f = payload(b.chunk(ev(1, "", "length")));
  EXPECT_EQ(f["choices"][0]["delta"], json::object());
  EXPECT_EQ(f["choices"][0]["finish_reason"], "length");
}

TEST(ServeStream, ChunkLogprobsKeepTextOffsets) {
  ResponseBuilder b(Endpoint::kCompletions, "m", 1, true, false);
  engine::Event e1 = ev(0, "ab");
  e1.logprobs = {lp("ab", -1.0f, {})};
  engine::Event e2 = ev(0, "");  // text held back (stop string), logprobs still sent
  e2.logprobs = {lp("c", -2.0f, {})};
  const json c1 = payload(b.chunk(e1));
  const json c2 = payload(b.chunk(e2));
  EXPECT_EQ(c1["choices"][0]["logprobs"]["text_offset"], json::array({0}));
  EXPECT_EQ(c2["choices"][0]["logprobs"]["text_offset"], json::array({2}));
  EXPECT_EQ(c2["choices"][0]["logprobs"]["tokens"], json::array({"c"}));
}

TEST(ServeError, Shape) {
  const json j = json::parse(error_body(404, "no such model", "model", "model_not_found"));
  EXPECT_EQ(j["error"]["message"], "no such model");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "model");
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  const json k = json::parse(error_body(ApiError(401, "bad key")));
  EXPECT_EQ(k["error"]["type"], "authentication_error");
  EXPECT_TRUE(k["error"]["param"].is_null());
  EXPECT_TRUE(k["error"]["code"].is_null());
}

TEST(ServeError, TypesByStatus) {
  EXPECT_STREQ(error_type(400), "invalid_request_error");
  EXPECT_STREQ(error_type(404), "invalid_request_error");
  EXPECT_STREQ(error_type(413), "invalid_request_error");
  EXPECT_STREQ(error_type(401), "authentication_error");
  EXPECT_STREQ(error_type(429), "rate_limit_error");
  EXPECT_STREQ(error_type(503), "service_unavailable_error");
  EXPECT_STREQ(error_type(500), "server_error");
}

TEST(ServeError, MessageIsOneSaneLine) {
  const std::string body = error_body(400, "bad\nthing\r\x01 " + std::string(5000, 'x') + "\xC3");
  EXPECT_EQ(body.find('\n'), body.size() - 1) << "only the trailing newline";
  const json j = json::parse(body);
  EXPECT_LE(j["error"]["message"].get<std::string>().size(), 1000u);
  EXPECT_EQ(j["error"]["message"].get<std::string>().substr(0, 10), "bad thing ");
}

}  // namespace
}  // namespace brisk::serve
