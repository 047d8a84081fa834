#include "proxy/forwarded.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "conf/config.h"

namespace tether::proxy {
namespace {

conf::Cidr cidr(const char* net, std::uint8_t prefix) {
  conf::Cidr c;
  if (inet_pton(AF_INET, net, c.bytes) == 1) {
    c.family = 4;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, net, c.bytes), 1) << net;
    c.family = 6;
  }
  c.prefix = prefix;
  return c;
}

struct Peer {
  std::string text;
  std::uint8_t bytes[16] = {};
  std::uint8_t family = 4;
  explicit Peer(const char* t) : text(t) {
    if (inet_pton(AF_INET, t, bytes) != 1) {
      EXPECT_EQ(inet_pton(AF_INET6, t, bytes), 1) << t;
      family = 6;
    }
  }
  PeerAddress view() const { return {text, bytes, family}; }
};

std::string client(const char* peer, std::vector<std::string_view> xff, std::vector<conf::Cidr> trusted) {
  Peer p(peer);
  char out[46];
  return std::string(clientAddress(p.view(), xff, trusted, out));
}

const std::vector<conf::Cidr> kIngress = {cidr("10.0.0.0", 8), cidr("fd00::", 8)};

TEST(ClientAddress, AnUntrustedPeerIsTheClientWhateverItClaims) {
  EXPECT_EQ(client("198.51.100.7", {"6.6.6.6"}, kIngress), "198.51.100.7");
  EXPECT_EQ(client("198.51.100.7", {}, {}), "198.51.100.7");
}

TEST(ClientAddress, ATrustedPeerNamesTheClient) {
  EXPECT_EQ(client("10.1.2.3", {"203.0.113.9"}, kIngress), "203.0.113.9");
}

TEST(ClientAddress, TrustedHopsAreSkippedFromTheRight) {
  EXPECT_EQ(client("10.1.2.3", {"6.6.6.6, 203.0.113.9, 10.9.9.9"}, kIngress), "203.0.113.9");
  // The same list over several header lines.
  EXPECT_EQ(client("10.1.2.3", {"6.6.6.6", "203.0.113.9", "10.9.9.9, 10.8.8.8"}, kIngress), "203.0.113.9");
}

TEST(ClientAddress, ASpoofedLeftmostEntryIsNotBelieved) {
  // The client wrote 6.6.6.6 itself; the ingress appended what it saw.
  EXPECT_EQ(client("10.1.2.3", {"6.6.6.6, 198.51.100.7"}, kIngress), "198.51.100.7");
}

TEST(ClientAddress, EveryHopTrustedMeansTheLeftmost) {
  EXPECT_EQ(client("10.1.2.3", {"10.7.7.7, 10.8.8.8"}, kIngress), "10.7.7.7");
}

TEST(ClientAddress, AnEntryThatIsNotAnAddressStopsTheWalk) {
  EXPECT_EQ(client("10.1.2.3", {"203.0.113.9, unknown, 10.8.8.8"}, kIngress), "10.8.8.8");
  EXPECT_EQ(client("10.1.2.3", {"203.0.113.9", "unknown", "10.8.8.8"}, kIngress), "10.8.8.8");
  EXPECT_EQ(client("10.1.2.3", {"203.0.113.9:4711"}, kIngress), "10.1.2.3");
  EXPECT_EQ(client("10.1.2.3", {""}, kIngress), "10.1.2.3");
  EXPECT_EQ(client("10.1.2.3", {"203.0.113.9,"}, kIngress), "10.1.2.3");
}

TEST(ClientAddress, SpacesAndTabsAroundEntriesAreIgnored) {
  EXPECT_EQ(client("10.1.2.3", {" 203.0.113.9 ,\t10.9.9.9 "}, kIngress), "203.0.113.9");
}

TEST(ClientAddress, IPv6IsCanonicalised) {
  EXPECT_EQ(client("fd00::1", {"2001:DB8:0:0::7"}, kIngress), "2001:db8::7");
  EXPECT_EQ(client("10.1.2.3", {"2001:db8::7, fd00::5"}, kIngress), "2001:db8::7");
}

TEST(ClientAddress, AnIPv4MappedPeerMatchesIPv4Networks) {
  EXPECT_EQ(client("::ffff:10.1.2.3", {"203.0.113.9"}, kIngress), "203.0.113.9");
}

}  // namespace
}  // namespace tether::proxy
