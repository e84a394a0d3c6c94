// API-key checks (serve/auth.h) and the bench client's URL parsing (serve/client.h).
#include <gtest/gtest.h>

#include "core/error.h"
#include "serve/auth.h"
#include "serve/client.h"

namespace brisk::serve {
namespace {

TEST(ServeAuth, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("secret-key", "secret-key"));
  EXPECT_FALSE(constant_time_equal("secret-key", "secret-kez"));
  EXPECT_FALSE(constant_time_equal("secret-key", "Secret-key"));
  EXPECT_FALSE(constant_time_equal("secret", "secret-key")) << "a prefix is not equal";
  EXPECT_FALSE(constant_time_equal("secret-key", "secret"));
  EXPECT_FALSE(constant_time_equal("", "x"));
  // Embedded NULs are compared like any byte.
  EXPECT_FALSE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
  EXPECT_TRUE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
}

TEST(ServeAuth, BearerToken) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer abc"), "abc");
  EXPECT_EQ(bearer_token("BEARER   abc  "), "abc");
  EXPECT_EQ(bearer_token("Bearer"), "");
  EXPECT_EQ(bearer_token("Bearer "), "");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token("Bearerabc"), "");
  EXPECT_EQ(bearer_token(""), "");
}

TEST(ServeAuth, Authorized) {
  EXPECT_TRUE(authorized("", "")) << "no key configured: open";
  EXPECT_TRUE(authorized("", "Bearer whatever"));
  EXPECT_TRUE(authorized("k1", "Bearer k1"));
  EXPECT_FALSE(authorized("k1", "Bearer k2"));
  EXPECT_FALSE(authorized("k1", "k1")) << "the scheme is required";
  EXPECT_FALSE(authorized("k1", ""));
  EXPECT_FALSE(authorized("k1", "Bearer "));
}

TEST(ServeClient, ParseServerUrl) {
  ServerUrl u = parse_server_url("http://127.0.0.1:8080");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8080);
  u = parse_server_url("http://localhost:9/v1/");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 9);
  u = parse_server_url("http://example.com");
  EXPECT_EQ(u.port, 80);
  u = parse_server_url("http://[::1]:81");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 81);
  for (const char* bad : {"https://x:1", "x:1", "http://", "http://h:0", "http://h:99999",
                          "http://h:12ab", "http://h:1/other"})
    EXPECT_THROW(parse_server_url(bad), Error) << bad;
}

}  // namespace
}  // namespace brisk::serve
