// API-key checks. The key is compared in time independent of where the first difference lies
// (and of the key's length beyond what the response reveals anyway), so response timing does not
// leak the key byte by byte.
#pragma once
#include <string_view>

namespace brisk::serve {

// True when a and b are equal; the time taken depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

// The token of an "Authorization: Bearer TOKEN" header value (scheme case-insensitive, spaces
// around the token ignored); empty when the header is not of that form.
std::string_view bearer_token(std::string_view authorization);

// Whether the Authorization header value grants access to a server whose key is `key`
// (an empty key: no authentication, everything is allowed).
bool authorized(std::string_view key, std::string_view authorization);

}  // namespace brisk::serve
