// classifyHeader folds case eight bytes at a time; it must agree with a plain
// case-insensitive comparison on every name, including bytes that fold onto
// letters or '-' without being them.
#include "proxy/http/headers.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace tether::http {
namespace {

const std::vector<std::pair<const char*, HeaderKind>> kKnown = {
    {"TE", HeaderKind::kTe},
    {"Host", HeaderKind::kHost},
    {"Trailer", HeaderKind::kTrailer},
    {"Upgrade", HeaderKind::kUpgrade},
    {"Connection", HeaderKind::kConnection},
    {"Keep-Alive", HeaderKind::kKeepAlive},
    {"Content-Type", HeaderKind::kContentType},
    {"X-Request-Id", HeaderKind::kXRequestId},
    {"X-Forwarded-For", HeaderKind::kXForwardedFor},
    {"Proxy-Connection", HeaderKind::kProxyConnection},
    {"X-Forwarded-Host", HeaderKind::kXForwardedHost},
    {"Transfer-Encoding", HeaderKind::kTransferEncoding},
    {"X-Forwarded-Proto", HeaderKind::kXForwardedProto},
    {"Content-Length", HeaderKind::kContentLength},
    {"Content-Encoding", HeaderKind::kContentEncoding},
    {"Content-Range", HeaderKind::kContentRange},
    {"Authorization", HeaderKind::kAuthorization},
    {"Proxy-Authorization", HeaderKind::kProxyAuthorization},
    {"Cookie", HeaderKind::kCookie},
    {"Set-Cookie", HeaderKind::kSetCookie},
    {"Expect", HeaderKind::kExpect},
    {"Max-Forwards", HeaderKind::kMaxForwards},
};

HeaderKind reference(std::string_view n) {
  for (const auto& [name, kind] : kKnown)
    if (iequals(n, name)) return kind;
  return HeaderKind::kOther;
}

TEST(ClassifyHeader, KnownNamesInAnyCase) {
  for (const auto& [name, kind] : kKnown) {
    std::string lower(name), upper(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(classifyHeader(name), kind) << name;
    EXPECT_EQ(classifyHeader(lower), kind) << lower;
    EXPECT_EQ(classifyHeader(upper), kind) << upper;
  }
}

TEST(ClassifyHeader, EveryOneByteChangeAgreesWithTheReference) {
  // Each position of each known name replaced by every byte value: only a
  // case change of a letter may still match.
  for (const auto& [name, kind] : kKnown) {
    std::string n(name);
    for (std::size_t i = 0; i < n.size(); ++i) {
      for (int c = 0; c < 256; ++c) {
        std::string m = n;
        m[i] = static_cast<char>(c);
        ASSERT_EQ(classifyHeader(m), reference(m)) << "name " << name << " pos " << i << " byte " << c;
      }
    }
  }
}

TEST(ClassifyHeader, OtherNamesAndLengths) {
  EXPECT_EQ(classifyHeader(""), HeaderKind::kOther);
  EXPECT_EQ(classifyHeader("Content-Lengths"), HeaderKind::kOther);
  EXPECT_EQ(classifyHeader("Hos"), HeaderKind::kOther);
  EXPECT_EQ(classifyHeader("Hostt"), HeaderKind::kOther);
  EXPECT_EQ(classifyHeader("X-Forwarded-Fo_"), HeaderKind::kOther);
  EXPECT_EQ(classifyHeader("Connection\r"), HeaderKind::kOther);
  EXPECT_EQ(classifyHeader(std::string_view("Connec\rion", 10)), HeaderKind::kOther);
  EXPECT_EQ(classifyHeader("Keep\rAlive"), HeaderKind::kOther);  // CR is 0x2D with 0x20 cleared
  EXPECT_EQ(classifyHeader("X@Request-Id"), HeaderKind::kOther);
}

}  // namespace
}  // namespace tether::proxy
