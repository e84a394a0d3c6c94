// ApiError: a request the server refuses, answered in OpenAI's error shape
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// with its HTTP status. Everything that parses or validates a request throws it; the HTTP layer
// turns it into the response, so no handler ever needs a second error path.
#pragma once
#include <stdexcept>
#include <string>

namespace brisk::serve {

class ApiError : public std::runtime_error {
 public:
  // param: the request field at fault (empty: none); code: OpenAI's machine-readable code
  // (e.g. "model_not_found"; empty: none).
  ApiError(int status, const std::string& message, std::string param = {}, std::string code = {})
      : std::runtime_error(message),
        status_(status),
        param_(std::move(param)),
        code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string param_, code_;
};

// The OpenAI "type" for a status: invalid_request_error, authentication_error, ...
const char* error_type(int status);

// The JSON error body. The message is made one line (control characters become spaces) and cut
// to a sane length, since it may quote client input.
std::string error_body(int status, const std::string& message, const std::string& param = {},
                       const std::string& code = {});
inline std::string error_body(const ApiError& e) {
  return error_body(e.status(), e.what(), e.param(), e.code());
}

}  // namespace brisk::serve
