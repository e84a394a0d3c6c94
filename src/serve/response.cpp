#include "serve/response.h"

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "serve/api_error.h"

namespace brisk::serve {
namespace {

using nlohmann::ordered_json;

// Invalid UTF-8 (a token that ends mid-character, a lone byte token) becomes U+FFFD.
std::string dump(const ordered_json& j) {
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

// JSON has no infinities; OpenAI reports impossible tokens as -9999.
double finite_logprob(float lp) {
  return std::isfinite(lp) ? static_cast<double>(lp) : -9999.0;
}

ordered_json bytes_of(const std::string& s) {
  ordered_json a = ordered_json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

ordered_json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

// Completions: parallel arrays, top alternatives as {piece: logprob} maps; text_offset counts
// bytes from the start of the completion.
ordered_json completion_logprobs(const std::vector<engine::LogprobEntry>& es, int64_t& offset) {
  ordered_json tokens = ordered_json::array(), lps = ordered_json::array(),
               tops = ordered_json::array(), offs = ordered_json::array();
  for (const engine::LogprobEntry& e : es) {
    tokens.push_back(e.chosen.text);
    lps.push_back(finite_logprob(e.chosen.logprob));
    ordered_json top = ordered_json::object();
    for (const engine::TokenLogprob& t : e.top) top[t.text] = finite_logprob(t.logprob);
    tops.push_back(std::move(top));
    offs.push_back(offset);
    offset += static_cast<int64_t>(e.chosen.text.size());
  }
  return {
      {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

// Chat: one object per token with its bytes and its top alternatives.
ordered_json chat_logprobs(const std::vector<engine::LogprobEntry>& es) {
  ordered_json content = ordered_json::array();
  for (const engine::LogprobEntry& e : es) {
    ordered_json top = ordered_json::array();
    for (const engine::TokenLogprob& t : e.top)
      top.push_back(
          {{"token", t.text}, {"logprob", finite_logprob(t.logprob)}, {"bytes", bytes_of(t.text)}});
    content.push_back({{"token", e.chosen.text},
                       {"logprob", finite_logprob(e.chosen.logprob)},
                       {"bytes", bytes_of(e.chosen.text)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

ordered_json finish_json(const std::optional<std::string>& f) {
  return f ? ordered_json(*f) : ordered_json(nullptr);
}

}  // namespace

std::string sse_data(std::string_view payload) {
  std::string s;
  s.reserve(payload.size() + 8);
  s += "data: ";
  s += payload;
  s += "\n\n";
  return s;
}

std::string sse_done() {
  return "data: [DONE]\n\n";
}

std::string sse_keepalive() {
  return ": keep-alive\n\n";
}

std::string new_id(std::string_view prefix) {
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(prefix);
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return id;
}

ResponseBuilder::ResponseBuilder(Endpoint ep, std::string model, int32_t n, bool logprobs,
                                 bool include_usage, int64_t created)
    : ep_(ep),
      model_(std::move(model)),
      id_(new_id(ep == Endpoint::kChat ? "chatcmpl-" : "cmpl-")),
      created_(created != 0 ? created
                            : std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count()),
      logprobs_(logprobs),
      include_usage_(include_usage),
      choices_(static_cast<size_t>(std::max(n, 1))) {}

ResponseBuilder::Choice& ResponseBuilder::choice(int32_t index) {
  // The engine only sends indices in [0, n); a larger one is a bug there, not client input.
  if (index < 0 || static_cast<size_t>(index) >= choices_.size())
    throw ApiError(500, "engine event for choice " + std::to_string(index) + " of " +
                            std::to_string(choices_.size()));
  return choices_[static_cast<size_t>(index)];
}

std::string ResponseBuilder::role_chunks() const {
  if (ep_ != Endpoint::kChat) return {};
  std::string out;
  for (size_t i = 0; i < choices_.size(); ++i) {
    ordered_json j{{"id", id_},
                   {"object", "chat.completion.chunk"},
                   {"created", created_},
                   {"model", model_},
                   {"choices",
                    {{{"index", i},
                      {"delta", {{"role", "assistant"}, {"content", ""}}},
                      {"logprobs", nullptr},
                      {"finish_reason", nullptr}}}}};
    if (include_usage_) j["usage"] = nullptr;
    out += sse_data(dump(j));
  }
  return out;
}

std::string ResponseBuilder::chunk(const engine::Event& e) {
  const bool has_lp = logprobs_ && !e.logprobs.empty();
  if (e.text.empty() && !has_lp && !e.finish_reason) return {};
  Choice& c = choice(e.index);
  ordered_json ch;
  if (ep_ == Endpoint::kChat) {
    ordered_json delta = ordered_json::object();
    if (!e.text.empty()) delta["content"] = e.text;
    ch = {{"index", e.index},
          {"delta", std::move(delta)},
          {"logprobs", has_lp ? chat_logprobs(e.logprobs) : ordered_json(nullptr)},
          {"finish_reason", finish_json(e.finish_reason)}};
  } else {
    ch = {{"text", e.text},
          {"index", e.index},
          {"logprobs",
           logprobs_ ? completion_logprobs(e.logprobs, c.text_offset) : ordered_json(nullptr)},
          {"finish_reason", finish_json(e.finish_reason)}};
  }
  if (e.finish_reason) c.finish_reason = e.finish_reason;
  ordered_json j{{"id", id_},
                 {"object", ep_ == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
                 {"created", created_},
                 {"model", model_},
                 {"choices", ordered_json::array({std::move(ch)})}};
  if (include_usage_) j["usage"] = nullptr;
  return sse_data(dump(j));
}

std::string ResponseBuilder::usage_chunk(const Usage& u) const {
  ordered_json j{{"id", id_},
                 {"object", ep_ == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
                 {"created", created_},
                 {"model", model_},
                 {"choices", ordered_json::array()},
                 {"usage", usage_json(u)}};
  return sse_data(dump(j));
}

void ResponseBuilder::add(const engine::Event& e) {
  Choice& c = choice(e.index);
  c.text += e.text;
  if (logprobs_) c.logprobs.insert(c.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
  if (e.finish_reason) c.finish_reason = e.finish_reason;
}

bool ResponseBuilder::aborted() const {
  for (const Choice& c : choices_)
    if (c.finish_reason && *c.finish_reason == "abort") return true;
  return false;
}

std::string ResponseBuilder::full(const Usage& u) const {
  ordered_json choices = ordered_json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    if (ep_ == Endpoint::kChat) {
      choices.push_back(
          {{"index", i},
           {"message", {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}}},
           {"logprobs", logprobs_ ? chat_logprobs(c.logprobs) : ordered_json(nullptr)},
           {"finish_reason", finish_json(c.finish_reason)}});
    } else {
      int64_t offset = 0;
      choices.push_back({{"text", c.text},
                         {"index", i},
                         {"logprobs", logprobs_ ? completion_logprobs(c.logprobs, offset)
                                                : ordered_json(nullptr)},
                         {"finish_reason", finish_json(c.finish_reason)}});
    }
  }
  ordered_json j{{"id", id_},
                 {"object", ep_ == Endpoint::kChat ? "chat.completion" : "text_completion"},
                 {"created", created_},
                 {"model", model_},
                 {"choices", std::move(choices)},
                 {"usage", usage_json(u)}};
  return dump(j);
}

const char* error_type(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

std::string error_body(int status, const std::string& message, const std::string& param,
                       const std::string& code) {
  std::string msg = message.substr(0, 1000);
  for (char& c : msg)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  ordered_json j{{"error",
                  {{"message", msg},
                   {"type", error_type(status)},
                   {"param", param.empty() ? ordered_json(nullptr) : ordered_json(param)},
                   {"code", code.empty() ? ordered_json(nullptr) : ordered_json(code)}}}};
  return dump(j) + "\n";
}

}  // namespace brisk::serve
