#include "serve/auth.h"

#include <cctype>

namespace brisk::serve {

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Walk the longer string whole, so a short guess costs as much as a long one; fold every byte
  // difference and the length difference into one accumulator, tested once at the end.
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  // volatile keeps the compiler from turning the loop back into an early-exit compare.
  volatile unsigned result = diff;
  return result == 0;
}

std::string_view bearer_token(std::string_view h) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  h = trim(h);
  constexpr std::string_view kScheme = "bearer";
  if (h.size() <= kScheme.size() || (h[kScheme.size()] != ' ' && h[kScheme.size()] != '\t'))
    return {};
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(h[i])) != kScheme[i]) return {};
  return trim(h.substr(kScheme.size()));
}

bool authorized(std::string_view key, std::string_view authorization) {
  if (key.empty()) return true;
  const std::string_view token = bearer_token(authorization);
  // An absent token still goes through the comparison, so "no key" and "wrong key" take the same
  // time.
  return constant_time_equal(token, key) && !token.empty();
}

}  // namespace brisk::serve
