#include "serve/client.h"

#include <httplib.h>

#include <charconv>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace brisk::serve {

std::vector<std::string> SseReader::feed(std::string_view bytes) {
  std::vector<std::string> out;
  for (char c : bytes) {
    if (c != '\n') {
      line_ += c;
      continue;
    }
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (line_.empty()) {  // blank line: the event is complete
      if (has_data_) out.push_back(std::move(data_));
      data_.clear();
      has_data_ = false;
    } else if (line_.rfind("data:", 0) == 0) {
      std::string_view v = std::string_view(line_).substr(5);
      if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      if (has_data_) data_ += '\n';
      data_ += v;
      has_data_ = true;
    }  // comments (":...") and other fields (event:, id:, retry:) are not needed here
    line_.clear();
  }
  return out;
}

std::optional<double> prometheus_value(std::string_view text, std::string_view name) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() > name.size() && line.substr(0, name.size()) == name &&
        line[name.size()] == ' ') {
      std::string_view v = line.substr(name.size() + 1);
      double x = 0;
      auto r = std::from_chars(v.data(), v.data() + v.size(), x);
      if (r.ec == std::errc()) return x;
    }
  }
  return std::nullopt;
}

std::string ServerUrl::scheme_host_port() const {
  return "http://" + host + ":" + std::to_string(port);
}

ServerUrl parse_server_url(std::string_view url) {
  const std::string whole(url);
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme)
    fail("bad --url '", whole, "': only http://HOST:PORT is supported");
  url.remove_prefix(kScheme.size());
  std::string_view path;
  if (size_t slash = url.find('/'); slash != std::string_view::npos) {
    path = url.substr(slash);
    url = url.substr(0, slash);
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (!path.empty() && path != "/v1") fail("bad --url '", whole, "': give the server's root URL");
  ServerUrl u;
  std::string_view hostpart = url;
  if (size_t colon = url.rfind(':'); colon != std::string_view::npos && url.back() != ']') {
    hostpart = url.substr(0, colon);
    std::string_view p = url.substr(colon + 1);
    int port = 0;
    auto r = std::from_chars(p.data(), p.data() + p.size(), port);
    if (p.empty() || r.ec != std::errc() || r.ptr != p.data() + p.size() || port < 1 ||
        port > 65535)
      fail("bad --url '", whole, "': bad port");
    u.port = port;
  }
  if (hostpart.size() >= 2 && hostpart.front() == '[' && hostpart.back() == ']')
    hostpart = hostpart.substr(1, hostpart.size() - 2);
  if (hostpart.empty()) fail("bad --url '", whole, "': no host");
  u.host = hostpart;
  return u;
}

namespace {

httplib::Headers auth_headers(const std::string& api_key) {
  httplib::Headers h;
  if (!api_key.empty()) h.emplace("Authorization", "Bearer " + api_key);
  return h;
}

}  // namespace

namespace {

HttpReply reply_of(const httplib::Result& res) {
  HttpReply r;
  if (!res) {
    r.error = httplib::to_string(res.error());
    return r;
  }
  r.status = res->status;
  r.body = res->body;
  return r;
}

}  // namespace

HttpReply http_get(const ServerUrl& u, const std::string& path, const std::string& api_key) {
  httplib::Client cli(u.host, u.port);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(60);
  return reply_of(cli.Get(path, auth_headers(api_key)));
}

HttpReply http_post(const ServerUrl& u, const std::string& path, const std::string& api_key,
                    const std::string& json_body) {
  httplib::Client cli(u.host, u.port);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(600);
  return reply_of(cli.Post(path, auth_headers(api_key), json_body, "application/json"));
}

StreamResult stream_completion(const ServerUrl& u, const std::string& path,
                               const std::string& api_key, const std::string& body) {
  using Clock = std::chrono::steady_clock;
  StreamResult out;
  httplib::Client cli(u.host, u.port);
  cli.set_connection_timeout(30);
  cli.set_read_timeout(600);
  cli.set_tcp_nodelay(true);

  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers = auth_headers(api_key);
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  req.body = body;

  SseReader sse;
  std::string error_body;
  bool done = false;
  const auto t0 = Clock::now();
  auto secs = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  req.response_handler = [&](const httplib::Response& r) {
    out.status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (out.status != 200) {
      error_body.append(data, std::min<size_t>(n, 4096));
      return true;
    }
    for (const std::string& payload : sse.feed(std::string_view(data, n))) {
      if (payload == "[DONE]") {
        done = true;
        out.e2e_s = secs();
        continue;
      }
      nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        out.error = "a stream chunk is not JSON";
        return false;
      }
      ++out.chunks;
      const auto ch = j.find("choices");
      if (ch != j.end() && ch->is_array() && !ch->empty() && out.ttft_s == 0) out.ttft_s = secs();
      const auto us = j.find("usage");
      if (us != j.end() && us->is_object()) {
        out.prompt_tokens = us->value("prompt_tokens", int64_t{0});
        out.completion_tokens = us->value("completion_tokens", int64_t{0});
        if (auto d = us->find("prompt_tokens_details"); d != us->end() && d->is_object())
          out.cached_tokens = d->value("cached_tokens", int64_t{0});
      }
    }
    return true;
  };
  httplib::Result res = cli.send(req);
  if (!res) {
    if (out.error.empty()) out.error = httplib::to_string(res.error());
    return out;
  }
  out.status = res->status;
  if (out.status != 200) {
    nlohmann::json j = nlohmann::json::parse(error_body, nullptr, false);
    if (!j.is_discarded() && j.contains("error") && j["error"].is_object())
      out.error = j["error"].value("message", "");
    out.error = "HTTP " + std::to_string(out.status) + (out.error.empty() ? "" : ": " + out.error);
  } else if (!done) {
    out.error = "the stream ended without [DONE]";
  }
  return out;
}

}  // namespace brisk::serve
