#include "conf/config.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "conf/loader.h"

namespace tether::conf {
namespace {

struct Address {
  std::uint8_t bytes[16] = {};
  std::uint8_t family = 0;
};

Address addr(const char* text) {
  Address a;
  if (inet_pton(AF_INET, text, a.bytes) == 1) {
    a.family = 4;
  } else if (inet_pton(AF_INET6, text, a.bytes) == 1) {
    a.family = 6;
  }
  return a;
}

bool contains(const char* cidr, const char* address) {
  auto c = parseCidr(cidr);
  EXPECT_TRUE(c) << cidr;
  Address a = addr(address);
  EXPECT_NE(a.family, 0) << address;
  return c && c->contains(a.bytes, a.family);
}

TEST(HostPort, StrBracketsIpv6Only) {
  EXPECT_EQ((HostPort{"10.0.0.1", 8080}).str(), "10.0.0.1:8080");
  EXPECT_EQ((HostPort{"app.local", 80}).str(), "app.local:80");
  EXPECT_EQ((HostPort{"::1", 9901}).str(), "[::1]:9901");
}

TEST(Cidr, ContainsIpv4) {
  EXPECT_TRUE(contains("10.0.0.0/8", "10.255.1.2"));
  EXPECT_FALSE(contains("10.0.0.0/8", "11.0.0.1"));
  EXPECT_TRUE(contains("192.168.1.0/26", "192.168.1.63"));
  EXPECT_FALSE(contains("192.168.1.0/26", "192.168.1.64"));
  EXPECT_TRUE(contains("0.0.0.0/0", "203.0.113.9"));
}

TEST(Cidr, BareAddressIsHostRoute) {
  EXPECT_TRUE(contains("10.1.2.3", "10.1.2.3"));
  EXPECT_FALSE(contains("10.1.2.3", "10.1.2.4"));
  EXPECT_EQ(parseCidr("10.1.2.3")->prefix, 32);
  EXPECT_EQ(parseCidr("fd00::1")->prefix, 128);
  EXPECT_TRUE(contains("fd00::1", "fd00::1"));
  EXPECT_FALSE(contains("fd00::1", "fd00::2"));
}

TEST(Cidr, ContainsIpv6) {
  EXPECT_TRUE(contains("fd00::/8", "fdab:1::5"));
  EXPECT_FALSE(contains("fd00::/8", "fe80::1"));
  EXPECT_TRUE(contains("2001:db8::/33", "2001:db8:7fff::1"));
  EXPECT_FALSE(contains("2001:db8::/33", "2001:db8:8000::1"));
  EXPECT_TRUE(contains("::/0", "::1"));
}

TEST(Cidr, FamiliesDoNotMixExceptMappedIpv4) {
  EXPECT_FALSE(contains("::/0", "10.0.0.1"));
  EXPECT_FALSE(contains("0.0.0.0/0", "fd00::1"));
  // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
  EXPECT_TRUE(contains("10.0.0.0/8", "::ffff:10.2.3.4"));
  EXPECT_FALSE(contains("10.0.0.0/8", "::ffff:11.2.3.4"));
}

TEST(Cidr, ClearsHostBitsAndPrints) {
  EXPECT_EQ(parseCidr("10.1.2.3/8")->str(), "10.0.0.0/8");
  EXPECT_EQ(parseCidr("fd00:1234::1/16")->str(), "fd00::/16");
  EXPECT_EQ(parseCidr(" 192.168.0.1/24 ")->str(), "192.168.0.0/24");
}

TEST(Cidr, RejectsBadInput) {
  for (const char* bad : {"", "10.0.0.0/33", "fd00::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/x",
                          "host.example", "10.0.0.0/-1", "::1/8/8"}) {
    EXPECT_FALSE(parseCidr(bad)) << bad;
  }
}

TEST(ToString, NamesMatchTheConfigFile) {
  EXPECT_STREQ(toString(Balance::kRoundRobin), "round_robin");
  EXPECT_STREQ(toString(Balance::kLeastConn), "least_conn");
  EXPECT_STREQ(toString(Balance::kP2c), "p2c");
  EXPECT_STREQ(toString(Balance::kConsistentHash), "consistent_hash");
  EXPECT_STREQ(toString(LogLevel::kWarn), "warn");
  EXPECT_STREQ(toString(LogFormat::kJson), "json");
  EXPECT_STREQ(toString(OnTargetDown::kStrict), "strict");
  EXPECT_STREQ(toString(UnderscoreHeaders::kDrop), "drop");
  EXPECT_STREQ(toString(UnderscoreHeaders::kReject), "reject");
  EXPECT_STREQ(toString(UnderscoreHeaders::kAllow), "allow");
}

}  // namespace
}  // namespace tether::conf
