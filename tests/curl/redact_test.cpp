// SPDX-License-Identifier: Apache-2.0
// What logs and socket answers show of a URL (security.redact_query, docs/configuration.md).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fetchd/curl/curl.hpp"

namespace fetchd::curl {
namespace {

TEST(RedactUrl, UserinfoIsRemovedAndEveryQueryValueHiddenByDefault) {
  set_redacted_query({"*"});
  EXPECT_EQ(redact_url("https://user:p%40ss@example.test:8443/a.bin?sig=abc&part=2#frag"),
            "https://example.test:8443/a.bin?sig=…&part=…#frag");
  EXPECT_EQ(redact_url("http://tok@h/a?abcdef"), "http://h/a?…");  // a bare parameter may be a token itself
  EXPECT_EQ(redact_url("http://h/a@b"), "http://h/a@b");          // an '@' in the path is not userinfo
  EXPECT_EQ(redact_url("http://h/plain"), "http://h/plain");
}

TEST(RedactUrl, GlobPatternsPickTheSecretParametersCaseInsensitively) {
  set_redacted_query({"sig*", "*token", "X-Amz-Credential"});
  EXPECT_EQ(redact_url("http://h/a?Signature=s&access_TOKEN=t&x-amz-credential=c&part=2&id="),
            "http://h/a?Signature=…&access_TOKEN=…&x-amz-credential=…&part=2&id=");
  EXPECT_EQ(redact_url("http://h/a?sigv4=1&sig=2"), "http://h/a?sigv4=…&sig=…");
  set_redacted_query({});
  EXPECT_EQ(redact_url("http://u:p@h/a?sig=1"), "http://h/a?sig=1");
  set_redacted_query({"*"});
}

TEST(RedactUrl, RedactQueryTakesItsOwnList) {
  const std::vector<std::string> secret{"key"};
  EXPECT_EQ(redact_query("http://u:p@h/a?key=1&KEY=2&other=3", secret), "http://u:p@h/a?key=…&KEY=…&other=3");
}

}  // namespace
}  // namespace fetchd::curl
