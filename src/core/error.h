// brisk::Error is the one exception type for user-facing faults: a corrupt file, a bad flag, an
// impossible setting. Its message is a single line that names the file, tensor or field at fault.
// The CLI turns it into "error: <message>" and exit code 2; programming errors stay assertions.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace brisk {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... A>
std::string str_cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

template <class... A>
[[noreturn]] void fail(const A&... a) {
  throw Error(str_cat(a...));
}

// Cheap to call when the condition holds; the message is only built on failure.
template <class... A>
inline void check(bool cond, const A&... a) {
  if (!cond) [[unlikely]]
    fail(a...);
}

}  // namespace brisk
