// A small client for brisk's own server (and any OpenAI-compatible one), used by
// `brisk bench-serve`: an incremental Server-Sent Events reader, a Prometheus sample lookup, and
// a streamed completion request that records when the first and last chunks arrived.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace brisk::serve {

// Feed bytes as they arrive; get back the "data:" payloads of the events they complete (several
// data lines of one event are joined by '\n'). Comments, other fields and CR LF line ends are
// handled; an event is complete at its blank line.
class SseReader {
 public:
  std::vector<std::string> feed(std::string_view bytes);

 private:
  std::string line_;  // the current, unfinished line
  std::string data_;  // data of the current event so far
  bool has_data_ = false;
};

// The value of an unlabelled sample "name value" in Prometheus text; nullopt when absent.
std::optional<double> prometheus_value(std::string_view text, std::string_view name);

// "http://host:port[/]" -> its parts (only plain http; a trailing "/v1" is dropped, so the
// OpenAI-style base URL works too). Throws brisk::Error for anything else.
struct ServerUrl {
  std::string host;
  int port = 80;
  std::string scheme_host_port() const;
};
ServerUrl parse_server_url(std::string_view url);

struct HttpReply {
  int status = 0;  // 0: no response (connection failed)
  std::string body;
  std::string error;  // transport error, when status is 0
};
HttpReply http_get(const ServerUrl& u, const std::string& path, const std::string& api_key);
HttpReply http_post(const ServerUrl& u, const std::string& path, const std::string& api_key,
                    const std::string& json_body);

// One streamed completion: POSTs `body` (which must ask for stream + include_usage) to `path`.
struct StreamResult {
  int status = 0;
  std::string error;  // empty when the stream completed with [DONE]
  double ttft_s = 0;  // request start -> first chunk with a choice
  double e2e_s = 0;   // request start -> [DONE]
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;  // from the usage chunk
  int64_t chunks = 0;
};
StreamResult stream_completion(const ServerUrl& u, const std::string& path,
                               const std::string& api_key, const std::string& body);

}  // namespace brisk::serve
